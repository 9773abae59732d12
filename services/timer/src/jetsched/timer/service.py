"""The timer service: every `scheduled` record is armed on the wheel; when due, CAS it to `ready`.

It fires cron and interval schedules (`schedules.py`), whose next fire times share the wheel.

It also owns start deadlines: a `ready` job with `expires_at_ms` whose first attempt has not started is
armed for just past that instant and, if still queued then, dies as expired.

The wheel is a view: it is rebuilt from the record feed on start (last value of every key), so a timer
restarted or killed loses nothing, and entries already due fire at once. Replicas all arm every timer and
race for the CAS; the loser's stale view costs one failed write. (Sharding by lease: issue 3.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind

from jetsched.bus import tracing
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.feed import KeyFeed, RecordFeed
from jetsched.bus.leases import DEFAULT_TTL_MS, ShardLeaser
from jetsched.bus.records import Records, Store, transition
from jetsched.bus.service import Service
from jetsched.core import states, subjects
from jetsched.core.models import JobRecord, JobState

from .driver import WheelDriver
from .ownership import OwnedTimers
from .schedules import PREFIX as SCHEDULE_PREFIX
from .schedules import ScheduleFirer

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext

    from jetsched.bus.actors import Actor
    from jetsched.bus.config import BusConfig
    from jetsched.bus.direct import Connection
    from jetsched.core.changes import Change

log = logging.getLogger(__name__)

#: Timer shards: replicas split them by lease; more shards than replicas keeps the split even.
DEFAULT_SHARDS = 16


class TimerService(Service):
    name = "timer"

    def __init__(
        self, bus: BusConfig, shards: int = DEFAULT_SHARDS, lease_ttl_ms: int = DEFAULT_TTL_MS
    ) -> None:
        super().__init__(bus)
        self.shards = shards
        self.lease_ttl_ms = lease_ttl_ms
        self.pending: dict[str, tuple[JobRecord, int]] = {}
        self.driver: WheelDriver[str] = WheelDriver(self.clock, self._on_due)
        self.timers = OwnedTimers(self.driver, shards)
        self.records: Records | None = None
        self.firer: ScheduleFirer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, change: Change) -> None:
        if change.state is JobState.SCHEDULED:
            record = change.record()
            self.pending[change.id] = (record, change.revision)
            self.timers.want(change.id, change.id, record.run_at_ms)
        elif change.state is JobState.READY and change.expires_at_ms is not None:
            # A queued job with a start deadline: expired means strictly past it.
            self.pending[change.id] = (change.record(), change.revision)
            self.timers.want(change.id, change.id, change.expires_at_ms + 1)
        elif self.pending.pop(change.id, None) is not None:
            self.timers.drop(change.id)

    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        self.records = Records(Store(nc, js, subjects.JOBS_BUCKET), self.bus.retention_s)
        self.firer = ScheduleFirer(
            nc, self.records, Store(nc, js, subjects.SCHEDULES_BUCKET), self.timers, self.clock
        )
        await RecordFeed(nc, js, self.observe).start()
        await KeyFeed(nc, js, subjects.SCHEDULES_BUCKET, self.firer.observe).start()
        leases = ShardLeaser(
            nc, js, self.name, self.instance, self.shards, self.clock, self.timers.own, self.lease_ttl_ms
        )
        return [self.driver, leases]

    def _on_due(self, fired: list[tuple[str, int]]) -> None:
        for job_id, _ in fired:
            if job_id.startswith(SCHEDULE_PREFIX):
                assert self.firer is not None
                self.firer.due(job_id[len(SCHEDULE_PREFIX) :])
                continue
            entry = self.pending.get(job_id)
            if entry is not None:
                task = asyncio.create_task(self._fire(*entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _verb(self, record: JobRecord) -> Callable[[JobRecord], JobRecord]:
        """What a timer means: a scheduled job is due; a ready one has passed its start deadline."""
        if record.state is JobState.SCHEDULED:
            return lambda r: states.due(r, self.clock.now_ms())
        return lambda r: states.expire(r, self.clock.now_ms())

    async def _fire(self, record: JobRecord, revision: int) -> None:
        assert self.records is not None
        attributes = {"jetsched.job_id": record.id, "jetsched.capability": record.capability}
        with tracing.span("jetsched due", record.trace, SpanKind.INTERNAL, attributes):
            try:
                crashpoint("timer.due.before_cas")
                done = await transition(self.records, record, revision, self._verb(record))
                crashpoint("timer.due.after_cas")
            except Exception:
                log.exception("could not make a due job ready; re-arming", extra={"job": record.id})
                self.timers.want(record.id, record.id, self.clock.now_ms() + 1000)
                return
            if done is None:
                log.debug("due job had moved on", extra={"job": record.id})
