"""Firing schedules: each schedule's next fire sits on the timer's wheel; when it comes, plan and execute.

Execution order makes every fire exactly-once: first create the fire's jobs (deterministic ids, so a
create that finds its job already there means an earlier attempt got that far), then write the ledger
with a CAS on the schedule's revision. Die in between, and the restarted timer (or another replica) plans
the same fires again, finds the jobs, and writes the ledger. Lose the ledger CAS to another replica, and
re-read and re-plan: the fires already dealt with are no longer due.

A schedule whose template is a workflow starts one workflow per fire, under the fire's id: its step jobs
are created `waiting` first, then its record is created already `running` (one CAS create: the fire's
commit point), then its first steps are released. A crash before the record leaves waiting jobs that
the replay finds (their ids derive from the workflow's) — or, if no replay will come (the schedule was
deleted, paused or moved past the fire meanwhile), that the reaper clears (`reaper/abandoned.py`); a crash after it leaves a running workflow whose
first steps the reaper's check releases; a racing replica's record create fails, and it moves on. The
fire never passes through `creating`, so the reaper's sweep of abandoned submits never touches it. The
ledger's `last_job_id` then names the workflow, whose state the overlap policy judges.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind

from jetsched.bus import tracing
from jetsched.bus.actors import log_failure
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.records import Records, Store, decoded, transition
from jetsched.bus.workflows import Workflows
from jetsched.core import schedules, states, subjects
from jetsched.core import workflows as wf
from jetsched.core.errors import Conflict, NotFound, Poisoned, TransitionError
from jetsched.core.models import TERMINAL, Control, JobRecord
from jetsched.core.schedules import ScheduleRecord

if TYPE_CHECKING:
    from jetsched.bus.direct import Connection
    from jetsched.core.clock import Clock

    from .ownership import OwnedTimers

log = logging.getLogger(__name__)

PREFIX = "schedule:"
#: How often a buffered fire checks whether the previous job has finished.
BUFFER_POLL_MS = 1000
CAS_TRIES = 10


@dataclass(frozen=True, slots=True)
class Previous:
    """The last fire's job (or workflow) and whether it is still running, for the overlap policy."""

    id: str
    running: bool
    workflow: bool = False


class ScheduleFirer:
    def __init__(
        self, nc: Connection, records: Records, store: Store, timers: OwnedTimers, clock: Clock
    ) -> None:
        self.nc = nc
        self.records = records
        self.workflows = Workflows(nc, records, records.retention_s)
        self.store = store
        self.timers = timers
        self.clock = clock
        self.known: dict[str, ScheduleRecord] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        if data is None:
            self.known.pop(key, None)
            self.timers.drop(PREFIX + key)
            return
        record = ScheduleRecord.model_validate_json(data)
        self.known[key] = record
        if record.spec.paused:
            self.timers.drop(PREFIX + key)
            return
        wake = schedules.next_fire(record)
        if record.buffered_ms is not None:
            poll = self.clock.now_ms() + BUFFER_POLL_MS
            wake = poll if wake is None else min(wake, poll)
        if wake is None:
            self.timers.drop(PREFIX + key)
        else:
            self.timers.want(PREFIX + key, key, wake)

    def due(self, schedule_id: str) -> None:
        task = asyncio.create_task(self._fire(schedule_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire(self, schedule_id: str) -> None:
        try:
            await self.fire(schedule_id)
        except Poisoned:
            return  # set aside by the schedules feed; a rewrite of the schedule arms it again
        except Exception:
            log_failure(log, "firing a schedule failed; retrying in a second", {"schedule": schedule_id})
            self.timers.want(PREFIX + schedule_id, schedule_id, self.clock.now_ms() + 1000)

    async def fire(self, schedule_id: str) -> None:
        for _ in range(CAS_TRIES):
            try:
                data, revision = await self.store.get(schedule_id)
            except NotFound:
                return
            record = decoded(ScheduleRecord, data, self.store.bucket, schedule_id, revision)
            now = self.clock.now_ms()
            previous = await self._previous(record)
            decided = schedules.plan(record, now, previous is not None and previous.running)
            if decided.empty and decided.buffered_ms == record.buffered_ms:
                return
            if decided.cancel_previous and previous is not None:
                await self._cancel(previous)
            for nominal in decided.create:
                if record.spec.workflow is not None:
                    await self._start(record, nominal, now)
                else:
                    await self._fire_job(record, nominal, now)
            crashpoint("timer.fire.after_create")
            updated = schedules.record_fires(record, decided, now)
            try:
                await self.store.put_if(schedule_id, updated.model_dump_json().encode(), revision)
            except Conflict:
                continue
            for nominal, why in decided.missed:
                log.info(
                    "schedule fire missed", extra={"schedule": schedule_id, "nominal_ms": nominal, "why": why}
                )
            return
        raise Conflict(f"schedule {schedule_id} kept changing")

    async def _previous(self, record: ScheduleRecord) -> Previous | None:
        """The last fire's job or workflow, if it can still be read."""
        if record.last_job_id is None:
            return None
        try:
            if record.spec.workflow is not None:
                flow, _ = await self.workflows.get(record.last_job_id)
                return Previous(flow.id, flow.state not in wf.WORKFLOW_TERMINAL, workflow=True)
            job, _ = await self.records.get(record.last_job_id)
        except (NotFound, Poisoned):
            return None  # gone, or unreadable (quarantined by whoever reads it): nothing runs
        return Previous(job.id, job.state not in TERMINAL)

    async def _create(self, job: JobRecord) -> None:
        try:
            await self.records.create(job)
        except Conflict:
            log.info("fire's job already exists (an earlier attempt created it)", extra={"job": job.id})

    async def _fire_job(self, record: ScheduleRecord, nominal: int, now: int) -> None:
        """Create one fire's job inside a span of the fire, which the job's own spans continue."""
        job = schedules.fire_job(record, nominal, now)
        attributes: dict[str, str | int] = {
            "jetsched.schedule_id": record.spec.id,
            "jetsched.fire_at_ms": nominal,
            "jetsched.job_id": job.id,
            "jetsched.capability": job.capability,
        }
        with tracing.span(f"jetsched fire {record.spec.id}", job.trace, SpanKind.INTERNAL, attributes) as ctx:
            await self._create(job.model_copy(update={"trace": ctx or job.trace}))

    async def _start(self, record: ScheduleRecord, nominal: int, now: int) -> None:
        """Start the fire's workflow, once however often this is replayed (see the module's docstring)."""
        created, running, jobs = schedules.fire_workflow(record, nominal, now)
        points = (
            lambda: crashpoint("timer.fire.after_steps"),
            lambda: crashpoint("timer.fire.after_workflow"),
        )
        if not await self.workflows.begin(created, running, jobs, now, points):
            log.info("fire's workflow already exists", extra={"workflow": running.id})

    async def _cancel(self, previous: Previous) -> None:
        if previous.workflow:
            now = self.clock.now_ms()
            try:
                before, after = await self.workflows.change(previous.id, lambda r: wf.cancel(r, now))
            except TransitionError:
                return  # final already
            await self.workflows.carry_out(before, after, now)
            return
        job, revision = await self.records.get(previous.id)
        done = await transition(self.records, job, revision, lambda r: states.cancel(r, self.clock.now_ms()))
        if done is not None and done[0].lease is not None:
            lease = done[0].lease
            control = Control(op="cancel", id=job.id, attempt=lease.attempt)
            await self.nc.publish(subjects.control(lease.session), control.model_dump_json().encode())
