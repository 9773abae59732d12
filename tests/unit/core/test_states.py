"""The job state machine, verb by verb."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from jetsched.core import bounds, states
from jetsched.core.errors import Fenced, NotDue, TransitionError
from jetsched.core.models import (
    Backoff,
    ErrorKind,
    JobRecord,
    JobRequest,
    JobState,
    Outcome,
    OutcomeError,
    OutcomeStatus,
    Run,
    token_hash,
)

if TYPE_CHECKING:
    from collections.abc import Callable

NOW = 1_700_000_000_000
#: The tokens these tests claim with, by the hash a record keeps of them.
TOKENS = {token_hash(t): t for t in ("t1", "t2", "t3")}


def accepted(**request: object) -> JobRecord:
    return states.accept(JobRequest.model_validate(request), "000000000000000000000000J1", "email", NOW, None)


def running(record: JobRecord, token: str = "t1") -> JobRecord:
    return states.claim(record, "host-1", "s1", token, NOW + 10)


def report(record: JobRecord, status: OutcomeStatus, **fields: object) -> Outcome:
    assert record.lease is not None
    return Outcome(
        id=record.id,
        attempt=record.lease.attempt,
        token=TOKENS[record.lease.token_hash],
        session=record.lease.session,
        status=status,
        finished_at_ms=NOW + 20,
        **fields,
    )


class TestAccept:
    def test_ready_without_delay(self) -> None:
        """A job with no start time is ready at once, attempt 0."""
        record = accepted(payload={"a": 1}, priority=7)
        assert (record.state, record.attempt, record.priority, record.run_at_ms) == (
            JobState.READY,
            0,
            7,
            NOW,
        )

    def test_scheduled_with_delay(self) -> None:
        """delay_ms makes it scheduled until now + delay."""
        record = accepted(delay_ms=5000)
        assert (record.state, record.run_at_ms) == (JobState.SCHEDULED, NOW + 5000)

    def test_run_at_in_past_is_ready(self) -> None:
        """A run_at already past is ready now."""
        assert accepted(run_at="2000-01-01T00:00:00Z").state is JobState.READY

    def test_run_at_in_future(self) -> None:
        """run_at is kept to the millisecond."""
        record = accepted(run_at="2100-01-01T00:00:00.250+01:00")
        assert record.state is JobState.SCHEDULED
        assert record.run_at_ms == 4102441200250


class TestDue:
    def test_due_makes_ready(self) -> None:
        """At its due time a scheduled job becomes ready."""
        assert states.due(accepted(delay_ms=100), NOW + 100).state is JobState.READY

    def test_never_early(self) -> None:
        """One millisecond before its due time it is refused."""
        with pytest.raises(NotDue):
            states.due(accepted(delay_ms=100), NOW + 99)

    def test_only_scheduled(self) -> None:
        """A ready job cannot be made due again."""
        with pytest.raises(TransitionError):
            states.due(accepted(), NOW)


class TestClaim:
    def test_claim_leases_next_attempt(self) -> None:
        """A claim increments the attempt and leases it to one session with a token."""
        record = running(accepted())
        assert record.state is JobState.RUNNING
        assert record.attempt == 1
        assert record.lease is not None
        assert (record.lease.session, record.lease.attempt, record.lease.token_hash) == (
            "s1",
            1,
            token_hash("t1"),
        )

    def test_claim_is_never_stamped_before_the_due_time(self) -> None:
        """The timer saw the due time pass on the servers' clock; a dispatcher whose reading of it lags
        by a millisecond still records the claim at the due time, not before."""
        due = states.due(accepted(delay_ms=100), NOW + 100)
        record = states.claim(due, "w1", "s1", "t1", NOW + 99)
        assert record.started_at_ms == NOW + 100
        assert record.lease is not None
        assert record.lease.claimed_at_ms == NOW + 100

    def test_claim_needs_ready(self) -> None:
        """A running job cannot be claimed twice."""
        with pytest.raises(TransitionError):
            running(running(accepted()))


class TestOutcome:
    def test_success_stores_result(self) -> None:
        """A fenced success finishes the job with its result and drops the lease."""
        record = running(accepted())
        done = states.apply_outcome(
            record, report(record, OutcomeStatus.SUCCEEDED, result=[1]), NOW + 30, 0.5
        )
        assert (done.state, done.result, done.lease, done.finished_at_ms) == (
            JobState.SUCCEEDED,
            [1],
            None,
            NOW + 30,
        )

    def test_stale_attempt_is_fenced(self) -> None:
        """A report from an older attempt is rejected."""
        record = running(accepted())
        old = report(record, OutcomeStatus.SUCCEEDED)
        retried = states.orphan(record, NOW + 40)
        again = running(retried, token="t2")
        with pytest.raises(Fenced):
            states.apply_outcome(again, old, NOW + 50, 0.5)

    def test_wrong_token_is_fenced(self) -> None:
        """A forged report (right attempt, wrong token) is rejected."""
        record = running(accepted())
        forged = report(record, OutcomeStatus.SUCCEEDED).model_copy(update={"token": "guess"})
        with pytest.raises(Fenced):
            states.apply_outcome(record, forged, NOW, 0.5)

    def test_failure_retries_after_backoff(self) -> None:
        """A failure with attempts left schedules a retry after the backoff and records the error."""
        record = running(accepted(backoff={"base_ms": 1000, "jitter": 0}))
        error = OutcomeError(type="ValueError", message="bad", traceback="tb")
        failed = states.apply_outcome(
            record, report(record, OutcomeStatus.FAILED, error=error), NOW + 100, 0.5
        )
        assert failed.state is JobState.SCHEDULED
        assert failed.run_at_ms == NOW + 1100
        assert failed.errors[-1].kind is ErrorKind.ERROR
        assert (failed.errors[-1].type, failed.errors[-1].traceback) == ("ValueError", "tb")

    def test_zero_backoff_retries_ready(self) -> None:
        """With no delay the retry is ready at once."""
        record = running(accepted(backoff={"base_ms": 0}))
        assert (
            states.apply_outcome(record, report(record, OutcomeStatus.FAILED), NOW, 0.5).state
            is JobState.READY
        )

    def test_dead_after_max_attempts(self) -> None:
        """The last allowed attempt failing makes the job dead, keeping the error history."""
        record = accepted(max_attempts=2, backoff={"base_ms": 0})
        for _ in range(2):
            record = running(record)
            record = states.apply_outcome(record, report(record, OutcomeStatus.FAILED), NOW, 0.5)
        assert record.state is JobState.DEAD
        assert [e.attempt for e in record.errors] == [1, 2]

    def test_fatal_is_dead_at_once(self) -> None:
        """`Fatal` ends the job whatever attempts remain."""
        record = running(accepted(max_attempts=10))
        assert (
            states.apply_outcome(record, report(record, OutcomeStatus.FATAL), NOW, 0.5).state is JobState.DEAD
        )

    def test_retry_uses_requested_delay(self) -> None:
        """`Retry(delay)` schedules exactly that delay."""
        record = running(accepted())
        retried = states.apply_outcome(
            record, report(record, OutcomeStatus.RETRY, retry_delay_ms=1234), NOW, 0.9
        )
        assert (retried.state, retried.run_at_ms) == (JobState.SCHEDULED, NOW + 1234)
        assert retried.errors[-1].kind is ErrorKind.RETRY

    def test_timeout_counts_as_failure(self) -> None:
        """A timed-out attempt is recorded as a timeout and retried."""
        record = running(accepted(backoff={"base_ms": 0}))
        retried = states.apply_outcome(record, report(record, OutcomeStatus.TIMEOUT), NOW, 0.5)
        assert retried.errors[-1].kind is ErrorKind.TIMEOUT

    def test_release_does_not_use_an_attempt(self) -> None:
        """A job handed back unrun is ready again with its attempts intact."""
        record = running(accepted(max_attempts=1))
        released = states.apply_outcome(record, report(record, OutcomeStatus.RELEASED), NOW, 0.5)
        assert (released.state, released.attempts_used, released.releases) == (JobState.READY, 0, 1)
        again = running(released, token="t2")
        assert again.attempt == 2
        assert (
            states.apply_outcome(again, report(again, OutcomeStatus.FAILED), NOW, 0.5).state is JobState.DEAD
        )

    def test_error_history_is_bounded(self) -> None:
        """Only the most recent errors are kept."""
        record = accepted(max_attempts=100, backoff={"base_ms": 0})
        for _ in range(30):
            record = running(record)
            record = states.apply_outcome(record, report(record, OutcomeStatus.FAILED), NOW, 0.5)
        assert len(record.errors) == 20
        assert record.errors[-1].attempt == 30

    def test_long_traceback_is_cut(self) -> None:
        """A huge traceback is stored cut to its end."""
        record = running(accepted())
        error = OutcomeError(type="E", message="m", traceback="x" * 10_000 + "END")
        failed = states.apply_outcome(record, report(record, OutcomeStatus.FAILED, error=error), NOW, 0.5)
        assert failed.errors[-1].traceback is not None
        traceback = failed.errors[-1].traceback
        assert traceback.endswith("END")
        assert bounds.json_bytes(traceback) == bounds.MAX_TRACEBACK_BYTES
        assert failed.errors[-1].traceback.endswith("END")


class TestSnooze:
    def snoozed(self, record: JobRecord, delay_ms: int = 1234) -> JobRecord:
        return states.apply_outcome(
            record, report(record, OutcomeStatus.SNOOZED, retry_delay_ms=delay_ms), NOW, 0.9
        )

    def test_runs_again_after_the_delay_without_spending_an_attempt(self) -> None:
        """A snooze reschedules after exactly its delay, records no error, and leaves the attempts unspent."""
        record = self.snoozed(running(accepted(max_attempts=1)))
        assert (record.state, record.run_at_ms, record.errors) == (JobState.SCHEDULED, NOW + 1234, ())
        assert (record.attempt, record.snoozes, record.attempts_used) == (1, 1, 0)

    def test_a_job_may_snooze_any_number_of_times_then_fail_on_its_own_attempts(self) -> None:
        """Snoozes never end a job; its real failures still do, after `max_attempts` of them."""
        record = accepted(max_attempts=1)
        for n in range(1, 6):
            record = self.snoozed(running(record), delay_ms=0)
            assert (record.state, record.snoozes) == (JobState.READY, n)
        final = running(record)
        failed = states.apply_outcome(final, report(final, OutcomeStatus.FAILED), NOW, 0.5)
        assert (failed.state, failed.attempt, failed.attempts_used) == (JobState.DEAD, 6, 1)

    def test_a_start_deadline_no_longer_applies(self) -> None:
        """The job started, which is what `expires_in` asked; the snoozed run is not expired later."""
        record = self.snoozed(running(accepted(expires_in_ms=100)))
        assert record.expires_at_ms is None

    def test_fenced_like_any_report(self) -> None:
        """A snooze without the attempt's token changes nothing."""
        record = running(accepted())
        forged = report(record, OutcomeStatus.SNOOZED).model_copy(update={"token": "guessed"})
        with pytest.raises(Fenced):
            states.apply_outcome(record, forged, NOW, 0.5)


class TestRescue:
    def test_lost_worker_counts_an_attempt(self) -> None:
        """A job of a lost session is retried at once, as a failed attempt of kind `lost`."""
        record = running(accepted(backoff={"base_ms": 5000}))
        lost = states.lose(record, NOW, 0.5, "gone")
        assert (lost.state, lost.attempts_used, lost.errors[-1].kind) == (JobState.READY, 1, ErrorKind.LOST)

    def test_repeated_losses_back_off(self) -> None:
        """A second loss waits for the backoff like any failure."""
        record = running(accepted(backoff={"base_ms": 5000, "jitter": 0}))
        again = running(states.lose(record, NOW, 0.5, "gone"), token="t2")
        second = states.lose(again, NOW + 10, 0.5, "gone again")
        assert (second.state, second.run_at_ms) == (JobState.SCHEDULED, NOW + 10 + 10_000)

    def test_poison_pill_ends_dead(self) -> None:
        """A job that keeps losing its workers ends dead instead of looping."""
        record = accepted(max_attempts=3, backoff={"base_ms": 0})
        for _ in range(3):
            record = states.lose(running(record), NOW, 0.5, "gone")
        assert record.state is JobState.DEAD
        assert all(e.kind is ErrorKind.LOST for e in record.errors)

    def test_orphan_keeps_attempts(self) -> None:
        """A claim that never reached its worker is ready again without using an attempt."""
        orphaned = states.orphan(running(accepted()), NOW)
        assert (orphaned.state, orphaned.attempts_used, orphaned.lease) == (JobState.READY, 0, None)


class TestWhoRanIt:
    def test_each_error_names_its_worker(self) -> None:
        """A failed attempt's error entry names the worker, session and claim time of its lease."""
        record = accepted(backoff={"base_ms": 0})
        record = states.apply_outcome(
            running(record), report(running(record), OutcomeStatus.FAILED), NOW, 0.5
        )
        again = states.claim(record, "host-2", "s2", "t2", NOW + 30)
        record = states.lose(again, NOW + 40, 0.5, "gone")
        assert [(e.attempt, e.worker, e.session, e.claimed_at_ms) for e in record.errors] == [
            (1, "host-1", "s1", NOW + 10),
            (2, "host-2", "s2", NOW + 30),
        ]

    @pytest.mark.parametrize(
        "end",
        [
            lambda r: states.apply_outcome(r, report(r, OutcomeStatus.SUCCEEDED), NOW, 0.5),
            lambda r: states.cancel(r, NOW),
            lambda r: states.release(r, NOW),
            lambda r: states.time_out(r, NOW, 0.5),
        ],
        ids=["succeeded", "cancelled", "released", "timed-out"],
    )
    def test_the_last_run_outlives_its_lease(self, end: Callable[[JobRecord], JobRecord]) -> None:
        """However an attempt ends, the lease is cleared and `last_run` keeps who ran it."""
        ended = end(running(accepted()))
        assert ended.lease is None
        assert ended.last_run == Run(attempt=1, worker="host-1", session="s1", claimed_at_ms=NOW + 10)

    def test_no_worker_for_an_attempt_that_never_ran(self) -> None:
        """An expired start names no worker."""
        record = accepted(expires_in_ms=5)
        dead = states.expire(record, NOW + 10)
        assert (dead.errors[-1].worker, dead.last_run) == (None, None)

    def test_a_long_worker_name_is_cut_in_the_history(self) -> None:
        """The error history keeps a worker name within its bound, whatever its characters."""
        record = states.claim(accepted(), "\u00e9" * 128, "s1", "t1", NOW)
        lost = states.lose(record, NOW, 0.5, "gone")
        assert lost.errors[-1].worker is not None
        assert bounds.json_bytes(lost.errors[-1].worker) <= bounds.MAX_ERROR_WORKER_BYTES

    def test_records_from_before_parse(self) -> None:
        """A stored record whose errors name no worker and that has no `last_run` still reads."""
        stored = states.lose(running(accepted()), NOW, 0.5, "gone").model_dump(mode="json")
        del stored["last_run"]
        for error in stored["errors"]:
            for name in ("worker", "session", "claimed_at_ms"):
                del error[name]
        old = JobRecord.model_validate(stored)
        assert (old.last_run, old.errors[-1].worker) == (None, None)


class TestCancelAndRevive:
    @pytest.mark.parametrize("delay", [None, 5000])
    def test_cancel_pending(self, delay: int | None) -> None:
        """Ready and scheduled jobs can be cancelled."""
        assert states.cancel(accepted(delay_ms=delay), NOW).state is JobState.CANCELLED

    def test_cancel_running_fences_the_attempt(self) -> None:
        """After a cancel, the running attempt's report is rejected."""
        record = running(accepted())
        cancelled = states.cancel(record, NOW)
        with pytest.raises(Fenced):
            states.apply_outcome(cancelled, report(record, OutcomeStatus.SUCCEEDED), NOW, 0.5)

    def test_cancel_terminal_refused(self) -> None:
        """A finished job cannot be cancelled."""
        with pytest.raises(TransitionError):
            states.cancel(states.cancel(accepted(), NOW), NOW)

    def test_revive_grants_fresh_attempts(self) -> None:
        """A dead job revived is ready with a new budget; its attempt number keeps growing."""
        record = states.apply_outcome(
            running(accepted(max_attempts=1)),
            report(running(accepted(max_attempts=1)), OutcomeStatus.FAILED),
            NOW,
            0.5,
        )
        assert record.state is JobState.DEAD
        revived = states.revive(record, NOW + 5, attempts=2)
        assert (revived.state, revived.max_attempts, revived.finished_at_ms) == (JobState.READY, 3, None)
        assert running(revived).attempt == 2

    def test_a_revived_expired_job_does_not_expire_again(self) -> None:
        """An expired job revived is claimable, not expired again at once: its deadline is gone."""
        dead = states.expire(accepted(expires_in_ms=5), NOW + 10)
        revived = states.revive(dead, NOW + 1000)
        assert (revived.state, revived.expires_at_ms) == (JobState.READY, None)
        assert not states.expired(revived, NOW + 1000)
        assert running(revived).state is JobState.RUNNING

    def test_a_revived_job_gets_its_releases_back(self) -> None:
        """A job that died of too many releases may be handed back `MAX_RELEASES` times again; the claims
        handed back before count as attempts used, and the grant of attempts stays whole."""
        record = accepted(max_attempts=2)
        for _ in range(states.MAX_RELEASES + 1):
            record = states.release(running(record), NOW)
        assert (record.state, record.errors[-1].type) == (JobState.DEAD, "TooManyReleases")
        revived = states.revive(record, NOW + 5, attempts=3)
        assert (revived.state, revived.releases) == (JobState.READY, 0)
        assert revived.max_attempts - revived.attempts_used == 3
        record = states.release(running(revived), NOW + 6)
        assert (record.state, record.releases) == (JobState.READY, 1)
        for _ in range(3):
            if record.state is JobState.SCHEDULED:
                record = states.due(record, record.run_at_ms)
            attempt = running(record)
            record = states.apply_outcome(attempt, report(attempt, OutcomeStatus.FAILED), NOW + 7, 0.5)
        assert record.state is JobState.DEAD  # the three attempts granted, no more

    def test_revive_needs_dead(self) -> None:
        """Only dead jobs are revived."""
        with pytest.raises(TransitionError):
            states.revive(accepted(), NOW)


def test_backoff_model_defaults() -> None:
    """The default retry policy starts at one second and doubles."""
    assert Backoff() == Backoff(base_ms=1000, factor=2.0, max_ms=600_000, jitter=0.2)


class TestDeadlines:
    def test_expired_only_before_first_start(self) -> None:
        """A start deadline applies to a job that has not started; past it, it dies as expired."""
        record = accepted(delay_ms=100, expires_in_ms=50)
        assert record.expires_at_ms == NOW + 150
        assert not states.expired(record, NOW + 150)
        assert states.expired(record, NOW + 151)
        dead = states.expire(states.due(record, NOW + 151), NOW + 151)
        assert (dead.state, dead.errors[-1].kind) == (JobState.DEAD, ErrorKind.EXPIRED)

    def test_started_job_never_expires(self) -> None:
        """Once the first attempt has run, the deadline no longer applies (retries are not expired)."""
        record = running(accepted(expires_in_ms=10, backoff={"base_ms": 0}))
        retried = states.apply_outcome(record, report(record, OutcomeStatus.FAILED), NOW + 500, 0.5)
        assert not states.expired(retried, NOW + 10_000)
        with pytest.raises(TransitionError):
            states.expire(retried, NOW + 10_000)

    def test_released_claim_still_counts_as_unstarted(self) -> None:
        """A claim handed back unrun does not start the job: the deadline still applies."""
        record = running(accepted(expires_in_ms=10))
        released = states.apply_outcome(record, report(record, OutcomeStatus.RELEASED), NOW + 5, 0.5)
        assert states.expired(released, NOW + 11)

    def test_server_side_timeout(self) -> None:
        """An attempt failed by the reaper for running past its timeout is a timeout and retries."""
        record = running(accepted(backoff={"base_ms": 0}))
        retried = states.time_out(record, NOW + 400_000, 0.5)
        assert (retried.state, retried.errors[-1].kind) == (JobState.READY, ErrorKind.TIMEOUT)


def test_run_at_is_never_rounded_earlier() -> None:
    """Sub-millisecond digits round the due time up: a job never starts before its run_at."""
    from datetime import UTC, datetime

    for micros in (1, 999, 500, 0):
        run_at = datetime(2030, 1, 1, 0, 0, 0, micros, tzinfo=UTC)
        record = states.accept(JobRequest(run_at=run_at), "000000000000000000000000J1", "a", NOW, None)
        exact_ms = 1_893_456_000_000
        assert record.run_at_ms == exact_ms + (1 if micros else 0)
