"""Cron and interval schedules: the record, and what to fire when. Pure.

A schedule record holds the user's spec and a ledger: the last nominal fire time it has dealt with
(`last_fire_ms`), the job the last fire created, an optional buffered fire, and a bounded history of
fires and misses. The timer service asks `plan(record, now, previous)` what to do and executes it: create
the planned jobs (each under a deterministic id, `fire_job_id`, so a replay or a racing replica can never
create one twice) — or, for a workflow template, the planned workflows under that id —, then write the new
ledger with a CAS. A crash between the two replays the same plan,
whose creates then find their jobs already there — never twice, never skipped.

Policies:
- **misfire** (fires missed while no timer ran, later than `misfire_grace_ms`, a minute by default): `skip` records them as
  missed and resumes from now; `once` runs one job for all of them (the latest); `all` runs each one
  still within `catchup_window_ms` and records older ones as missed.
- **overlap** (the previous fire's job has not finished): `allow` runs anyway; `skip` records the fire as
  missed; `buffer_one` keeps the latest such fire and runs it when the previous job finishes; and
  `cancel_previous` cancels the previous job and runs the new one.
- **daylight saving**: see `cron.py` (`dst_gap`, `dst_fold`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, model_validator

from jetsched.core import cron as cronlib
from jetsched.core import states, steps
from jetsched.core import workflows as wf
from jetsched.core.cron import DstFold, DstGap
from jetsched.core.errors import FieldError
from jetsched.core.ids import encode
from jetsched.core.models import (
    Backoff,
    CapabilityName,
    JobRecord,
    JobRequest,
    JSONValue,
    Labels,
    Model,
    Rfc3339,
    Stored,
)

if TYPE_CHECKING:
    from datetime import datetime

#: A fire up to this late is on time (the timer was merely busy), not missed.
MISFIRE_GRACE_MS = 60_000
#: Fires planned at most per look, so a schedule stopped for years cannot flood the queue.
MAX_FIRES_PER_PLAN = 1000
MAX_HISTORY = 50


def _schedule_id(value: str) -> str:
    if (
        not value
        or len(value) > 64
        or not all(c.isalnum() or c in "-_" for c in value)
        or not value.isascii()
    ):
        raise ValueError("a schedule id is 1-64 characters of ASCII letters, digits, '-' and '_'")
    return value


ScheduleId = Annotated[str, AfterValidator(_schedule_id)]


class Misfire(StrEnum):
    """What to do with fires missed while no timer ran."""

    #: Record them as missed; resume from now.
    SKIP = "skip"
    #: Run one job for all of them.
    ONCE = "once"
    #: Run each one within the catch-up window.
    ALL = "all"


class Overlap(StrEnum):
    """What to do when a fire comes while the previous fire's job has not finished."""

    #: Run anyway.
    ALLOW = "allow"
    #: Do not run; record the fire as missed.
    SKIP = "skip"
    #: Keep (only) the latest such fire; run it when the previous job finishes.
    BUFFER_ONE = "buffer_one"
    #: Cancel the previous job, then run.
    CANCEL_PREVIOUS = "cancel_previous"


class JobTemplate(Stored):
    """The job each fire creates."""

    capability: CapabilityName
    payload: JSONValue = None
    priority: int = Field(5, ge=0, le=9)
    max_attempts: int = Field(5, ge=1, le=1000)
    timeout_s: float = Field(300.0, gt=0, le=7 * 86_400)
    backoff: Backoff = Backoff()
    labels: Labels = Field(default_factory=dict)


class WorkflowTemplate(Stored):
    """The workflow each fire starts (a `jetsched.workflow.submit` body without a key: the fire's
    deterministic id makes it idempotent)."""

    on_failure: wf.OnFailure = wf.OnFailure.FAIL_FAST
    steps: list[wf.StepRequest] = Field(min_length=1, max_length=wf.MAX_STEPS)

    @model_validator(mode="after")
    def _graph(self) -> WorkflowTemplate:
        wf.check_graph(self.steps)
        return self


class ScheduleSpec(Stored):
    """What a user writes: `jetsched.api.schedules.create` / `.update`. Each fire creates a job (`job`)
    or starts a workflow (`workflow`).

    A request read strictly at intake's door, and stored in its schedule's record, where it keeps unknown
    fields like every stored shape (an update replaces it whole, with what the user wrote)."""

    id: ScheduleId
    #: A 5-field (minute first) or 6-field (second first) cron expression; or give `every_ms`.
    cron: str | None = Field(None, max_length=256)
    every_ms: int | None = Field(None, ge=1000, le=366 * 86_400_000)
    timezone: str = Field("UTC", max_length=64)
    job: JobTemplate | None = None
    #: Left out when absent, so a job schedule's stored record reads the same to a timer replica older
    #: than workflow templates — and than `Stored`: it refused unknown fields — during a rolling upgrade.
    workflow: WorkflowTemplate | None = Field(None, exclude_if=lambda value: value is None)
    start_at: Rfc3339 | None = None
    end_at: Rfc3339 | None = None
    #: Each fire's job starts up to this much after the nominal time (spread, deterministic per fire).
    jitter_ms: int = Field(0, ge=0, le=86_400_000)
    misfire: Misfire = Misfire.ONCE
    #: A fire later than this is missed (the misfire policy applies); sooner, it is merely late.
    misfire_grace_ms: int = Field(MISFIRE_GRACE_MS, ge=0, le=366 * 86_400_000)
    catchup_window_ms: int = Field(86_400_000, ge=0, le=366 * 86_400_000)
    overlap: Overlap = Overlap.ALLOW
    dst_gap: DstGap = DstGap.SHIFT
    dst_fold: DstFold = DstFold.FIRST
    paused: bool = False

    @model_validator(mode="after")
    def _valid(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_ms is None):
            raise FieldError("cron", "give exactly one of cron or every_ms")
        if (self.job is None) == (self.workflow is None):
            raise FieldError("job", "give exactly one of job or workflow")
        try:
            if self.cron is not None:
                cronlib.check_cron(self.cron)
        except ValueError as exc:
            raise FieldError("cron", str(exc)) from None
        try:
            cronlib.zone(self.timezone)
        except ValueError as exc:
            raise FieldError("timezone", str(exc)) from None
        return self


class FireEntry(Stored):
    #: The nominal fire time (epoch ms).
    nominal_ms: int
    #: The job it created, or None when it was missed.
    job_id: str | None = None
    #: When the timer dealt with it.
    at_ms: int
    #: Why it did not run (None if it did).
    missed: str | None = None


class ScheduleRecord(Stored):
    """One schedule in the `schedules` bucket: the spec plus its ledger."""

    spec: ScheduleSpec
    created_at_ms: int
    updated_at_ms: int
    #: Fires are due strictly after max(anchor, last fire): creation, resume or update time.
    anchor_ms: int
    last_fire_ms: int | None = None
    next_fire_ms: int | None = None
    last_job_id: str | None = None
    buffered_ms: int | None = None
    fired: int = 0
    missed: int = 0
    history: tuple[FireEntry, ...] = ()

    @property
    def after_ms(self) -> int:
        return max(self.anchor_ms, self.last_fire_ms or 0)


def may_still_fire(record: ScheduleRecord, nominal_ms: int) -> bool:
    """Whether a timer may yet execute the fire at `nominal_ms`: the ledger has not passed it, or holds
    it buffered. A paused schedule never will (resuming re-anchors it at the time of the resume)."""
    if record.spec.paused:
        return False
    return nominal_ms > record.after_ms or record.buffered_ms == nominal_ms


#: How far ahead the next fire and previews are looked for.
HORIZON_MS = 10 * 366 * 86_400_000
#: How many next fires a schedule's view shows.
PREVIEW_FIRES = 5


def window(spec: ScheduleSpec) -> tuple[int | None, int | None]:
    def ms(value: datetime | None) -> int | None:
        return None if value is None else int(value.timestamp() * 1000)

    return ms(spec.start_at), ms(spec.end_at)


def fires(
    spec: ScheduleSpec, anchor_ms: int, after_ms: int, until_ms: int, limit: int, strict: bool = False
) -> list[int]:
    """Nominal fire instants in (after_ms, until_ms] within the spec's start/end, earliest first.
    `strict`: `cron.TooManySteps` if the evaluation passes the step cap (else what it found by then)."""
    start, end = window(spec)
    if start is not None:
        after_ms = max(after_ms, start - 1)
    if end is not None:
        until_ms = min(until_ms, end)
    if until_ms <= after_ms:
        return []
    if spec.every_ms is not None:
        base = start if start is not None else anchor_ms
        return cronlib.interval_fires(spec.every_ms, base - spec.every_ms, after_ms, until_ms, limit)
    assert spec.cron is not None
    try:
        return cronlib.cron_fires(
            spec.cron, spec.timezone, after_ms, until_ms, spec.dst_gap, spec.dst_fold, limit
        )
    except cronlib.TooManySteps as exc:
        # Intake refuses such a spec (`check_evaluable`); one stored anyway yields what was found in the
        # bounded effort (maybe nothing: no next fire), never an unbounded search.
        if strict:
            raise
        return exc.found


def check_evaluable(spec: ScheduleSpec, now_ms: int, count: int = PREVIEW_FIRES) -> None:
    """FieldError on `cron` if finding the spec's next `count` fires takes more than
    `cron.MAX_STEPS` croniter steps (intake refuses it; the timer would find no next fire)."""
    if spec.cron is None:
        return
    try:
        cronlib.cron_fires(
            spec.cron, spec.timezone, now_ms, now_ms + HORIZON_MS, spec.dst_gap, spec.dst_fold, count
        )
    except cronlib.TooManySteps as exc:
        raise FieldError("cron", f"{exc}: too costly to evaluate") from None


def next_fire(record: ScheduleRecord, now_ms: int | None = None, strict: bool = False) -> int | None:
    """The next nominal fire after the ledger (and after `now_ms` if given), or None if there is none.
    `strict`: `cron.TooManySteps` if finding it passes the step cap (else None, as if there were none)."""
    after = record.after_ms if now_ms is None else max(record.after_ms, now_ms)
    found = fires(record.spec, record.anchor_ms, after, after + HORIZON_MS, 1, strict)
    return found[0] if found else None


def fire_job_id(schedule_id: str, nominal_ms: int) -> str:
    """The id of the job a fire creates: a ULID whose time is the nominal fire time and whose random part
    is a hash of the schedule id — deterministic, unique per (schedule, fire), and time-sortable."""
    digest = int.from_bytes(hashlib.sha256(schedule_id.encode()).digest()[:10], "big")
    return encode((nominal_ms << 80) | digest)


def jitter_ms(schedule_id: str, nominal_ms: int, jitter: int) -> int:
    """A deterministic delay in [0, jitter] for one fire (the same on every replica and replay)."""
    if jitter <= 0:
        return 0
    digest = hashlib.sha256(f"{schedule_id}:{nominal_ms}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (jitter + 1)


@dataclass
class Plan:
    """What the timer must do for a schedule now."""

    #: Nominal fire times to create jobs for (in order).
    create: list[int] = field(default_factory=list)
    #: Nominal times recorded as missed, with the reason.
    missed: list[tuple[int, str]] = field(default_factory=list)
    #: Cancel the previous fire's job before creating.
    cancel_previous: bool = False
    #: The fire to keep for when the previous job finishes (None: nothing buffered).
    buffered_ms: int | None = None
    #: The ledger's new last fire.
    last_fire_ms: int | None = None

    @property
    def empty(self) -> bool:
        return not self.create and not self.missed and not self.cancel_previous


def plan(record: ScheduleRecord, now_ms: int, previous_running: bool) -> Plan:
    """Decide the fires due at `now_ms`. `previous_running`: the last fire's job is not final yet."""
    spec = record.spec
    result = Plan(buffered_ms=record.buffered_ms, last_fire_ms=record.last_fire_ms)
    if spec.paused:
        return result
    due = fires(spec, record.anchor_ms, record.after_ms, now_ms, MAX_FIRES_PER_PLAN)
    if due:
        result.last_fire_ms = due[-1]
    on_time = [t for t in due if now_ms - t <= spec.misfire_grace_ms]
    late = [t for t in due if now_ms - t > spec.misfire_grace_ms]
    wanted: list[int] = list(on_time)
    if late:
        if spec.misfire is Misfire.SKIP:
            result.missed += [(t, "missed while no timer ran (misfire=skip)") for t in late]
        elif spec.misfire is Misfire.ONCE:
            if on_time:
                result.missed += [
                    (t, "missed while no timer ran (misfire=once: a later fire ran)") for t in late
                ]
            else:
                result.missed += [(t, "coalesced with a later missed fire (misfire=once)") for t in late[:-1]]
                wanted = [late[-1]]
        else:
            window_start = now_ms - spec.catchup_window_ms
            result.missed += [
                (t, "older than the catch-up window (misfire=all)") for t in late if t < window_start
            ]
            wanted = [t for t in late if t >= window_start] + on_time
    if spec.overlap is Overlap.ALLOW:
        result.create = wanted
        return result
    # One run at a time from here on.
    if record.buffered_ms is not None and not previous_running:
        # The buffered fire runs now; anything newer waits in the buffer behind it.
        result.create = [record.buffered_ms]
        result.buffered_ms = None
        previous_running = True
    if not wanted:
        return result
    superseded = [
        (t, f"superseded by a later fire (overlap={spec.overlap.value}: one run at a time)")
        for t in wanted[:-1]
    ]
    latest = wanted[-1]
    if not previous_running:
        result.missed += superseded
        result.create = [latest]
    elif spec.overlap is Overlap.SKIP:
        result.missed += [(t, "the previous run had not finished (overlap=skip)") for t in wanted]
    elif spec.overlap is Overlap.BUFFER_ONE:
        if result.buffered_ms is not None:
            result.missed.append(
                (result.buffered_ms, "replaced by a later fire in the buffer (overlap=buffer_one)")
            )
        result.missed += superseded
        result.buffered_ms = latest
    else:
        result.cancel_previous = True
        result.missed += superseded
        result.create = [latest]
    return result


def record_fires(record: ScheduleRecord, decided: Plan, now_ms: int) -> ScheduleRecord:
    """The ledger after executing `decided`."""
    entries = [FireEntry(nominal_ms=t, at_ms=now_ms, missed=why) for t, why in decided.missed]
    entries += [
        FireEntry(nominal_ms=t, job_id=fire_job_id(record.spec.id, t), at_ms=now_ms) for t in decided.create
    ]
    entries.sort(key=lambda e: e.nominal_ms)
    updated = record.model_copy(
        update={
            "last_fire_ms": decided.last_fire_ms,
            "buffered_ms": decided.buffered_ms,
            "last_job_id": fire_job_id(record.spec.id, decided.create[-1])
            if decided.create
            else record.last_job_id,
            "fired": record.fired + len(decided.create),
            "missed": record.missed + len(decided.missed),
            "history": (*record.history, *entries)[-MAX_HISTORY:],
            "updated_at_ms": now_ms,
        }
    )
    return updated.model_copy(update={"next_fire_ms": next_fire(updated)})


def fire_job(record: ScheduleRecord, nominal_ms: int, now_ms: int) -> JobRecord:
    """The job one fire creates: the template, due at the nominal time plus this fire's jitter."""
    spec, template = record.spec, record.spec.job
    assert template is not None
    run_at_ms = nominal_ms + jitter_ms(spec.id, nominal_ms, spec.jitter_ms)
    request = JobRequest(
        payload=template.payload,
        priority=template.priority,
        max_attempts=template.max_attempts,
        timeout_s=template.timeout_s,
        backoff=template.backoff,
        labels=template.labels,
        delay_ms=max(0, run_at_ms - now_ms),
    )
    job_id = fire_job_id(spec.id, nominal_ms)
    job = states.accept(request, job_id, template.capability, now_ms, fire_trace(job_id))
    return job.model_copy(update={"schedule_id": spec.id, "fire_at_ms": nominal_ms})


def fire_workflow(
    record: ScheduleRecord, nominal_ms: int, now_ms: int, partitions: int
) -> tuple[wf.WorkflowRecord, wf.WorkflowRecord, list[JobRecord]]:
    """The workflow one fire starts, under the fire's id (`fire_job_id`): its record as created
    (`creating`, for the intents of its start), as stored (`running`, its first steps released), and
    its step jobs (`waiting`, none to start before the fire's jittered time)."""
    template = record.spec.workflow
    assert template is not None
    request = wf.WorkflowRequest(on_failure=template.on_failure, steps=template.steps)
    workflow_id = fire_job_id(record.spec.id, nominal_ms)
    trace = fire_trace(workflow_id)
    created, ordered = wf.new_record(request, workflow_id, now_ms, trace, partitions=partitions)
    created = created.model_copy(update={"schedule_id": record.spec.id, "fire_at_ms": nominal_ms})
    # Jitter delays the whole workflow: no step starts before the fire's jittered time (a released step
    # runs at the later of its job's run_at and its own delay after release).
    run_at_ms = nominal_ms + jitter_ms(record.spec.id, nominal_ms, record.spec.jitter_ms)
    marks = {"schedule_id": record.spec.id, "fire_at_ms": nominal_ms, "run_at_ms": run_at_ms}
    jobs = [
        job.model_copy(update=marks)
        for job in (steps.waiting_job(step, created, n, now_ms, trace) for n, step in enumerate(ordered))
    ]
    return created, wf.start(created, now_ms), jobs


def fire_trace(fire_id: str) -> dict[str, str]:
    """The W3C trace context a fire's job or workflow runs in: derived from the fire's id, so every
    replay and racing replica gives it the same trace. For a job the timer's `jetsched fire` span is a
    child of it (a replayed fire shows as a second one); a workflow's root is never exported."""
    digest = hashlib.sha256(f"trace:{fire_id}".encode()).hexdigest()
    return {"traceparent": f"00-{digest[:32]}-{digest[32:48]}-01"}


def new_record(spec: ScheduleSpec, now_ms: int) -> ScheduleRecord:
    record = ScheduleRecord(spec=spec, created_at_ms=now_ms, updated_at_ms=now_ms, anchor_ms=now_ms)
    return record.model_copy(update={"next_fire_ms": next_fire(record)})


def revise(record: ScheduleRecord, spec: ScheduleSpec, now_ms: int) -> ScheduleRecord:
    """A changed spec (update, pause, resume) applies from now: nothing before `now_ms` is owed."""
    revised = record.model_copy(
        update={"spec": spec, "anchor_ms": now_ms, "updated_at_ms": now_ms, "buffered_ms": None}
    )
    return revised.model_copy(update={"next_fire_ms": None if spec.paused else next_fire(revised)})


class ScheduleIdRequest(Model):
    id: ScheduleId


class PreviewRequest(Model):
    """Either a stored schedule's id or a spec not yet created; the next `count` fires after now."""

    id: ScheduleId | None = None
    spec: ScheduleSpec | None = None
    count: int = Field(10, ge=1, le=1000)

    @model_validator(mode="after")
    def _one(self) -> PreviewRequest:
        if (self.id is None) == (self.spec is None):
            raise FieldError("id", "give id or spec")
        return self


def preview(record: ScheduleRecord, now_ms: int, count: int) -> list[dict[str, str]]:
    """The next `count` fires after now, in UTC and in the schedule's zone (DST policies applied)."""
    spec = record.spec
    after = max(record.after_ms, now_ms)
    found = fires(spec, record.anchor_ms, after, after + HORIZON_MS, count)
    return [{"utc": cronlib.to_utc(t), "local": cronlib.to_local(t, spec.timezone)} for t in found]
