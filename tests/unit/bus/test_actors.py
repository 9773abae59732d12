"""The supervisor: bugs take a service down after repeated crashes; storage failovers never do."""

from __future__ import annotations

import pytest
from nats.errors import NoRespondersError

from jetsched.bus.actors import ActorFailed, Supervisor
from jetsched.bus.records import StoreError


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
    await Supervisor(max_restarts=3, backoff_s=0.001).run([actor])
    assert actor.runs == 10


async def test_repeated_bugs_take_the_service_down() -> None:
    """An actor that keeps failing for any other reason ends the service loudly."""
    actor = Flaky("buggy", [KeyError("x") for _ in range(5)])
    with pytest.raises(ActorFailed):
        await Supervisor(max_restarts=3, backoff_s=0.001).run([actor])
    assert actor.runs == 3
