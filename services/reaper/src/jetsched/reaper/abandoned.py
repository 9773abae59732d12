"""Abandoned submits: which workflows a dead submitter left half-made, and when to clear them. Pure.

A workflow submit, like a schedule's fire, writes its step jobs `waiting` first, then its record, already
`running` (`Workflows.begin`). A submitter that dies in between leaves step jobs with *no* record, which
nothing releases — finished only if the client resubmits with its key, or a timer replays the fire. When
none will, the reaper clears them after `grace_ms` (well past the SDK's keyed-retry window of 30 s), from
when this process first saw them waiting with no record: if their schedule may still fire them, it looks
again later; if not, the record's key is fenced (purged at revision 0, so a late submitter's or replay's
create of the record fails; a keyed resubmit then makes a new workflow), and every step job of it still
`waiting` is purged by CAS.

Why clear rather than complete: the client was never told "accepted", so no promise covers it, and an
unkeyed client may well have submitted it again — starting the half-made one could run it twice.

Why the reaper: it already follows both feeds (job records and workflow records), so it sees the
`waiting` jobs and whether a record came without reading anything; intake keeps no view of jobs.

An intake of an earlier version wrote the record first, `creating`, and flipped it to `running` after the
steps; what it left half-made is cleared alike: (1) the record is purged by CAS at its `creating`
revision — the fence; a record that started meanwhile makes the purge fail, leaving it alone; (2) every
step job of it still `waiting` is purged by CAS (a step id not created yet is purged at revision 0, which
fences its creation too). What if the reaper dies between 1 and 2? The record is gone (its purge marker
stays in the feed) and step jobs still wait: a workflow seen *gone* while jobs of it wait is cleared
`RETRY_MS` later.

Ages are this process's own readings, so a restart only makes the grace longer, and no host's clock is
compared with another's.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from jetsched.core import workflows as wf

if TYPE_CHECKING:
    from collections.abc import Mapping

#: Default grace before a `creating` workflow is cleared: the SDK resends a keyed submit for 30 s.
GRACE_MS = 120_000
#: How soon the waiting jobs of a workflow seen gone are cleared, and a failed clearing is tried again.
RETRY_MS = 2_000


class Kind(Enum):
    """How a workflow looks unstarted."""

    CREATING = "creating"  # its record says so
    GONE = "gone"  # its record was removed while step jobs of it wait
    UNRECORDED = "unrecorded"  # step jobs of it wait, and no record of it was ever seen


class Unstarted:
    """Workflows whose record is `creating`, gone, or never seen, by when this process first saw them so."""

    def __init__(self, grace_ms: int = GRACE_MS) -> None:
        self.grace_ms = grace_ms
        self.creating: dict[str, int] = {}
        self.gone: dict[str, int] = {}
        self.unrecorded: dict[str, int] = {}

    def waiting(self, workflow_id: str, recorded: bool, now_ms: int) -> None:
        """A step job of the workflow waits; `recorded`: a live record of it is known."""
        if not recorded and workflow_id not in self.creating and workflow_id not in self.gone:
            self.unrecorded.setdefault(workflow_id, now_ms)

    def observe(self, workflow_id: str, state: wf.WorkflowState | None, now_ms: int) -> None:
        """A workflow record as its feed shows it; `state` None: deleted, purged or expired."""
        self.unrecorded.pop(workflow_id, None)
        if state is wf.WorkflowState.CREATING:
            self.creating.setdefault(workflow_id, now_ms)
            self.gone.pop(workflow_id, None)
            return
        self.creating.pop(workflow_id, None)
        if state is None:
            self.gone.setdefault(workflow_id, now_ms)
        else:
            self.gone.pop(workflow_id, None)

    def due(self, waiting: Mapping[str, object], now_ms: int) -> list[tuple[str, Kind]]:
        """The workflows to clear now, each with how it looks unstarted; taken out of the view (`again`
        puts one back). Gone or unrecorded ones without waiting jobs are forgotten."""
        found = [(w, Kind.CREATING) for w, at in self.creating.items() if now_ms - at >= self.grace_ms]
        for workflow_id, at in list(self.gone.items()):
            if workflow_id in waiting:
                if now_ms - at >= RETRY_MS:
                    found.append((workflow_id, Kind.GONE))
            elif now_ms - at >= self.grace_ms:
                del self.gone[workflow_id]
        for workflow_id, at in list(self.unrecorded.items()):
            if workflow_id not in waiting:
                del self.unrecorded[workflow_id]
            elif now_ms - at >= self.grace_ms:
                found.append((workflow_id, Kind.UNRECORDED))
        for workflow_id, kind in found:
            del self._view(kind)[workflow_id]
        return found

    def again(self, workflow_id: str, kind: Kind, now_ms: int) -> None:
        """Look at a workflow again later: its clearing failed, or was not safe yet."""
        if kind is Kind.GONE:
            self.gone.setdefault(workflow_id, now_ms)
        else:
            self._view(kind).setdefault(workflow_id, now_ms - self.grace_ms + RETRY_MS)

    def _view(self, kind: Kind) -> dict[str, int]:
        if kind is Kind.CREATING:
            return self.creating
        return self.gone if kind is Kind.GONE else self.unrecorded
