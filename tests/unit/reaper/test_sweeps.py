"""Which running jobs are lost or orphaned."""

from __future__ import annotations

from jetsched.core import states
from jetsched.core.models import Heartbeat, JobRequest
from jetsched.core.workers import WorkerRegistry
from jetsched.reaper.sweeps import Running, Verdict, stale_holdings, sweep

T0 = 1_000_000


def running_job(
    job_id: str = "000000000000000000000000J1", session: str = "s1", timeout_s: float = 300
) -> Running:
    record = states.accept(JobRequest(timeout_s=timeout_s), job_id, "a", T0, None)
    return Running(states.claim(record, "w", session, "tok", T0), revision=2, seen_ms=T0)


def beat(reg: WorkerRegistry, at: int, held: tuple[tuple[str, int], ...] = ()) -> None:
    hb = Heartbeat(
        worker="w", session="s1", capabilities=("a",), concurrency=4, interval_ms=500, running=held
    )
    reg.observe(hb, at)


def test_healthy_job_left_alone() -> None:
    """A job its live session lists is never rescued within its declared timeout, however long that is."""
    reg = WorkerRegistry()
    entry = running_job(timeout_s=7200)
    for at in range(T0, T0 + 3_600_000, 500):
        beat(reg, at, (("000000000000000000000000J1", 1),))
        assert sweep({"000000000000000000000000J1": entry}, reg, at, T0) == []


def test_silent_session_is_lost() -> None:
    """Once its session misses its deadline, the job is lost."""
    reg = WorkerRegistry()
    beat(reg, T0, (("000000000000000000000000J1", 1),))
    entry = running_job()
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 2000, T0) == []
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 2001, T0) == [(entry, Verdict.LOST)]


def test_unseen_session_gets_grace_from_start() -> None:
    """A session never heard from is judged only after a deadline's worth of watching."""
    reg = WorkerRegistry()
    entry = running_job()
    started = T0 + 10_000
    assert sweep({"000000000000000000000000J1": entry}, reg, started + 1999, started) == []
    assert sweep({"000000000000000000000000J1": entry}, reg, started + 2001, started) == [
        (entry, Verdict.LOST)
    ]


def test_orphan_when_live_session_does_not_list_it() -> None:
    """A live session whose later heartbeats omit the job makes it an orphan suspect."""
    reg = WorkerRegistry()
    entry = running_job()
    beat(reg, T0 + 1000)
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 1000, T0) == []
    beat(reg, T0 + 1600)
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 1600, T0) == [(entry, Verdict.ORPHAN)]


def test_older_attempt_listed_is_still_orphan() -> None:
    """Holding the previous attempt does not hold this one."""
    reg = WorkerRegistry()
    beat(reg, T0 + 2000, (("000000000000000000000000J1", 0),))
    assert sweep({"000000000000000000000000J1": running_job()}, reg, T0 + 2000, T0)[0][1] is Verdict.ORPHAN


class TestStaleHoldings:
    def test_own_lease_is_not_stale(self) -> None:
        """A session listing the attempt it holds is left alone."""
        reg = WorkerRegistry()
        beat(reg, T0, (("000000000000000000000000J1", 1),))
        assert stale_holdings({"000000000000000000000000J1": running_job()}, reg, {}, T0 + 5000) == []

    def test_listing_without_lease_is_stale_after_grace(self) -> None:
        """A job listed without its lease (cancelled, rescued) is reported once the grace has passed."""
        reg = WorkerRegistry()
        beat(reg, T0, (("000000000000000000000000J9", 3),))
        suspects: dict[tuple[str, str, int], int] = {}
        assert stale_holdings({}, reg, suspects, T0) == []
        assert stale_holdings({}, reg, suspects, T0 + 999) == []
        assert stale_holdings({}, reg, suspects, T0 + 1000) == [("s1", "000000000000000000000000J9", 3)]
        assert stale_holdings({}, reg, suspects, T0 + 1500) == []

    def test_resolved_suspicion_is_forgotten(self) -> None:
        """A listing that disappears (the worker finished) leaves no suspicion behind."""
        reg = WorkerRegistry()
        beat(reg, T0, (("000000000000000000000000J9", 3),))
        suspects: dict[tuple[str, str, int], int] = {}
        stale_holdings({}, reg, suspects, T0)
        beat(reg, T0 + 500)
        assert stale_holdings({}, reg, suspects, T0 + 2000) == []
        assert suspects == {}

    def test_older_attempt_is_stale(self) -> None:
        """Holding attempt 1 while the record leases attempt 2 elsewhere is stale."""
        reg = WorkerRegistry()
        beat(reg, T0, (("000000000000000000000000J1", 0),))
        found = stale_holdings({"000000000000000000000000J1": running_job()}, reg, {}, T0)
        assert found == []
        suspects: dict[tuple[str, str, int], int] = {("s1", "000000000000000000000000J1", 0): T0 - 2000}
        assert stale_holdings({"000000000000000000000000J1": running_job()}, reg, suspects, T0) == [
            ("s1", "000000000000000000000000J1", 0)
        ]


def test_timeout_backstop_only_past_declared_timeout() -> None:
    """A listed job past its own timeout plus grace is timed out; before that it is left alone."""
    reg = WorkerRegistry()
    record = states.accept(JobRequest(timeout_s=10), "000000000000000000000000J1", "a", T0, None)
    entry = Running(states.claim(record, "w", "s1", "tok", T0), revision=2, seen_ms=T0)
    beat(reg, T0 + 12_000, (("000000000000000000000000J1", 1),))
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 12_000, T0) == []
    beat(reg, T0 + 12_001, (("000000000000000000000000J1", 1),))
    assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 12_001, T0) == [(entry, Verdict.TIMEOUT)]


def test_expired_session_jobs_lost_at_once() -> None:
    """Once the registry has expired a session, all its jobs are lost at the next sweep, however new."""
    reg = WorkerRegistry()
    beat(reg, T0, (("000000000000000000000000J1", 1),))
    reg.expire(T0 + 2001)
    fresh = Running(running_job().record, revision=2, seen_ms=T0 + 1900)
    assert sweep({"000000000000000000000000J1": fresh}, reg, T0 + 2001, T0) == [(fresh, Verdict.LOST)]


def test_lost_when_the_session_comes_back_as_another_process() -> None:
    """A session id kept across a restart (a confined worker identity) announces a new incarnation: what
    the old process held is lost at once, counting an attempt, not handed back as an orphan."""
    record = states.accept(JobRequest(), "000000000000000000000000J1", "a", T0, None)
    entry = Running(states.claim(record, "w", "s1", "tok", T0, incarnation="first"), revision=2, seen_ms=T0)
    reg = WorkerRegistry()
    for incarnation, verdict in (("first", []), ("second", [(entry, Verdict.LOST)])):
        hb = Heartbeat(
            worker="w",
            session="s1",
            capabilities=("a",),
            concurrency=4,
            interval_ms=500,
            running=(("000000000000000000000000J1", 1),) if incarnation == "first" else (),
            incarnation=incarnation,
        )
        reg.observe(hb, T0 + 100)
        assert sweep({"000000000000000000000000J1": entry}, reg, T0 + 100, T0) == verdict


def test_timeout_counts_from_the_claim_when_this_replica_saw_the_job_later() -> None:
    """A job seen first long after its claim (its partition moved here; a restart) is not given its
    whole timeout again; a claim stamped after the first sight (clock error) changes nothing."""
    reg = WorkerRegistry()
    record = states.accept(JobRequest(timeout_s=10), "000000000000000000000000J1", "a", T0, None)
    late = Running(states.claim(record, "w", "s1", "tok", T0), revision=2, seen_ms=T0 + 9_000)
    beat(reg, T0 + 12_001, (("000000000000000000000000J1", 1),))
    assert sweep({"000000000000000000000000J1": late}, reg, T0 + 12_001, T0) == [(late, Verdict.TIMEOUT)]
    ahead = Running(states.claim(record, "w", "s1", "tok", T0 + 60_000), revision=2, seen_ms=T0)
    assert sweep({"000000000000000000000000J1": ahead}, reg, T0 + 12_000, T0) == []
