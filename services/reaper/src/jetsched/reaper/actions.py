"""What a rescue verdict or an outcome report means for the record and the messages around it. Pure: the
shell reads, CASes with these verbs, and sends what they call for.

- A rescue is fenced by the lease the verdict was reached on: re-applied after a lost CAS, it applies
  only while *that* attempt of *that* session still holds the job (`states.fence`). **lost** fails the
  attempt (`states.lose`: retried, or dead when out of attempts), **timeout** fails it as timed out
  (`states.time_out`), **orphan** hands the job back without using an attempt (`states.orphan`).
- After a timeout the worker may still be running the attempt: it is told to stop (`STOPS_WORKER`). A
  lost session is gone, and an orphan's worker never got the job.
- A session is told to stop an attempt only once the stored record confirms the lease is no longer its
  own (`must_stop`): the sweep's view may lag a claim.
- An outcome report applies through `states.apply_outcome`; when it queues the job again, the next
  attempt's trace links to the attempt's run span the report carried (`retry_of`).
- A report for a job nobody can find is redelivered a few times before it is dropped: a leader that
  has just changed can answer "not found" for a record it will have in a moment.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from jetsched.core import states
from jetsched.core.models import JobRecord, JobState

from .sweeps import Verdict

if TYPE_CHECKING:
    from jetsched.core.models import Lease, Outcome

#: Verdicts after which the worker may still be running the attempt, and is told to stop it.
STOPS_WORKER = frozenset({Verdict.TIMEOUT})
#: Deliveries of a report for a job nobody can find before it is dropped.
UNKNOWN_DELIVERIES = 5


class Unknown(StrEnum):
    """What becomes of a report for a job not found."""

    #: Redeliver it later (the job may appear).
    NAK = "nak"
    #: Drop it for good.
    TERM = "term"


def rescue(record: JobRecord, lease: Lease, verdict: Verdict, now_ms: int, rand: float) -> JobRecord:
    """The record after rescuing `lease`'s attempt; `Fenced` once the lease is no longer current."""
    states.fence(record, lease.attempt, lease.token_hash)
    if verdict is Verdict.LOST:
        return states.lose(record, now_ms, rand, f"worker session {lease.session} ({lease.worker}) lost")
    if verdict is Verdict.TIMEOUT:
        return states.time_out(record, now_ms, rand)
    return states.orphan(record, now_ms)


def must_stop(record: JobRecord | None, session: str, attempt: int) -> bool:
    """Whether a session running `attempt` must be told to stop: the stored record (None: gone) does not
    lease that attempt to it."""
    lease = record.lease if record is not None else None
    return lease is None or lease.session != session or lease.attempt != attempt


def apply_outcome(
    record: JobRecord, outcome: Outcome, now_ms: int, rand: float, ran: dict[str, str] | None
) -> JobRecord:
    """The record after a worker's report; `ran` is the attempt's run span (trace headers) it carried."""
    after = states.apply_outcome(record, outcome, now_ms, rand)
    if after.state in (JobState.READY, JobState.SCHEDULED):
        after = after.model_copy(update={"retry_of": ran})
    return after


def unknown_report(deliveries: int) -> Unknown:
    """A report for a job not found, on its `deliveries`-th delivery."""
    return Unknown.NAK if deliveries < UNKNOWN_DELIVERIES else Unknown.TERM
