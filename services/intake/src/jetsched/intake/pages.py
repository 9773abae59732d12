"""List pages over two sources: live jobs (and dead letters) from intake's index, finished ones from history.

Live jobs come in id (submission) order from the in-memory index, finished jobs (succeeded, cancelled) in
the order they ended, read from the history stream with a subject filter — no index of them anywhere.
A list of every state gives the live jobs first, then history; the cursor says which part it is in
(`ids.CURSOR_RE`). A job that ends while someone pages through may show up in both parts, never in
neither: it reaches history before it leaves the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from jetsched.bus.records import decoded
from jetsched.core import subjects
from jetsched.core.errors import Poisoned
from jetsched.core.ids import history_cursor
from jetsched.core.models import JobRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.bus.history import History
    from jetsched.core.models import JobState

#: Where the id is in a history subject (`jetsched.history.<id>.<state>.<capability>`).
_ID_TOKEN = 2


@dataclass(slots=True)
class Page:
    """A page being filled: it stops at `budget` bytes of JSON (one record alone may pass it)."""

    budget: int
    jobs: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    #: The cursor after the last job taken, and whether the page is full.
    last: str | None = None
    full: bool = False
    #: The jobs taken: one that finished and moved to history while the page was read (the index still
    #: named it live) is met again among history's, and shown once.
    ids: set[str] = field(default_factory=set)

    def add(self, record: JobRecord, cursor: str) -> bool:
        """Take a record if it fits (and is not on the page already); False once the page is full."""
        if record.id in self.ids:
            return True
        view = record.model_dump(mode="json")
        size = len(orjson.dumps(view))
        if self.jobs and self.size + size > self.budget:
            self.full = True
            return False
        self.jobs.append(view)
        self.ids.add(record.id)
        self.size += size
        self.last = cursor
        self.full = self.size > self.budget
        return not self.full

    def reply(self, cursor: str | None) -> dict[str, Any]:
        """The page, and where the next one starts: past its last job if full, else at `cursor`."""
        return {"jobs": self.jobs, "next": self.last if self.full else cursor}


async def from_history(
    history: History,
    page: Page,
    state: JobState | None,
    capability: str | None,
    after: int,
    limit: int,
    quarantine: Callable[[Poisoned], None],
) -> str | None:
    """Fill `page` with up to `limit` finished jobs after history sequence `after`; the cursor past them
    (None when history has no more)."""
    wanted = subjects.history_filter(None, state.value if state is not None else None, capability)
    seq = after
    for _ in range(limit):
        found = await history.next(seq + 1, wanted)
        if found is None:
            return None
        subject, data, seq = found
        job_id = subject.split(".")[_ID_TOKEN]
        try:
            record = decoded(JobRecord, data, subjects.HISTORY_STREAM, job_id, seq)
        except Poisoned as exc:
            quarantine(exc)
            continue
        if not page.add(record, history_cursor(seq)):
            break
    return history_cursor(seq)
