"""Progress reports (`jetsched.progress.<job id>`): fenced by the attempt's lease, kept in the `progress`
bucket beside the record, and shown by `jobs.get`. The decision is `core/progress.py`'s.

Best-effort end to end: a report that cannot be read, is fenced out, loses a race or meets a storage
error is dropped (the next one carries the newer value anyway). Each job may report `BURST` times at
once and then once per `INTERVAL_MS` (a token bucket; the SDK sends at most one per 250 ms plus its
final one); beyond that reports are dropped before any storage is touched, so a worker that floods
costs a dictionary lookup, not a KV round trip. A report sent as a request (the SDK's final one, which
must be stored before the attempt's outcome clears its lease) is answered `{}` once dealt with.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from jetsched.bus.records import StoreError, decoded
from jetsched.core import bounds, progress, subjects
from jetsched.core.errors import Conflict, NotFound, Poisoned
from jetsched.core.models import JobRecord, Progress, ProgressReport

if TYPE_CHECKING:
    from jetsched.bus.records import Records, Store
    from jetsched.bus.subscriber import Request
    from jetsched.core.clock import Clock

log = logging.getLogger(__name__)

#: A job's allowance of reports: `BURST` at once, refilled by one every `INTERVAL_MS`.
BURST = 4
INTERVAL_MS = 100
#: Jobs whose allowance is remembered; past it, the memory starts over (a flood of fresh ids).
MAX_TRACKED = 10_000
#: How long an entry outlives its last report when the records never expire (retention 0).
DEFAULT_TTL_S = 7 * 86_400
_PREFIX = len(subjects.progress(""))


class ProgressBook:
    """Takes progress reports in, and tells `jobs.get` the current attempt's progress."""

    def __init__(self, records: Records, store: Store, clock: Clock, retention_s: int) -> None:
        self.records = records
        self.store = store
        self.clock = clock
        # An entry lives as long as a finished record does, so `jobs.get` can show a job's last progress.
        self._ttl = {"Nats-TTL": str(retention_s or DEFAULT_TTL_S)}
        self._allowance: dict[str, tuple[float, int]] = {}

    async def on_report(self, msg: Request) -> None:
        try:
            await self._record(msg)
        finally:
            await msg.respond(b"{}")

    def _allowed(self, job_id: str, now_ms: int) -> bool:
        tokens, at_ms = self._allowance.get(job_id, (BURST, now_ms))
        tokens = min(BURST, tokens + (now_ms - at_ms) / INTERVAL_MS)
        if tokens < 1:
            return False
        if len(self._allowance) >= MAX_TRACKED:
            self._allowance.clear()
        self._allowance[job_id] = (tokens - 1, now_ms)
        return True

    async def _record(self, msg: Request) -> None:
        job_id = msg.subject[_PREFIX:]
        now = self.clock.now_ms()
        if len(msg.data) > bounds.MAX_PROGRESS_BYTES or not self._allowed(job_id, now):
            return
        try:
            report = ProgressReport.model_validate_json(msg.data)
            if report.id != job_id:
                return
            record, _ = await self.records.get(job_id)
            stored, revision = await self._stored(job_id)
            entry = progress.accept(record, stored, report, now)
            if entry is not None:
                await self.store.put_if(job_id, entry.model_dump_json().encode(), revision, self._ttl)
        except (ValidationError, NotFound, Poisoned, Conflict, StoreError, TimeoutError) as exc:
            log.debug("progress report dropped", extra={"job": job_id[:64], "why": type(exc).__name__})

    async def current(self, record: JobRecord) -> Progress | None:
        """The progress of the record's latest attempt, if it reported any (None on a storage error)."""
        if record.attempt == 0:
            return None
        try:
            stored, _ = await self._stored(record.id)
        except (Poisoned, StoreError, TimeoutError):
            return None
        return progress.current(record, stored)

    async def _stored(self, job_id: str) -> tuple[Progress | None, int]:
        try:
            data, revision = await self.store.get(job_id)
        except NotFound:
            return None, 0
        return decoded(Progress, data, self.store.bucket, job_id, revision), revision
