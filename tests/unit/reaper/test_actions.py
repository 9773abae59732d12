"""What a rescue verdict or an outcome report means for the record (`reaper.actions`)."""

from __future__ import annotations

import pytest

from jetsched.core import states
from jetsched.core.errors import Fenced
from jetsched.core.models import (
    ErrorKind,
    JobRecord,
    JobRequest,
    JobState,
    Outcome,
    OutcomeError,
    OutcomeStatus,
)
from jetsched.reaper.actions import (
    STOPS_WORKER,
    UNKNOWN_DELIVERIES,
    Unknown,
    apply_outcome,
    must_stop,
    rescue,
    unknown_report,
)
from jetsched.reaper.sweeps import Verdict

T0 = 1_000_000
JOB = "000000000000000000000000J1"


def running(max_attempts: int = 3, attempt_of: JobRecord | None = None) -> JobRecord:
    record = attempt_of or states.accept(JobRequest(max_attempts=max_attempts), JOB, "a", T0, None)
    return states.claim(record, "w", "s1", "tok", T0)


def report(record: JobRecord, status: OutcomeStatus, token: str = "tok") -> Outcome:
    error = OutcomeError(type="ValueError", message="boom") if status is OutcomeStatus.FAILED else None
    return Outcome(
        id=record.id, attempt=record.attempt, token=token, session="s1", status=status,
        finished_at_ms=T0 + 10, error=error,
    )  # fmt: skip


class TestRescue:
    def test_lost_session_retries_the_job(self) -> None:
        """A lost session's attempt counts as failed and the job runs again."""
        record = running()
        assert record.lease is not None
        after = rescue(record, record.lease, Verdict.LOST, T0 + 5000, 0.5)
        assert after.state in (JobState.READY, JobState.SCHEDULED)
        assert after.errors[-1].kind is ErrorKind.LOST
        assert "worker session s1 (w) lost" in after.errors[-1].message

    def test_lost_on_the_last_attempt_is_dead(self) -> None:
        """A job that keeps losing its workers ends dead (poison pill)."""
        record = running(max_attempts=1)
        assert record.lease is not None
        assert rescue(record, record.lease, Verdict.LOST, T0 + 5000, 0.5).state is JobState.DEAD

    def test_timeout_fails_the_attempt_as_timed_out(self) -> None:
        """An attempt past its timeout fails as a timeout."""
        record = running()
        assert record.lease is not None
        after = rescue(record, record.lease, Verdict.TIMEOUT, T0 + 5000, 0.5)
        assert after.errors[-1].kind is ErrorKind.TIMEOUT

    def test_orphan_goes_back_without_using_an_attempt(self) -> None:
        """A job that never reached its live worker is ready again, its attempt unspent."""
        record = running()
        assert record.lease is not None
        after = rescue(record, record.lease, Verdict.ORPHAN, T0 + 5000, 0.5)
        assert after.state is JobState.READY
        assert after.attempts_used == record.attempts_used - 1
        assert after.errors == record.errors

    @pytest.mark.parametrize("verdict", list(Verdict))
    def test_a_newer_attempt_fences_the_rescue(self, verdict: Verdict) -> None:
        """Re-applied after a lost CAS, a rescue of an attempt that no longer holds the job is refused."""
        first = running()
        assert first.lease is not None
        second = running(attempt_of=states.orphan(first, T0 + 1))
        with pytest.raises(Fenced):
            rescue(second, first.lease, verdict, T0 + 5000, 0.5)

    def test_a_finished_job_fences_the_rescue(self) -> None:
        """A report applied meanwhile wins over the rescue."""
        record = running()
        assert record.lease is not None
        done = states.apply_outcome(record, report(record, OutcomeStatus.SUCCEEDED), T0 + 10, 0.5)
        with pytest.raises(Fenced):
            rescue(done, record.lease, Verdict.LOST, T0 + 5000, 0.5)

    def test_only_a_timeout_stops_the_worker(self) -> None:
        """A timed-out worker may still run the attempt; a lost or orphaned one does not."""
        assert {Verdict.TIMEOUT} == STOPS_WORKER


class TestMustStop:
    def test_holder_is_left_alone(self) -> None:
        """The session holding the attempt keeps running it."""
        assert not must_stop(running(), "s1", 1)

    @pytest.mark.parametrize(("session", "attempt"), [("s2", 1), ("s1", 2), ("s1", 0)])
    def test_anyone_else_is_stopped(self, session: str, attempt: int) -> None:
        """Another session, or another attempt, is told to stop."""
        assert must_stop(running(), session, attempt)

    def test_a_gone_or_unleased_job_stops_its_runner(self) -> None:
        """No record, or no lease: whoever still runs it stops."""
        assert must_stop(None, "s1", 1)
        assert must_stop(states.accept(JobRequest(), JOB, "a", T0, None), "s1", 1)


class TestApplyOutcome:
    def test_retry_links_to_the_attempts_run_span(self) -> None:
        """A failed attempt queued again carries the run span its report came with."""
        record = running()
        ran = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        after = apply_outcome(record, report(record, OutcomeStatus.FAILED), T0 + 10, 0.0, ran)
        assert after.state in (JobState.READY, JobState.SCHEDULED)
        assert after.retry_of == ran

    def test_success_keeps_no_link(self) -> None:
        """A finished job links to no next attempt."""
        record = running()
        after = apply_outcome(record, report(record, OutcomeStatus.SUCCEEDED), T0 + 10, 0.0, {"a": "b"})
        assert (after.state, after.retry_of) == (JobState.SUCCEEDED, None)

    def test_wrong_token_is_fenced(self) -> None:
        """A report that does not prove the lease is refused."""
        record = running()
        with pytest.raises(Fenced):
            apply_outcome(record, report(record, OutcomeStatus.SUCCEEDED, "forged"), T0 + 10, 0.0, None)


class TestUnknownReport:
    def test_redelivered_a_few_times_then_dropped(self) -> None:
        """A leader that just changed may not have the record yet: a few deliveries before it is dropped."""
        assert [unknown_report(n) for n in range(1, UNKNOWN_DELIVERIES + 1)] == [Unknown.NAK] * (
            UNKNOWN_DELIVERIES - 1
        ) + [Unknown.TERM]
