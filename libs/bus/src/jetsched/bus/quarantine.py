"""Poison quarantine: stored data a service cannot decode or act on is set aside, never a crash loop.

A record, setting, schedule, timer entry or outcome report that fails to decode (written by an older
version, by hand, or by someone who should not have been able to) would otherwise crash its reader on
every restart or stop a whole list page. Instead the reader calls `report()`: the item is logged once per
process, counted (the `jetsched.quarantined` metric), skipped, and written to the `quarantine` bucket
(`<bucket>.<key>` → what, where, why), where `jetsched doctor` and the `doctor.*` API show it and can
purge it. The write is best effort: the item stays skipped whether or not it lands.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson
from opentelemetry import metrics

from jetsched.core import bounds, subjects

from .records import Store

if TYPE_CHECKING:
    from jetsched.core.clock import Clock

    from .direct import Connection

log = logging.getLogger(__name__)

_counter = metrics.get_meter("jetsched").create_counter(
    "jetsched.quarantined", description="stored items set aside because they cannot be read or acted on"
)
#: Items already reported by this process (bounded: a flood of poison must not grow memory forever).
_MAX_REMEMBERED = 10_000


class Quarantine:
    def __init__(self, nc: Connection, service: str, clock: Clock) -> None:
        self.store = Store(nc, subjects.QUARANTINE_BUCKET)
        self.service = service
        self.clock = clock
        self.count = 0
        self._seen: dict[tuple[str, str, int], None] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def report(self, bucket: str, key: str, revision: int, reason: str) -> None:
        """Set an item aside: logged and stored once per (bucket, key, revision) in this process."""
        item = (bucket, key, revision)
        if item in self._seen:
            return
        self._seen[item] = None
        if len(self._seen) > _MAX_REMEMBERED:
            del self._seen[next(iter(self._seen))]
        self.count += 1
        _counter.add(1, {"bucket": bucket, "service": self.service})
        reason = bounds.clip(reason, 1024)
        log.warning(
            "quarantined", extra={"bucket": bucket, "key": key, "revision": revision, "reason": reason}
        )
        entry = {
            "bucket": bucket,
            "key": key,
            "revision": revision,
            "reason": reason,
            "service": self.service,
            "at_ms": self.clock.now_ms(),
        }
        task = asyncio.get_running_loop().create_task(self._write(f"{bucket}.{key}", orjson.dumps(entry)))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, entry: bytes) -> None:
        try:
            await self.store.put(key, entry)
        except Exception as exc:
            log.warning("quarantine entry not stored", extra={"key": key, "error": repr(exc)})
