"""What the timer does with a due entry, given its record (`timer.entries`)."""

from __future__ import annotations

import pytest

from jetsched.core import states
from jetsched.core.errors import NotDue, TransitionError
from jetsched.core.models import JobRecord, JobRequest, JobState
from jetsched.timer.entries import (
    ABANDON_MS,
    MAX_RECHECK_MS,
    RECHECK_MS,
    RETRY_MS,
    Arm,
    Entry,
    Fire,
    Forget,
    Verb,
    after_fire,
    decide,
    fire,
)

T0 = 1_000_000
JOB = "000000000000000000000000J1"


def scheduled(delay_ms: int = 50) -> JobRecord:
    return states.accept(JobRequest(delay_ms=delay_ms), JOB, "a", T0, None)


def ready_with_deadline(expires_in_ms: int = 100) -> JobRecord:
    return states.accept(JobRequest(expires_in_ms=expires_in_ms), JOB, "a", T0, None)


class TestDecide:
    def test_due_scheduled_job_fires_ready(self) -> None:
        """A scheduled record at its time fires `due`, measured from its run_at."""
        assert decide(scheduled(), 3, Entry(2, T0, 0), T0 + 50) == Fire(Verb.DUE, T0 + 50)

    def test_ready_job_past_its_deadline_fires_expire(self) -> None:
        """A ready record whose first attempt never started expires just past its deadline."""
        record = ready_with_deadline()
        assert decide(record, 3, Entry(2, T0, 0), T0 + 101) == Fire(Verb.EXPIRE, T0 + 101)

    def test_older_entry_waits_for_the_records_time(self) -> None:
        """An entry earlier than the record's time (rescheduled since) is re-armed for the record's time."""
        assert decide(scheduled(500), 3, Entry(2, T0, 0), T0 + 50) == Arm(T0 + 500)

    def test_moved_on_record_drops_the_entry(self) -> None:
        """A record past the revision the entry replaced, waiting for no time, has moved on."""
        running = states.claim(states.due(scheduled(), T0 + 50), "w", "s", "tok", T0 + 51)
        assert decide(running, 5, Entry(2, T0, 3), T0 + 60) == Forget()

    def test_deleted_record_drops_an_updating_entry(self) -> None:
        """A record gone after an entry that announced an update (base > 0) is not coming back."""
        assert decide(None, 0, Entry(2, T0, 4), T0 + 60) == Forget()

    @pytest.mark.parametrize(
        ("age_ms", "again_in_ms"),
        [(0, RECHECK_MS), (1000, 250), (10 * MAX_RECHECK_MS, MAX_RECHECK_MS)],
    )
    def test_announced_write_not_landed_is_looked_at_again(self, age_ms: int, again_in_ms: int) -> None:
        """A record not there yet (the entry goes first) is waited for, less often as the entry ages."""
        now = T0 + age_ms
        assert decide(None, 0, Entry(2, T0, 0), now) == Arm(now + again_in_ms)

    def test_record_still_at_the_base_revision_is_waited_for(self) -> None:
        """A record still at the revision the entry replaces: the announced update may land late."""
        running = states.claim(states.accept(JobRequest(), JOB, "a", T0, None), "w", "s", "tok", T0)
        assert decide(running, 3, Entry(9, T0, 3), T0 + 10) == Arm(T0 + 10 + RECHECK_MS)

    def test_announced_write_is_given_up_after_an_hour(self) -> None:
        """An entry whose write never landed is dropped after `ABANDON_MS`."""
        assert decide(None, 0, Entry(2, T0, 0), T0 + ABANDON_MS) == Forget()


class TestFire:
    def test_due_makes_ready(self) -> None:
        """`due` moves a scheduled job to ready."""
        assert fire(scheduled(), Verb.DUE, T0 + 50).state is JobState.READY

    def test_due_never_early(self) -> None:
        """A record rescheduled later since the decision is not due."""
        with pytest.raises(NotDue):
            fire(scheduled(500), Verb.DUE, T0 + 50)

    def test_expire_kills_an_unstarted_job(self) -> None:
        """`expire` ends a ready job past its start deadline dead."""
        assert fire(ready_with_deadline(), Verb.EXPIRE, T0 + 101).state is JobState.DEAD

    def test_expire_refuses_a_started_job(self) -> None:
        """A job claimed meanwhile does not expire."""
        running = states.claim(ready_with_deadline(), "w", "s", "tok", T0 + 1)
        with pytest.raises(TransitionError):
            fire(running, Verb.EXPIRE, T0 + 101)


class TestAfterFire:
    def test_moved_on_under_the_cas_looks_again(self) -> None:
        """A job moved on under the fire is looked at again a second later."""
        assert after_fire(None, T0) == Arm(T0 + RETRY_MS)

    def test_done_waiting_drops_the_entry(self) -> None:
        """A record that waits for no time any more needs no entry."""
        assert after_fire(fire(scheduled(), Verb.DUE, T0 + 50), T0 + 50) == Forget()

    def test_waiting_again_keeps_the_new_entry(self) -> None:
        """A ready job with a start deadline keeps the entry its CAS wrote."""
        request = JobRequest(delay_ms=50, expires_in_ms=500)
        record = states.accept(request, JOB, "a", T0, None)
        after = fire(record, Verb.DUE, T0 + 50)
        assert after.state is JobState.READY
        assert after_fire(after, T0 + 50) is None
