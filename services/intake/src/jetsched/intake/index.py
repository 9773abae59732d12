"""An in-memory index of every job's state and capability, fed by the record feed; serves `jobs.list`.

Pure: `observe()` takes what the feed saw, `page()` answers a list query with ids in id (= submission)
order after a cursor. The records themselves are read from the bucket for the page only.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from jetsched.core.models import JobRecord, JobState


@dataclass(slots=True)
class Entry:
    state: JobState
    capability: str
    revision: int


class JobIndex:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.by_state: dict[JobState, set[str]] = {state: set() for state in JobState}

    def observe(self, job_id: str, revision: int, record: JobRecord | None) -> None:
        old = self.entries.get(job_id)
        if old is not None:
            if revision <= old.revision:
                return
            self.by_state[old.state].discard(job_id)
        if record is None:
            self.entries.pop(job_id, None)
            return
        self.entries[job_id] = Entry(record.state, record.capability, revision)
        self.by_state[record.state].add(job_id)

    def count(self, state: JobState) -> int:
        return len(self.by_state[state])

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
