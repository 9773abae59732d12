"""What the dispatcher does with a planned claim, and what it sends once the claim is won. Pure.

- A job whose first attempt never started and whose start deadline has passed is not handed to anyone:
  it expires (`states.expire`, dead). The timer expires it too, at its deadline; whichever CAS lands
  first wins, the other finds the job moved on.
- Otherwise the next attempt is leased to the planned session (`states.claim`) with a fresh token.
- A claim answered more than `STALE_CLAIM_S` after it was asked may be a stale answer (a dispatcher
  paused or cut off after asking): it is checked against the record before its work is sent.
- The work message is built from the claimed record; a workflow step's parents' results and a map
  instance's item go along only when there are some.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jetsched.core import states
from jetsched.core.models import WorkMessage

if TYPE_CHECKING:
    from jetsched.core.models import Heartbeat, JobRecord

#: A claim answered later than this after it was asked is re-read before its work is sent. Far below the
#: reaper's orphan grace (1.5 s after it sees the claim), far above a claim's round trip (~1 ms).
STALE_CLAIM_S = 0.25


@dataclass(frozen=True, slots=True)
class Expire:
    """The job is past its start deadline: CAS it dead instead of claiming it."""


@dataclass(frozen=True, slots=True)
class Lease:
    """CAS the record to `claimed`: the next attempt, leased to the session with `token`."""

    claimed: JobRecord
    token: str


def decide(record: JobRecord, session: Heartbeat, token: str, now_ms: int) -> Expire | Lease:
    """Expire or claim a ready job planned for `session`."""
    if states.expired(record, now_ms):
        return Expire()
    claimed = states.claim(record, session.worker, session.session, token, now_ms, session.incarnation)
    return Lease(claimed, token)


def stale(asked_s: float, answered_s: float) -> bool:
    """Whether a claim's answer came so late (local clock readings) that the record must confirm it
    before work is sent."""
    return answered_s - asked_s > STALE_CLAIM_S


def work_message(record: JobRecord, lease: Lease) -> WorkMessage:
    """The work message for a won claim."""
    step = {} if record.workflow is None else {"parents": record.parents or {}, "item": record.item}
    # Built from a validated record: constructed without validating again (the hot path).
    return WorkMessage.model_construct(
        **step,
        id=record.id,
        capability=record.capability,
        attempt=lease.claimed.attempt,
        token=lease.token,
        payload=record.payload,
        priority=record.priority,
        timeout_s=record.timeout_s,
        heartbeat_timeout_s=record.heartbeat_timeout_s,
        created_at_ms=record.created_at_ms,
        run_at_ms=record.run_at_ms,
    )
