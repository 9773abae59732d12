"""Expire or claim, and the work a won claim sends (`dispatcher.claims`)."""

from __future__ import annotations

from jetsched.core import states
from jetsched.core.models import Heartbeat, JobRequest, JobState, WorkflowLink, token_hash
from jetsched.dispatcher.claims import STALE_CLAIM_S, Expire, Lease, decide, stale, work_message

T0 = 1_000_000
JOB = "000000000000000000000000J1"
SESSION = Heartbeat(
    worker="w", session="s1", capabilities=("a",), concurrency=4, interval_ms=500, incarnation="i1"
)


class TestDecide:
    def test_ready_job_is_leased_to_the_session(self) -> None:
        """The next attempt goes to the planned session and process, proven by the token's hash."""
        record = states.accept(JobRequest(), JOB, "a", T0, None)
        lease = decide(record, SESSION, "tok", T0 + 5)
        assert isinstance(lease, Lease)
        assert lease.claimed.state is JobState.RUNNING
        held = lease.claimed.lease
        assert held is not None
        assert (held.session, held.worker, held.incarnation, held.attempt) == ("s1", "w", "i1", 1)
        assert held.token_hash == token_hash("tok")

    def test_job_past_its_start_deadline_expires(self) -> None:
        """A job whose first attempt never started in time is not handed out."""
        record = states.accept(JobRequest(expires_in_ms=100), JOB, "a", T0, None)
        assert decide(record, SESSION, "tok", T0 + 101) == Expire()

    def test_job_at_its_deadline_is_still_claimed(self) -> None:
        """The deadline itself is still in time."""
        record = states.accept(JobRequest(expires_in_ms=100), JOB, "a", T0, None)
        assert isinstance(decide(record, SESSION, "tok", T0 + 100), Lease)

    def test_a_retried_job_never_expires(self) -> None:
        """The start deadline is for the first attempt only."""
        record = states.accept(JobRequest(expires_in_ms=100), JOB, "a", T0, None)
        retried = states.orphan(states.claim(record, "w", "s0", "t0", T0 + 1), T0 + 2)
        lost = states.lose(states.claim(retried, "w", "s0", "t1", T0 + 3), T0 + 4, 0.0, "lost")
        assert lost.state is JobState.READY
        assert isinstance(decide(lost, SESSION, "tok", T0 + 10_000), Lease)


class TestStale:
    def test_a_slow_answer_is_stale(self) -> None:
        """An answer later than `STALE_CLAIM_S` must be confirmed by the record."""
        assert not stale(10.0, 10.0 + STALE_CLAIM_S)
        assert stale(10.0, 10.0 + STALE_CLAIM_S + 0.001)


class TestWorkMessage:
    def test_carries_the_attempt_and_token(self) -> None:
        """The work message names the claimed attempt and carries the token (only the holder gets it)."""
        record = states.accept(JobRequest(payload={"x": 1}, priority=7), JOB, "a", T0, None)
        lease = decide(record, SESSION, "tok", T0)
        assert isinstance(lease, Lease)
        work = work_message(record, lease)
        assert (work.id, work.attempt, work.token, work.payload, work.priority) == (
            JOB,
            1,
            "tok",
            {"x": 1},
            7,
        )
        assert "parents" not in work.model_dump(exclude_unset=True)

    def test_a_workflow_step_carries_its_parents(self) -> None:
        """A workflow step's parents' results go along."""
        record = states.accept(JobRequest(), JOB, "a", T0, None).model_copy(
            update={"workflow": WorkflowLink(id="wf", step="s", index=0), "parents": {"p": 1}}
        )
        lease = decide(record, SESSION, "tok", T0)
        assert isinstance(lease, Lease)
        assert work_message(record, lease).model_dump(exclude_unset=True)["parents"] == {"p": 1}
