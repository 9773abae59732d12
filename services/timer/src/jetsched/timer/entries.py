"""What the timer does when a timer entry comes due, given the record it names. Pure: the shell reads the
record, asks `decide`, and carries out the answer.

An entry announces a write: its writer puts it *before* the record (`Records.update`), naming the record
revision it replaces (`base`, 0 when creating). So when an entry comes due the record may be:

- gone, or past `base` and waiting for no time: the job moved on (claimed, cancelled, rescheduled with
  an entry of its own) — `Forget` the entry;
- still at `base` (or, when creating, not there yet) and waiting for no time: the announced write has
  not landed — on its way, or its writer died. A late write can still land, so look again (`Arm`),
  less often as the entry ages, and give up after `ABANDON_MS`;
- waiting for a later time than the entry's (an older entry): `Arm` for that time;
- due now: `Fire` — a scheduled job becomes ready (`states.due`), a ready one past its start deadline
  dead (`states.expire`).

After a fire's CAS, `after_fire` says whether the entry is still needed: a record that waits for a time
of its own again had its new entry written with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from jetsched.core import states
from jetsched.core.changes import timer_due
from jetsched.core.models import JobRecord, JobState

#: How soon an entry whose announced write has not landed is looked at again (at first; then less often).
RECHECK_MS = 50
#: The longest wait between two looks at an entry whose announced write has not landed.
MAX_RECHECK_MS = 60_000
#: After this long an announced write that never landed is given up (its writer died or failed).
ABANDON_MS = 3_600_000
#: How soon an entry is looked at again after its CAS could not be made (storage trouble, moved on).
RETRY_MS = 1000


class Entry(NamedTuple):
    """A timer entry as this replica knows it."""

    #: The entry's own revision (it is removed by a CAS on it).
    revision: int
    #: When this replica saw it written (its own clock).
    seen_ms: int
    #: The record revision its writer was replacing (0: creating): until the record is past it, the
    #: write the entry announces may still land.
    base: int


#: Bits per field when an entry is packed into one int: enough for any stream sequence and any ms time.
_FIELD_BITS = 64
_FIELD_MASK = (1 << _FIELD_BITS) - 1


def pack(entry: Entry) -> int:
    """The entry as one int, which the wheel keeps beside its due time (no object per pending job)."""
    return entry.seen_ms | entry.base << _FIELD_BITS | entry.revision << 2 * _FIELD_BITS


def unpack(data: int) -> Entry:
    return Entry(data >> 2 * _FIELD_BITS, data & _FIELD_MASK, data >> _FIELD_BITS & _FIELD_MASK)


class Verb(StrEnum):
    #: scheduled → ready.
    DUE = "due"
    #: ready (first attempt never started) → dead, past its start deadline.
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True)
class Forget:
    """Remove the entry: nothing waits for it."""


@dataclass(frozen=True, slots=True)
class Arm:
    """Look at the entry again at `at_ms`."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Fire:
    """Move the record on by CAS; `due_ms` is the time it was waiting for (lateness is measured from it)."""

    verb: Verb
    due_ms: int


Decision = Forget | Arm | Fire


def decide(record: JobRecord | None, revision: int, entry: Entry, now_ms: int) -> Decision:
    """What to do with a due entry, given its record as read (None: not found) at `revision`."""
    due = None if record is None else timer_due(record)
    if record is None or due is None:
        if revision > entry.base or (record is None and entry.base > 0):
            return Forget()
        age = now_ms - entry.seen_ms
        if age >= ABANDON_MS:
            return Forget()
        return Arm(now_ms + min(max(age // 4, RECHECK_MS), MAX_RECHECK_MS))
    if due > now_ms:
        return Arm(due)
    return Fire(Verb.DUE if record.state is JobState.SCHEDULED else Verb.EXPIRE, due)


def fire(record: JobRecord, verb: Verb, now_ms: int) -> JobRecord:
    """The record after the fire (raises `TransitionError` once it no longer applies)."""
    if verb is Verb.DUE:
        return states.due(record, now_ms)
    return states.expire(record, now_ms)


def after_fire(after: JobRecord | None, now_ms: int) -> Forget | Arm | None:
    """After a fire's CAS (`after` None: the job moved on under it): what becomes of the entry. None: it
    stays, for the new record waits for a time of its own and its entry was written with it."""
    if after is None:
        return Arm(now_ms + RETRY_MS)  # then the entry is dropped, or fires
    return Forget() if timer_due(after) is None else None
