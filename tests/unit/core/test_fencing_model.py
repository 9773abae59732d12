"""Property test: the lease and fencing rules of the state machine against a simple model.

Hypothesis drives random sequences of claims, genuine and stale reports, losses, orphans, timeouts,
cancels and revivals. The model tracks only what the promise is about: which attempt holds the lease,
how many attempts were used, and whether the job is finished. Invariants checked after every step:
- `attempt` never decreases, and only a claim raises it;
- a report from any attempt but the current lease's changes nothing;
- a job is `running` exactly when it has a lease, and that lease names the current attempt;
- attempts used never exceed `max_attempts`; a final job stays final (only `revive` brings a dead job back).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jetsched.core import states
from jetsched.core.errors import TransitionError
from jetsched.core.models import (
    TERMINAL,
    JobRecord,
    JobRequest,
    JobState,
    Outcome,
    OutcomeStatus,
    token_hash,
)

JOB = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"

MAX_ATTEMPTS = 3
REPORTS = list(OutcomeStatus)


class FencingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000
        request = JobRequest(max_attempts=MAX_ATTEMPTS, backoff={"base_ms": 0})
        self.record: JobRecord = states.accept(request, JOB, "cap", self.now, None)
        self.tokens: dict[int, str] = {}
        self.high_attempt = 0
        self.revived = False

    def tick(self) -> int:
        self.now += 7
        return self.now

    def apply(self, verb: object) -> JobRecord | None:
        try:
            return verb()  # type: ignore[operator, no-any-return]
        except TransitionError:
            return None

    @rule()
    def claim(self) -> None:
        token = f"t{len(self.tokens)}"
        after = self.apply(lambda: states.claim(self.record, "w", "s", token, self.tick()))
        if after is None:
            assert self.record.state is not JobState.READY
            return
        assert after.attempt == self.record.attempt + 1
        self.tokens[after.attempt] = token
        self.record = after

    @rule(status=st.sampled_from(REPORTS), back=st.integers(0, 3), right_token=st.booleans())
    def report(self, status: OutcomeStatus, back: int, right_token: bool) -> None:
        attempt = self.record.attempt - back
        token = self.tokens.get(attempt, "none") if right_token else "forged"
        outcome = Outcome(
            id=JOB,
            attempt=attempt,
            token=token,
            session="s",
            status=status,
            retry_delay_ms=0,
            finished_at_ms=0,
        )
        holds = (
            self.record.state is JobState.RUNNING
            and self.record.lease is not None
            and (self.record.lease.attempt, self.record.lease.token_hash) == (attempt, token_hash(token))
        )
        after = self.apply(lambda: states.apply_outcome(self.record, outcome, self.tick(), 0.5))
        if not holds:
            assert after is None, "a report without the lease changed the record"
            return
        assert after is not None
        assert after.attempt == self.record.attempt
        self.record = after

    @rule(kind=st.sampled_from(["lose", "orphan", "time_out"]))
    def rescue(self, kind: str) -> None:
        verbs = {
            "lose": lambda: states.lose(self.record, self.tick(), 0.5, "gone"),
            "orphan": lambda: states.orphan(self.record, self.tick()),
            "time_out": lambda: states.time_out(self.record, self.tick(), 0.5),
        }
        after = self.apply(verbs[kind])
        assert (after is not None) == (self.record.state is JobState.RUNNING)
        if after is not None:
            self.record = after

    @rule()
    def due(self) -> None:
        after = self.apply(lambda: states.due(self.record, self.record.run_at_ms))
        if after is not None:
            self.record = after

    @rule()
    def cancel(self) -> None:
        after = self.apply(lambda: states.cancel(self.record, self.tick()))
        assert (after is None) == (self.record.state in TERMINAL)
        if after is not None:
            self.record = after

    @precondition(lambda self: self.record.state is JobState.DEAD)
    @rule()
    def revive(self) -> None:
        self.record = states.revive(self.record, self.tick(), attempts=1)
        self.revived = True

    @invariant()
    def attempt_never_decreases(self) -> None:
        assert self.record.attempt >= self.high_attempt
        self.high_attempt = self.record.attempt

    @invariant()
    def running_iff_leased_to_current_attempt(self) -> None:
        lease = self.record.lease
        assert (self.record.state is JobState.RUNNING) == (lease is not None)
        if lease is not None:
            assert lease.attempt == self.record.attempt
            assert lease.token_hash == token_hash(self.tokens[lease.attempt])

    @invariant()
    def attempts_bounded(self) -> None:
        assert 0 <= self.record.attempts_used <= self.record.max_attempts
        if not self.revived:
            assert self.record.max_attempts == MAX_ATTEMPTS


TestFencing = FencingMachine.TestCase
TestFencing.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
