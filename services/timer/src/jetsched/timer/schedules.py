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
from jetsched.bus.cas import cas_update
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.records import Records, Store, decoded, transition
from jetsched.bus.workflows import Workflows
from jetsched.core import schedules, states, subjects
from jetsched.core import workflows as wf
from jetsched.core.cron import TooManySteps
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


@dataclass(frozen=True, slots=True)
class Seen:
    """One read of a schedule for a fire: its record, the time read, and its last fire's run."""

    record: ScheduleRecord
    now_ms: int
    previous: Previous | None


@dataclass(frozen=True, slots=True)
class Fire:
    """What a fire carries out: the plan made from what was seen."""

    seen: Seen
    decided: schedules.Plan


class FireFailed(Exception):
    """Carrying out a fire met a lost race of its own (not the ledger's CAS): the fire is retried later."""


class _Gone(Exception):
    """The schedule was deleted: nothing to fire."""


class _NothingDue(Exception):
    """Nothing is due and nothing changes: no ledger write."""


def plan(seen: Seen) -> Fire:
    """The fire to carry out for what was seen; `_NothingDue` when there is none."""
    previous_running = seen.previous is not None and seen.previous.running
    decided = schedules.plan(seen.record, seen.now_ms, previous_running)
    if decided.empty and decided.buffered_ms == seen.record.buffered_ms:
        raise _NothingDue
    return Fire(seen, decided)


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
        try:
            wake = schedules.next_fire(record, strict=True)
        except TooManySteps:
            # Its next fire cannot be found within the cap (intake refuses such a cron; this one was
            # stored past it). Not armed, it would never fire again without a word: raised, it is
            # quarantined by the feed — logged once with its id, shown by `jetsched doctor` — until a
            # new revision of it is written.
            self.known.pop(key, None)
            self.timers.drop(PREFIX + key)
            raise
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
        """Plan the schedule's due fires, carry them out, then write its ledger by CAS on the revision
        planned from; a lost CAS re-reads and re-plans (`cas_update`): what was dealt with is no longer
        due."""

        async def read() -> tuple[Seen, int]:
            try:
                data, revision = await self.store.get(schedule_id)
            except NotFound:
                raise _Gone from None
            record = decoded(ScheduleRecord, data, self.store.bucket, schedule_id, revision)
            now = self.clock.now_ms()
            return Seen(record, now, await self._previous(record)), revision

        async def write(fire: Fire, revision: int) -> None:
            try:
                await self._carry_out(fire)
            except Conflict as exc:  # only the ledger's CAS below is a race to re-plan after
                raise FireFailed(f"schedule {schedule_id}: {exc}") from exc
            crashpoint("timer.fire.after_create")
            updated = schedules.record_fires(fire.seen.record, fire.decided, fire.seen.now_ms)
            await self.store.put_if(schedule_id, updated.model_dump_json().encode(), revision)

        try:
            _, fire, _ = await cas_update(read, plan, write, tries=CAS_TRIES, what=f"schedule {schedule_id}")
        except (_Gone, _NothingDue):
            return
        for nominal, why in fire.decided.missed:
            log.info(
                "schedule fire missed", extra={"schedule": schedule_id, "nominal_ms": nominal, "why": why}
            )

    async def _carry_out(self, fire: Fire) -> None:
        """A planned fire's side effects, before its ledger is written: cancel the previous run if the
        overlap policy says so, then create each due fire's job or workflow."""
        record, now = fire.seen.record, fire.seen.now_ms
        if fire.decided.cancel_previous and fire.seen.previous is not None:
            await self._cancel(fire.seen.previous)
        for nominal in fire.decided.create:
            if record.spec.workflow is not None:
                await self._start(record, nominal, now)
            else:
                await self._fire_job(record, nominal, now)

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
        created, running, jobs = schedules.fire_workflow(record, nominal, now, self.records.partitions)
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
