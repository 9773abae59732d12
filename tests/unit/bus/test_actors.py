"""The supervisor: bugs take a service down after repeated crashes; storage failovers never do.

On a fake clock: the restart backoffs are checked, not waited out."""

from __future__ import annotations

import pytest
from nats.errors import NoRespondersError

from jetsched.bus.actors import ActorFailed, Supervisor
from jetsched.bus.records import StoreError
from jetsched.core.clock import FakeClock


class Flaky:
    def __init__(self, name: str, failures: list[Exception]) -> None:
        self.name = name
        self.failures = failures
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)


async def test_failovers_never_exhaust_the_supervisor() -> None:
    """Many storage interruptions in a row restart the actor without counting as crashes."""
    failures: list[Exception] = [NoRespondersError(), TimeoutError(), StoreError("no quorum")] * 3
    actor = Flaky("leases", failures)
    clock = FakeClock()
    await Supervisor(max_restarts=3, backoff_s=0.1, clock=clock).run([actor])
    assert actor.runs == 10
    assert clock.slept == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]  # doubling, capped at 2 s


async def test_repeated_bugs_take_the_service_down() -> None:
    """An actor that keeps failing for any other reason ends the service loudly."""
    actor = Flaky("buggy", [KeyError("x") for _ in range(5)])
    clock = FakeClock()
    with pytest.raises(ActorFailed):
        await Supervisor(max_restarts=3, backoff_s=0.1, clock=clock).run([actor])
    assert actor.runs == 3
    assert clock.slept == [0.1, 0.2]


class SlowToCrash(Flaky):
    """Crashes after running a while (on the fake clock)."""

    def __init__(self, clock: FakeClock, runs_for_s: float, failures: list[Exception]) -> None:
        super().__init__("slow", failures)
        self.clock = clock
        self.runs_for_s = runs_for_s

    async def run(self) -> None:
        self.clock.advance(self.runs_for_s)
        await super().run()


async def test_crashes_spread_beyond_the_window_are_forgiven() -> None:
    """Crashes further apart than the window never add up to the limit."""
    clock = FakeClock()
    actor = SlowToCrash(clock, 31.0, [KeyError("x") for _ in range(6)])
    await Supervisor(max_restarts=3, window_s=60.0, backoff_s=0.1, clock=clock).run([actor])
    assert actor.runs == 7
    assert clock.slept == [0.1, 0.2, 0.2, 0.2, 0.2, 0.2]  # two crashes within any minute


async def test_a_long_run_resets_the_failover_backoff() -> None:
    """An actor that ran a while before storage failed again restarts quickly again."""
    clock = FakeClock()
    actor = SlowToCrash(clock, 11.0, [TimeoutError(), TimeoutError(), TimeoutError()])
    await Supervisor(backoff_s=0.1, clock=clock).run([actor])
    assert clock.slept == [0.1, 0.1, 0.1]
