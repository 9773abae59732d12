"""An in-memory index of every job in the `jobs` bucket, fed by the record feed; serves `jobs.list`.

The bucket holds live jobs and dead letters: finished ones leave it for history (`bus/history.py`), so
the index's memory follows live work, not the retention. Their counts stay: a succeeded or cancelled job
is still counted once it has left, so `stats` shows how many ended since this replica started.

Pure: `observe()` takes what the feed saw, `page()` answers a list query with ids in id (= submission)
order after a cursor. The records themselves are read from the bucket for the page only.

Compact, because live work can be millions of delayed jobs waiting for hours (docs/scaling.md, "Pending
jobs"): one dict per state, job id → one int (the revision seen, and the capability as a number in a table
of the capabilities seen) — about 150 B per job with its id, where a record object per job took ~350 B.
Finding a job's previous state is a look-up in each state's dict (seven, each O(1)).

The oldest ready job per capability (a scaling signal, read by every `stats` call) comes from a heap per
capability with lazy deletion: entries that stopped being ready are dropped when they reach the top, and
the heap is rebuilt when stale entries outnumber live ones — so a stats call does not scan a backlog.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from itertools import chain
from typing import TYPE_CHECKING

from jetsched.bus.records import EXPIRING
from jetsched.core.models import JobState

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jetsched.core.changes import Change

#: Low bits of a job's int: the capability's number; above them, the revision.
CAPABILITY_BITS = 32
_CAPABILITY_MASK = (1 << CAPABILITY_BITS) - 1


class JobIndex:
    def __init__(self) -> None:
        #: state → job id → revision << CAPABILITY_BITS | capability number
        self.by_state: dict[JobState, dict[str, int]] = {state: {} for state in JobState}
        self.capabilities: list[str] = []
        self._numbers: dict[str, int] = {}
        self.counts: Counter[tuple[str, JobState]] = Counter()
        #: Per capability: (since_ms, job id, revision) for each time a job was seen ready; some stale.
        self._ready: defaultdict[str, list[tuple[int, str, int]]] = defaultdict(list)

    def __len__(self) -> int:
        return sum(map(len, self.by_state.values()))

    def find(self, job_id: str) -> tuple[JobState, str, int] | None:
        """(state, capability, revision) of a job in the index, or None."""
        for state, jobs in self.by_state.items():
            value = jobs.get(job_id)
            if value is not None:
                return state, self.capabilities[value & _CAPABILITY_MASK], value >> CAPABILITY_BITS
        return None

    def observe(self, change: Change, now_ms: int = 0) -> None:
        job_id = change.id
        old = self.find(job_id)
        if old is not None:
            old_state, old_capability, old_revision = old
            if change.revision <= old_revision:
                return
            del self.by_state[old_state][job_id]
            if change.state is not None or old_state not in EXPIRING:
                self.counts[old_capability, old_state] -= 1
        if change.state is None:
            return
        self.by_state[change.state][job_id] = change.revision << CAPABILITY_BITS | self._number(
            change.capability
        )
        self.counts[change.capability, change.state] += 1
        if change.state is JobState.READY:
            heap = self._ready[change.capability]
            heapq.heappush(heap, (now_ms, job_id, change.revision))
            if len(heap) > 2 * self.counts[change.capability, JobState.READY] + 64:
                heap[:] = [item for item in heap if self._still_ready(item)]
                heapq.heapify(heap)

    def _number(self, capability: str) -> int:
        number = self._numbers.get(capability)
        if number is None:
            number = self._numbers[capability] = len(self.capabilities)
            assert number <= _CAPABILITY_MASK
            self.capabilities.append(capability)
        return number

    def _still_ready(self, item: tuple[int, str, int]) -> bool:
        value = self.by_state[JobState.READY].get(item[1])
        return value is not None and value >> CAPABILITY_BITS == item[2]

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
        pools: Iterable[dict[str, int]] = (
            [self.by_state[state]] if state is not None else self.by_state.values()
        )
        if capability is None:
            matching = (job_id for job_id in chain.from_iterable(pools) if after is None or job_id > after)
        else:
            number = self._numbers.get(capability)
            matching = (
                job_id
                for pool in pools
                for job_id, value in pool.items()
                if value & _CAPABILITY_MASK == number and (after is None or job_id > after)
            )
        # One pass keeping the smallest limit + 1, not a sort of everything per page.
        found = heapq.nsmallest(limit + 1, matching)
        if len(found) > limit:
            return found[:limit], found[limit - 1]
        return found, None
