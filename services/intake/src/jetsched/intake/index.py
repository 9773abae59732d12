"""An in-memory index of every job in the `jobs` bucket, fed by the record feed; serves `jobs.list`.

The bucket holds live jobs and dead letters: finished ones leave it for history (`bus/history.py`), so
the index's memory follows live work, not the retention. Their counts stay: a succeeded or cancelled job
is still counted once it has left, so `stats` shows how many ended since this replica started.

Pure: `observe()` takes what the feed saw, `page()` answers a list query with ids in id (= submission)
order after a cursor. The records themselves are read from the bucket for the page only.

The oldest ready job per capability (a scaling signal, read by every `stats` call) comes from a heap per
capability with lazy deletion: entries that stopped being ready are dropped when they reach the top, and
the heap is rebuilt when stale entries outnumber live ones — so a stats call does not scan a backlog.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jetsched.bus.records import EXPIRING
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
        #: Per capability: (since_ms, job id, revision) for each time a job was seen ready; some stale.
        self._ready: defaultdict[str, list[tuple[int, str, int]]] = defaultdict(list)

    def observe(self, change: Change, now_ms: int = 0) -> None:
        job_id = change.id
        old = self.entries.get(job_id)
        if old is not None:
            if change.revision <= old.revision:
                return
            self.by_state[old.state].discard(job_id)
            if change.state is not None or old.state not in EXPIRING:
                self.counts[old.capability, old.state] -= 1
        if change.state is None:
            self.entries.pop(job_id, None)
            return
        self.entries[job_id] = Entry(change.state, change.capability, change.revision, now_ms)
        self.by_state[change.state].add(job_id)
        self.counts[change.capability, change.state] += 1
        if change.state is JobState.READY:
            heap = self._ready[change.capability]
            heapq.heappush(heap, (now_ms, job_id, change.revision))
            if len(heap) > 2 * self.counts[change.capability, JobState.READY] + 64:
                heap[:] = [item for item in heap if self._still_ready(item)]
                heapq.heapify(heap)

    def _still_ready(self, item: tuple[int, str, int]) -> bool:
        entry = self.entries.get(item[1])
        return entry is not None and entry.state is JobState.READY and entry.revision == item[2]

    def oldest_ready_ms(self) -> dict[str, int]:
        """Per capability, since when its oldest ready job has been waiting (the index's own clock)."""
        oldest: dict[str, int] = {}
        for capability, heap in self._ready.items():
            while heap and not self._still_ready(heap[0]):
                heapq.heappop(heap)
            if heap:
                oldest[capability] = heap[0][0]
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
        matching = (
            job_id
            for job_id in pool
            if (after is None or job_id > after)
            and (capability is None or self.entries[job_id].capability == capability)
        )
        # One pass keeping the smallest limit + 1, not a sort of everything per page.
        found = heapq.nsmallest(limit + 1, matching)
        if len(found) > limit:
            return found[:limit], found[limit - 1]
        return found, None
