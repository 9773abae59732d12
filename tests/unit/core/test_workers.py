"""Worker liveness from heartbeats."""

from __future__ import annotations

from jetsched.core.models import Heartbeat
from jetsched.core.workers import WorkerRegistry


def beat(session: str, capabilities: tuple[str, ...] = ("a",), draining: bool = False) -> Heartbeat:
    return Heartbeat(
        worker="w",
        session=session,
        capabilities=capabilities,
        concurrency=2,
        interval_ms=500,
        draining=draining,
    )


def test_alive_until_three_missed_beats_and_margin() -> None:
    """A session is alive until 3 intervals + 500 ms pass without a beat."""
    registry = WorkerRegistry()
    registry.observe(beat("s1"), 1000)
    assert registry.alive("s1", 1000 + 2000)
    assert not registry.alive("s1", 1000 + 2001)
    assert [s.id for s in registry.expire(3001)] == ["s1"]
    assert not registry.sessions


def test_capable_excludes_draining_and_others() -> None:
    """Only non-draining sessions that declared the capability can take its jobs."""
    registry = WorkerRegistry()
    registry.observe(beat("s1", ("a",)), 0)
    registry.observe(beat("s2", ("a", "b")), 0)
    registry.observe(beat("s3", ("a",), draining=True), 0)
    assert {s.id for s in registry.capable("a", 0)} == {"s1", "s2"}
    assert registry.waiting_reason("b", 0) is None
    assert registry.waiting_reason("c", 0) == "no live worker with capability 'c'"


def test_work_stops_before_loss_is_declared() -> None:
    """A session too quiet to send work to is not yet lost: dispatch stops first, rescue follows."""
    registry = WorkerRegistry()
    registry.observe(beat("s1"), 0)
    assert registry.capable("a", 1500)
    assert not registry.capable("a", 1501)
    assert registry.alive("s1", 1501)


def test_extend_all_after_own_outage() -> None:
    """After this process was cut off, every known session gets a fresh deadline."""
    registry = WorkerRegistry()
    registry.observe(beat("s1"), 0)
    registry.extend_all(10_000)
    assert registry.alive("s1", 11_000)
    assert not registry.expire(11_000)
