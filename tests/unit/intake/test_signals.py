"""Scaling signals per capability (`intake.signals`)."""

from __future__ import annotations

from jetsched.core.models import Heartbeat
from jetsched.core.workers import WorkerRegistry
from jetsched.intake.signals import signals

T0 = 1_000_000


def fleet(*beats: tuple[str, tuple[str, ...], int, int, bool]) -> WorkerRegistry:
    registry = WorkerRegistry()
    for session, capabilities, concurrency, busy, draining in beats:
        running = tuple((f"{n:026d}", 1) for n in range(busy))
        heartbeat = Heartbeat(
            worker="w", session=session, capabilities=capabilities, concurrency=concurrency,
            running=running, draining=draining, interval_ms=500,
        )  # fmt: skip
        registry.observe(heartbeat, T0)
    return registry


class TestSignals:
    def test_ready_jobs_without_workers_are_unroutable(self) -> None:
        """Ready jobs nobody can take are counted as unroutable, with their oldest's age."""
        found = signals({"a": {"ready": 3}}, {"a": T0 - 250}, WorkerRegistry(), (), T0)
        assert found == {
            "a": {
                "ready": 3, "unroutable": 3, "running": 0, "oldest_ready_age_ms": 250,
                "free_worker_slots": 0, "paused": False,
            }
        }  # fmt: skip

    def test_free_slots_add_up_across_sessions(self) -> None:
        """Idle slots of every session declaring a capability count, busy ones do not."""
        registry = fleet(("s1", ("a", "b"), 4, 1, False), ("s2", ("a",), 2, 2, False))
        found = signals({"a": {"ready": 1, "running": 3}}, {"a": T0}, registry, (), T0)
        assert (found["a"]["free_worker_slots"], found["a"]["unroutable"]) == (3, 0)
        assert found["b"]["free_worker_slots"] == 3
        assert found["b"]["ready"] == 0

    def test_draining_workers_take_nothing(self) -> None:
        """A draining fleet leaves ready jobs unroutable."""
        registry = fleet(("s1", ("a",), 4, 0, True))
        assert signals({"a": {"ready": 2}}, {}, registry, (), T0)["a"]["unroutable"] == 2

    def test_silent_workers_take_nothing(self) -> None:
        """A session that stopped beating is no route for new work, though not yet declared lost."""
        registry = fleet(("s1", ("a",), 4, 0, False))
        assert signals({"a": {"ready": 2}}, {}, registry, (), T0 + 10_000)["a"]["unroutable"] == 2

    def test_paused_queue_is_flagged(self) -> None:
        """A paused capability says so."""
        assert signals({"a": {"ready": 1}}, {}, WorkerRegistry(), {"a"}, T0)["a"]["paused"] is True

    def test_nothing_waiting_reads_zero_age(self) -> None:
        """No ready job: the oldest ready age is 0; capabilities come sorted."""
        found = signals({"b": {"running": 1}, "a": {"succeeded": 5}}, {}, WorkerRegistry(), (), T0)
        assert list(found) == ["a", "b"]
        assert found["a"]["oldest_ready_age_ms"] == 0
