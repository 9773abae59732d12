"""Retires finished records (succeeded, cancelled) from the `jobs` bucket to history as the feed shows them.

The reaper does it because it follows the record feed already and sees every ending, whichever service
wrote it. Replicas split the work by job id shard (`owns`, leased like the timer's shards): each keeps
every finished record it sees until the feed shows it gone, and retires those of its own shards — so a
dead replica's are retired by whoever takes its shards, a lease TTL later. Two replicas that briefly
both own a shard race harmlessly: the history write is deduplicated and the purge is a CAS, so the
record is stored once and removed once (the loser's CAS fails, and it drops the job). A restarted
reaper's feed replays the finished records a crash left behind, and retires them.
What the move guarantees, step by step, is in `bus/history.py`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from jetsched.bus.records import EXPIRING, StoreError
from jetsched.core.errors import Conflict, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.bus.quarantine import Quarantine
    from jetsched.bus.records import Records
    from jetsched.core.changes import Change

log = logging.getLogger(__name__)

#: Records retired at once (each is two round trips, pipelined).
BATCH = 64
#: How long to wait before trying again when a whole batch stayed pending (a replica's write of the same
#: record in flight, a spurious CAS failure, storage passing through a failover).
AGAIN_S = 0.5


def _owner(change: Change) -> str:
    """Whose shard a finished job's retirement is: its workflow's for a step (whose replica took the
    ending in), its own otherwise."""
    return change.workflow or change.id


class Retirer:
    """An actor: finished records as the feed delivered them, moved a batch at a time."""

    name = "retirer"

    def __init__(
        self,
        records: Records,
        quarantine: Quarantine,
        fence_s: int,
        owns: Callable[[str], bool] = lambda _: True,
        follows: Callable[[str], bool] = lambda _: True,
    ) -> None:
        """`owns(id)`: whether this replica retires the jobs of that id's shard (a job's, or for a
        workflow's step, the workflow's). `follows(id)`: whether this replica's feed shows that shard's
        records (where it does not, nothing would ever show a record kept here gone)."""
        self.records = records
        self.quarantine = quarantine
        self.fence_s = fence_s
        self.owns = owns
        self.follows = follows
        #: Finished records still in the bucket, by id: kept across a restart of the actor.
        self.pending: dict[str, Change] = {}
        self._wake = asyncio.Event()

    def observe(self, change: Change) -> None:
        if change.state in EXPIRING and self.follows(_owner(change)):
            self.pending[change.id] = change
            self._wake.set()
        else:
            self.pending.pop(change.id, None)  # gone (retired by a replica), or not finished (yet)

    def forget(self, shards_of: Callable[[str], bool]) -> None:
        """Drop the finished records of the ids `shards_of` names (their shards went to another replica)."""
        for job_id in [k for k, change in self.pending.items() if shards_of(_owner(change))]:
            del self.pending[job_id]

    def wake(self) -> None:
        """Look again (shards were taken here: their finished records are now this replica's)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # One look over what is pending per round, not per batch: a big map leaves thousands at once.
            while owned := [c for c in self.pending.values() if self.owns(_owner(c))]:
                moved = False
                for start in range(0, len(owned), BATCH):
                    done = await asyncio.gather(*(self._retire(c) for c in owned[start : start + BATCH]))
                    moved = moved or any(done)
                if not moved:
                    await asyncio.sleep(AGAIN_S)  # nothing moved: no hot loop over the same records

    async def _retire(self, change: Change) -> bool:
        """Retire one record; False if it stays pending, to be tried again."""
        try:
            record = change.record()
        except ValueError as exc:
            self.quarantine.report(
                self.records.store_of(change.id).bucket, change.id, change.revision, f"cannot retire: {exc}"
            )
        else:
            try:
                await self.records.retire(record, change.revision, self.fence_s)
            except Conflict:
                if await self._unchanged(change):
                    return False  # a spurious CAS failure (nats-server #7281): it stays pending
            except StoreError as exc:
                # E.g. "duplicate message id is in process": another replica's write of it is in flight.
                log.debug("record not retired yet", extra={"job": change.id, "error": repr(exc)})
                return False
        if self.pending.get(change.id) is change:
            del self.pending[change.id]
        return True

    async def _unchanged(self, change: Change) -> bool:
        """Whether the bucket still holds the record at the revision the feed showed (else another
        replica retired it, and the feed brings its purge)."""
        try:
            _, revision = await self.records.store_of(change.id).get(change.id)
        except NotFound:
            return False
        return revision == change.revision
