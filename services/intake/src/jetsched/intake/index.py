"""An in-memory index of every job's state and capability, fed by the record feed; serves `jobs.list`.

Pure: `observe()` takes what the feed saw, `page()` answers a list query with ids in id (= submission)
order after a cursor. The records themselves are read from the bucket for the page only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jetsched.core.models import JobState

if TYPE_CHECKING:
    from jetsched.core.changes import Change


@dataclass(slots=True)
class Entry:
    state: JobState
    capability: str
    revision: int
    #: When this index saw the job enter its state (this process's clock; restart time after a replay).
    since_ms: int = 0


class JobIndex:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.by_state: dict[JobState, set[str]] = {state: set() for state in JobState}
        self.counts: Counter[tuple[str, JobState]] = Counter()

    def observe(self, change: Change, now_ms: int = 0) -> None:
        job_id = change.id
        old = self.entries.get(job_id)
        if old is not None:
            if change.revision <= old.revision:
                return
            self.by_state[old.state].discard(job_id)
            self.counts[old.capability, old.state] -= 1
        if change.state is None:
            self.entries.pop(job_id, None)
            return
        self.entries[job_id] = Entry(change.state, change.capability, change.revision, now_ms)
        self.by_state[change.state].add(job_id)
        self.counts[change.capability, change.state] += 1

    def oldest_ready_ms(self) -> dict[str, int]:
        """Per capability, since when its oldest ready job has been waiting (the index's own clock)."""
        oldest: dict[str, int] = {}
        for job_id in self.by_state[JobState.READY]:
            entry = self.entries[job_id]
            if entry.since_ms < oldest.get(entry.capability, entry.since_ms + 1):
                oldest[entry.capability] = entry.since_ms
        return oldest

    def stats(self) -> dict[str, dict[str, int]]:
        """Job counts per capability and state (states with no jobs left out)."""
        result: dict[str, dict[str, int]] = {}
        for (capability, state), n in self.counts.items():
            if n:
                result.setdefault(capability, {})[state.value] = n
        return result

    def page(
        self, state: JobState | None, capability: str | None, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        """Up to `limit` ids matching the filters, after `after`; and the cursor for the next page."""
        pool = self.by_state[state] if state is not None else self.entries.keys()
        ids = sorted(pool)
        start = bisect_right(ids, after) if after else 0
        found: list[str] = []
        for job_id in ids[start:]:
            if capability is None or self.entries[job_id].capability == capability:
                found.append(job_id)
                if len(found) == limit:
                    return found, job_id
        return found, None
