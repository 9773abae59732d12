"""The history store: finished jobs' records, out of the `jobs` bucket so that no view holds them.

Why: every service follows the `jobs` bucket's change feed and replays its latest value per key on start,
and nats-server keeps per-key state for it. With a week of succeeded jobs kept there, every service's
memory and restart time grew with history (~320 B of intake per job, +0.5 s restart per 100,000). Now a
record that ends `succeeded` or `cancelled` is *retired*: the reaper moves it to the `JOB_HISTORY` stream,
which nobody follows, and the bucket keeps only live work and dead letters (few, and an operator acts on
them with CAS writes; they stay until purged or retried). The stream keeps each record for the retention
by age (and optionally size), one message per job: `jetsched.history.<id>.<state>.<capability>`, limited
to one message per subject, read back by id (`last_by_subj` with a wildcard on the tail) and listed in
stream order with a subject filter, without any in-memory index.

The move (`Records.retire`), and what a crash anywhere in it leaves:

1. Write the record to history, `Nats-Msg-Id: <id>:<revision>`. Die here and the record is in both
   places; the feed replays it on restart (or another replica sees it) and writes it again — deduplicated
   within the stream's window, and after that replacing itself (one message per subject), so history
   never holds a job twice.
2. Purge the key by CAS on the finished revision, leaving a marker that expires after `fence_s`. The
   CAS removes only the revision that was stored first; it loses only to another replica's purge (or
   spuriously, nats-server #7281: then the reaper tries again).

A reader looks in the bucket first, then in history (`Records.get`). Because the history write comes
before the purge, at every moment the record is in one place or the other — looked at in that order it
is always found. (The other order has a window: history not yet written, bucket already purged.) History
is read from the stream's leader, not by direct get, for the same reason: a replica behind the write
could miss it in that window.

Ids that are derived rather than random (cron fires, workflow steps) could be created again once a
finished record has left the bucket and its marker expired; `Records.create` looks them up here first.
The marker covers the moment between that look-up and the create.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import orjson

from jetsched.core import subjects
from jetsched.core.errors import NotFound

from .records import StoreError

if TYPE_CHECKING:
    from .direct import Connection

_GET = f"$JS.API.STREAM.MSG.GET.{subjects.HISTORY_STREAM}"
_INFO = f"$JS.API.STREAM.INFO.{subjects.HISTORY_STREAM}"
_NOT_FOUND = 404


class History:
    """Raw reads and writes of the history stream (bytes in, bytes out; `Records` decodes)."""

    def __init__(self, nc: Connection, timeout: float = 5.0) -> None:
        self._nc = nc
        self.timeout = timeout

    async def put(self, subject: str, data: bytes, msg_id: str) -> None:
        reply, _ = await self._nc.request_raw(subject, data, self.timeout, {"Nats-Msg-Id": msg_id})
        error = orjson.loads(reply).get("error")
        if error is not None:
            raise StoreError(f"{subjects.HISTORY_STREAM} {subject}: {error.get('description')}")

    async def get(self, job_id: str) -> tuple[bytes, int]:
        """The job's stored record and its stream sequence; `NotFound` if history has none."""
        found = await self._get({"last_by_subj": subjects.history_filter(job_id)})
        if found is None:
            raise NotFound(f"{subjects.HISTORY_STREAM}/{job_id}")
        return found[1], found[2]

    async def contains(self, job_id: str) -> bool:
        return await self._get({"last_by_subj": subjects.history_filter(job_id)}) is not None

    async def next(self, seq: int, subject_filter: str) -> tuple[str, bytes, int] | None:
        """The first record at or after stream sequence `seq` on a subject matching the filter:
        (its subject, the record, its sequence), or None when there is none."""
        return await self._get({"seq": max(seq, 1), "next_by_subj": subject_filter})

    async def count(self) -> int:
        """How many records history holds."""
        reply, _ = await self._nc.request_raw(_INFO, b"", self.timeout)
        info = orjson.loads(reply)
        if "error" in info:
            raise StoreError(f"{subjects.HISTORY_STREAM}: {info['error'].get('description')}")
        return int(info["state"]["messages"])

    async def _get(self, request: dict[str, object]) -> tuple[str, bytes, int] | None:
        reply, _ = await self._nc.request_raw(_GET, orjson.dumps(request), self.timeout)
        answer = orjson.loads(reply)
        error = answer.get("error")
        if error is not None:
            if error.get("code") == _NOT_FOUND:
                return None
            raise StoreError(f"{subjects.HISTORY_STREAM}: {error.get('description')}")
        msg = answer["message"]
        return msg["subject"], base64.b64decode(msg.get("data", "")), int(msg["seq"])
