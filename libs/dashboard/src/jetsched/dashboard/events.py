"""Server-sent events from the record feed (pure shaping).

The dashboard follows the `jobs` bucket's change stream headers-only (`bus/feed.py`): every write
carries the job's state, capability and, while leased, session in its headers, so a state change costs
the dashboard no record decode and the browser a few dozen bytes. The browser keeps its tables and
refetches a job only when an event names it; aggregates (queue depths) it refetches at most once a
second while events arrive, instead of polling every job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from jetsched.bus.records import EXPIRING

if TYPE_CHECKING:
    from jetsched.core.changes import Change

#: What a browser is told when it fell behind (its queue filled): refetch what you show.
RESYNC = "resync"


def job_event(change: Change) -> dict[str, Any]:
    """The browser's view of one record write."""
    return {
        "id": change.id,
        "state": None if change.state is None else change.state.value,
        "capability": change.capability or None,
        "session": change.session,
        "workflow": change.workflow,
        "revision": change.revision,
    }


class Moves:
    """Which deletions are news. A succeeded or cancelled record is purged from the bucket moments after it
    is written, as it moves to history (`bus/history.py`): the browser keeps showing its final state. Other
    deletions (a dead letter purged, an expiry) are shown. Bounded: the oldest ids are forgotten first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._finished: dict[str, None] = {}

    def news(self, change: Change) -> bool:
        if change.state is None:
            if change.id in self._finished:
                del self._finished[change.id]
                return False
            return True
        if change.state in EXPIRING:
            self._finished[change.id] = None
            if len(self._finished) > self.size:
                del self._finished[next(iter(self._finished))]
        return True


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE frame. orjson writes no raw newlines, so one `data:` line carries any value safely, and
    the event name is ours, never the sender's."""
    head = f"event: {event}\n" + ("" if event_id is None else f"id: {event_id}\n")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


#: A comment line: keeps proxies from closing an idle stream.
KEEPALIVE = b": keepalive\n\n"
