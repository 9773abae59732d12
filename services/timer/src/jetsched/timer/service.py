"""The timer service: when a record's time comes, CAS it on — `scheduled` to `ready`, or a `ready` job
past its start deadline (first attempt not started) to `dead` as expired.

It does not watch every record change. Whoever writes a record that waits for a time writes its timer
entry first (`timers` bucket, job id → due ms and the record revision being replaced; see `Records`);
the timer keeps those entries on its wheel. When one comes due it reads the record and acts only on what
the record says. An entry whose job has moved on (claimed, cancelled, rescheduled) is dropped; one whose
record is still at the revision it names waits for the write it announced, which may land late. Entries
are removed by a CAS on the entry's revision, so a newer entry written meanwhile stays.

It fires cron and interval schedules too (`schedules.py`), whose next fire times share the wheel.

The wheel is a view: rebuilt from the `timers` bucket on start (last value of every key), so a timer
restarted or killed loses nothing, and entries already due fire at once. Replicas split the shards by
lease; each fires only its shards' entries.

A pending entry is one key and one int on the wheel, nothing else: the entry's facts (`entries.pack`),
whether its record is still to be read ahead (`READ`) and its shard are packed beside its due time, so
a million delayed jobs cost the timer ~190 MB, not ~750 (docs/scaling.md, "Pending jobs"). A fire in
flight is remembered (`firing`) only until it re-arms or drops its entry; a newer entry written meanwhile
supersedes it, so a late re-arm never overwrites a newer entry's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind

from jetsched.bus import instruments, tracing
from jetsched.bus.actors import log_failure
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.feed import KeyFeed
from jetsched.bus.leases import DEFAULT_TTL_MS, ShardLeaser
from jetsched.bus.records import Records, Store, Unstorable, transition
from jetsched.bus.service import Service
from jetsched.core import subjects
from jetsched.core.errors import Conflict, NotFound, Poisoned
from jetsched.core.models import JobRecord, JobState

from .driver import WheelDriver
from .entries import RETRY_MS, Arm, Entry, Fire, Forget, after_fire, decide, fire, pack, unpack
from .ownership import OwnedTimers
from .schedules import PREFIX as SCHEDULE_PREFIX
from .schedules import ScheduleFirer

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from nats.js import JetStreamContext

    from jetsched.bus.actors import Actor
    from jetsched.bus.config import BusConfig
    from jetsched.bus.direct import Connection

log = logging.getLogger(__name__)

#: A timer entry's record is read this long before it comes due.
PREFETCH_MS = 100
#: The low bit of an entry's data on the wheel: armed to read its record ahead, not yet to fire.
READ = 1
#: A removed timer entry's marker is kept this long (long enough for every replica's view to see it).
ENTRY_MARKER_TTL_S = 3600
#: Timer shards: replicas split them by lease; more shards than replicas keeps the split even.
DEFAULT_SHARDS = 16


class TimerService(Service):
    name = "timer"
    driver: WheelDriver[str]
    timers: OwnedTimers

    def __init__(
        self, bus: BusConfig, shards: int = DEFAULT_SHARDS, lease_ttl_ms: int = DEFAULT_TTL_MS
    ) -> None:
        super().__init__(bus)
        self.shards = shards
        self.lease_ttl_ms = lease_ttl_ms
        #: job id → number of the fire in flight for it (until it re-arms or drops its entry)
        self.firing: dict[str, int] = {}
        self._fires = 0
        #: job id → (record, revision) read just before its entry comes due
        self.prefetched: dict[str, tuple[JobRecord, int]] = {}
        self.records: Records | None = None
        self.firer: ScheduleFirer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        """A timer entry written (or removed)."""
        self.firing.pop(key, None)  # a fire in flight for an older entry re-arms nothing now
        if data is None:
            self.prefetched.pop(key, None)
            self.timers.drop(key)
            return
        due, base = map(int, data.split())  # malformed: the feed quarantines it
        entry = pack(Entry(revision, self.clock.now_ms(), base)) << 1
        if due - self.clock.now_ms() > PREFETCH_MS:
            self.timers.want(key, key, due - PREFETCH_MS, entry | READ)
        else:
            self.timers.want(key, key, due, entry)

    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        # The wheel starts at the servers' time, known only now: started earlier at a host clock that
        # runs ahead, it would take due times between the two as already past and fire them early.
        self.driver = WheelDriver(self.clock, lambda fired: self.timers.fired(fired))
        self.timers = OwnedTimers(self.driver, self.shards, self._on_due)
        self.records = Records.open(nc, self.bus.retention_s, self.bus.record_partitions)
        self.firer = ScheduleFirer(
            nc, self.records, Store(nc, subjects.SCHEDULES_BUCKET), self.timers, self.clock
        )
        quarantine = self.quarantined
        await KeyFeed(nc, js, subjects.TIMERS_BUCKET, self.observe, quarantine=quarantine).start()
        await KeyFeed(nc, js, subjects.SCHEDULES_BUCKET, self.firer.observe, quarantine=quarantine).start()
        leases = ShardLeaser(
            nc, js, self.name, self.instance, self.shards, self.local, self.timers.own, self.lease_ttl_ms
        )
        return [self.driver, leases]

    def _on_due(self, fired: list[tuple[str, int, int]]) -> None:
        for job_id, due_ms, data in fired:
            if job_id.startswith(SCHEDULE_PREFIX):
                assert self.firer is not None
                self.firer.due(job_id[len(SCHEDULE_PREFIX) :])
            elif data & READ:
                self._spawn(self._prefetch(job_id))
                self.timers.want(job_id, job_id, due_ms + PREFETCH_MS, data & ~READ)
            else:
                self._fires += 1
                self.firing[job_id] = self._fires
                self._spawn(self._fire(job_id, unpack(data >> 1), self._fires))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prefetch(self, job_id: str) -> None:
        """Read the record a moment before its time, so the due CAS goes out on time (a stale read only
        costs a failed CAS and a re-read)."""
        assert self.records is not None
        with contextlib.suppress(Exception):
            self.prefetched[job_id] = await self.records.get(job_id)

    def _rearm(self, job_id: str, entry: Entry, number: int, at_ms: int) -> None:
        """Arm the entry of fire `number` again, unless a newer entry (or its removal) came meanwhile."""
        if self.firing.get(job_id) == number:
            del self.firing[job_id]
            self.timers.want(job_id, job_id, at_ms, pack(entry) << 1)

    async def _fire(self, job_id: str, entry: Entry, number: int) -> None:
        try:
            await self._fire_entry(job_id, entry, number)
        finally:
            if self.firing.get(job_id) == number:
                del self.firing[job_id]

    async def _fire_entry(self, job_id: str, entry: Entry, number: int) -> None:
        """A timer entry came due: act on what the record says now (`entries.decide`)."""
        assert self.records is not None
        try:
            cached = self.prefetched.pop(job_id, None)
            record: JobRecord | None
            record, revision = cached if cached is not None else await self.records.get(job_id)
        except NotFound:
            record, revision = None, 0
        except Poisoned as exc:
            self.quarantined.report(exc.bucket, exc.key, exc.revision, exc.reason)
            return  # nothing to act on until the record is rewritten (its new entry arms it again)
        except Exception:
            log_failure(log, "could not read a due job; re-arming", {"job": job_id})
            self._rearm(job_id, entry, number, self.clock.now_ms() + RETRY_MS)
            return
        decision = decide(record, revision, entry, self.clock.now_ms())
        if not isinstance(decision, Fire):
            await self._carry_out(job_id, entry, number, decision)
            return
        assert record is not None
        attributes = {"jetsched.job_id": record.id, "jetsched.capability": record.capability}
        with tracing.span("jetsched due", record.trace, SpanKind.INTERNAL, attributes):
            try:
                crashpoint("timer.due.before_cas")
                done = await transition(
                    self.records, record, revision, lambda r: fire(r, decision.verb, self.clock.now_ms())
                )
                crashpoint("timer.due.after_cas")
            except Unstorable as exc:  # refused for good (a record stored past today's bounds)
                self.quarantined.report(
                    self.records.store_of(record.id).bucket, record.id, revision, str(exc)
                )
                return
            except Exception:
                log_failure(log, "could not make a due job ready; re-arming", {"job": record.id})
                self._rearm(job_id, entry, number, self.clock.now_ms() + RETRY_MS)
                return
        if done is not None and done[1].state is JobState.READY and record.state is JobState.SCHEDULED:
            late = max(0, done[1].updated_at_ms - decision.due_ms) / 1000
            instruments.timer_lateness.record(late, {"capability": record.capability})
        await self._carry_out(
            job_id, entry, number, after_fire(None if done is None else done[1], self.clock.now_ms())
        )

    async def _carry_out(self, job_id: str, entry: Entry, number: int, decision: Forget | Arm | None) -> None:
        if isinstance(decision, Forget):
            await self._forget(job_id, entry.revision)
        elif isinstance(decision, Arm):
            self._rearm(job_id, entry, number, decision.at_ms)

    async def _forget(self, job_id: str, entry: int) -> None:
        """Remove a timer entry nothing waits for (unless a newer one replaced it meanwhile)."""
        assert self.records is not None
        try:
            await self.records.timers.purge(job_id, entry, marker_ttl_s=ENTRY_MARKER_TTL_S)
        except Conflict:
            pass  # a newer entry: it stays
        except Exception as exc:
            log.warning(
                "timer entry not removed; it will fire once more",
                extra={"job": job_id, "error": repr(exc)},
            )
