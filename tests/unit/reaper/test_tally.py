"""What each reaper transition adds to the job counters (`reaper/tally.py`)."""

from __future__ import annotations

from jetsched.core import states
from jetsched.core.models import JobRecord, JobRequest, Outcome, OutcomeError, OutcomeStatus
from jetsched.reaper.tally import tally

NOW = 1_700_000_000_000


def running(**request: object) -> JobRecord:
    record = states.accept(
        JobRequest.model_validate(request), "000000000000000000000000J1", "email", NOW, None
    )
    return states.claim(record, "host-1", "s1", "t1", NOW + 10)


def report(status: OutcomeStatus, error: bool = False) -> Outcome:
    return Outcome(
        id="000000000000000000000000J1",
        attempt=1,
        token="t1",
        session="s1",
        status=status,
        error=OutcomeError(type="Boom", message="no") if error else None,
        finished_at_ms=NOW + 1_500,
    )


def names(before: JobRecord, after: JobRecord) -> list[tuple[str, dict[str, str]]]:
    return list(tally(before, after, NOW + 1_510).counts)


def test_a_success() -> None:
    before = running()
    after = states.apply_outcome(before, report(OutcomeStatus.SUCCEEDED), NOW + 1_510, 0.5)
    t = tally(before, after, NOW + 1_510)
    assert t.counts == (("succeeded", {"capability": "email"}),)
    assert t.run == (1.5, {"capability": "email", "outcome": "succeeded"})


def test_a_failure_that_will_run_again() -> None:
    before = running(max_attempts=3)
    after = states.apply_outcome(before, report(OutcomeStatus.FAILED, error=True), NOW + 1_510, 0.5)
    assert names(before, after) == [
        ("failed", {"capability": "email", "kind": "error"}),
        ("retried", {"capability": "email"}),
    ]


def test_a_last_failure_ends_dead() -> None:
    before = running(max_attempts=1)
    after = states.apply_outcome(before, report(OutcomeStatus.FAILED, error=True), NOW + 1_510, 0.5)
    assert names(before, after) == [
        ("failed", {"capability": "email", "kind": "error"}),
        ("dead", {"capability": "email", "kind": "error"}),
    ]


def test_a_lost_worker() -> None:
    before = running(max_attempts=1)
    after = states.lose(before, NOW + 1_510, 0.5, "session s1 lost")
    assert names(before, after) == [
        ("failed", {"capability": "email", "kind": "lost"}),
        ("dead", {"capability": "email", "kind": "lost"}),
    ]


def test_a_release_is_no_failure() -> None:
    before = running()
    after = states.apply_outcome(before, report(OutcomeStatus.RELEASED), NOW + 1_510, 0.5)
    assert names(before, after) == [("released", {"capability": "email"})]
