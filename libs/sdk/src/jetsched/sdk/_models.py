"""What the client hands back: typed views of the wire's replies, with instants as aware datetimes.

The wire keeps epoch milliseconds (`created_at_ms`); these views turn each instant into a UTC `datetime`
named without the suffix (`created_at`), and durations into `timedelta`s (`oldest_ready_age_ms`:
`oldest_ready_age`); a view whose wire names do not say which is which (the schedule record's
`next_fire_ms`, `every_ms`) lists them. They ignore fields they do not know, unlike the wire models: the
protocol grows additively, and an older client must go on reading a newer server's records.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from jetsched.core.models import TERMINAL, JobState
from jetsched.core.workflows import WORKFLOW_TERMINAL, OnFailure, StepState, WorkflowState


class View(BaseModel):
    """A reply read for Python: instants as datetimes, durations as timedeltas, unknown fields ignored.

    An instant is a wire field named `*_at_ms` or listed in `_instants`; a duration one listed in
    `_durations`. Each is renamed as the mapping says (an `*_at_ms` field: without the `_ms`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: Wire fields holding an instant in epoch ms not named `*_at_ms`, and their names in the view.
    _instants: ClassVar[Mapping[str, str]] = {"at_ms": "at", "ready_since_ms": "ready_since"}
    #: Wire fields holding a duration in ms, and their names in the view.
    _durations: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _converted(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in cls._durations:
                out[cls._durations[key]] = None if value is None else timedelta(milliseconds=value)
            elif key in cls._instants or key.endswith("_at_ms"):
                name = cls._instants.get(key, key.removesuffix("_ms"))
                out[name] = None if value is None else datetime.fromtimestamp(value / 1000, UTC)
            else:
                out[key] = value
        return out


class JobError(View):
    """One failed attempt, as kept in `JobInfo.errors` (the last 20)."""

    attempt: int
    at: datetime
    #: `error`, `fatal`, `retry`, `timeout`, `lost`, `expired` or `released`.
    kind: str
    type: str = ""
    message: str = ""
    traceback: str | None = None
    #: Who ran the failed attempt (None when no worker did: an expired start, a step failed before it
    #: ran; and in records written before attempts kept their worker).
    worker: str | None = None
    session: str | None = None
    claimed_at: datetime | None = None


class JobProgress(View):
    """What the job's latest attempt last reported with `job.progress()`."""

    attempt: int
    #: The report's number within its attempt.
    seq: int
    value: Any = None
    #: When intake stored it.
    at: datetime


class JobLease(View):
    """Which worker session holds (`JobInfo.lease`) or last held (`JobInfo.last_run`) an attempt."""

    worker: str
    session: str
    attempt: int
    claimed_at: datetime


class JobInfo(View):
    """A job as stored (docs/protocol.md, "The job record"), plus why it waits, if it does."""

    id: str
    capability: str
    payload: Any = None
    priority: int
    state: JobState
    #: Claims so far, including the running one; only grows.
    attempt: int = 0
    #: Claims handed back unrun (they use no attempt).
    releases: int = 0
    #: Attempts that ended in `Retry(spend_attempt=False)` (they use no attempt either).
    snoozes: int = 0
    max_attempts: int
    timeout_s: float
    heartbeat_timeout_s: float | None = None
    backoff: dict[str, Any]
    run_at: datetime
    ready_since: datetime | None = None
    expires_at: datetime | None = None
    labels: dict[str, str] = {}
    concurrency_key: str | None = None
    key: str | None = None
    lease: JobLease | None = None
    #: Who ran the latest attempt, once its lease is gone (a succeeded attempt leaves no error naming it).
    last_run: JobLease | None = None
    errors: tuple[JobError, ...] = ()
    result: Any = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    schedule_id: str | None = None
    fire_at: datetime | None = None
    #: A workflow step's link to its workflow (`id`, `step`, …).
    workflow: dict[str, Any] | None = None
    parents: dict[str, Any] | None = None
    item: Any = None
    #: The submit's W3C trace context, which every span of the job continues.
    trace: dict[str, str] | None = None
    #: The trace context of the failed attempt a waiting or running retry follows (its spans link to it).
    retry_of: dict[str, str] | None = None
    #: The newest of `errors`, if any.
    last_error: JobError | None = None
    #: Why a job that has not started waits (no capable worker, a paused queue, its due time).
    waiting: str | None = None
    #: What its latest attempt last reported with `job.progress()`, if anything.
    progress: JobProgress | None = None

    @property
    def finished(self) -> bool:
        """True once the job is succeeded, dead or cancelled."""
        return self.state in TERMINAL

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> JobInfo:
        """From a `jobs.get` reply: `{"job", "last_error", "waiting", "progress"}`."""
        extra = {name: reply.get(name) for name in ("last_error", "waiting", "progress")}
        return cls.model_validate({**reply["job"], **extra})


class JobPage(View):
    """One page of `jobs.list` or `dead.list`; pass `next` as `after` for the following page."""

    jobs: list[JobInfo]
    next: str | None = None


class WorkflowSummary(View):
    """A workflow's id and state: one item of `WorkflowPage.workflows`."""

    id: str
    state: WorkflowState

    @property
    def finished(self) -> bool:
        """True once the workflow succeeded, failed or was cancelled."""
        return self.state in WORKFLOW_TERMINAL


class WorkflowReply(WorkflowSummary):
    """What `submit_workflow` returns once every step is stored."""

    #: Each step's job id, by step name.
    steps: dict[str, str]
    #: True when the key named a workflow submitted before: this is that one.
    duplicate: bool = False


class WorkflowChange(WorkflowSummary):
    """What `cancel_workflow` and `retry_workflow` return."""

    cancel_requested: bool = False
    #: The steps a retry started again.
    retried: tuple[str, ...] = ()


class StepInfo(View):
    """One step of `WorkflowInfo.steps`: where the workflow has it, and its job as stored."""

    job_id: str
    #: Where the workflow record has the step.
    step_state: StepState
    depends_on: tuple[str, ...] = ()
    #: The step whose list a map step runs over, and its instances (all, and finished).
    map_over: str | None = None
    instances: int | None = None
    instances_done: int | None = None
    #: Why a released map step cannot succeed.
    error: str | None = None
    #: The job's state, or `missing` once the job expired after its retention.
    state: JobState | Literal["missing"]
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: JobError | None = None
    result: Any = None
    #: True when the result was left out to keep the reply under its size limit (`get` the job).
    result_omitted: bool = False


class WorkflowInfo(WorkflowSummary):
    """A workflow with each step's job (docs/protocol.md, "Workflows")."""

    on_failure: OnFailure
    cancel_requested: bool = False
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    #: The steps by name, in topological order.
    steps: dict[str, StepInfo]

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> WorkflowInfo:
        """From a `workflows.get` reply: `{"workflow": {...}}`."""
        return cls.model_validate(reply["workflow"])


class WorkflowPage(View):
    """One page of `workflows.list`; pass `next` as `after` for the following page."""

    workflows: list[WorkflowSummary]
    next: str | None = None


class QueueSignals(View):
    """One capability's scaling signals (`Stats.queues`), what autoscalers read."""

    ready: int = 0
    #: Ready jobs no live, undrained worker can take at all.
    unroutable: int = 0
    running: int = 0
    #: How long its oldest ready job has waited (zero when none waits).
    oldest_ready_age: timedelta = timedelta(0)
    #: Idle slots of the worker sessions that declared the capability.
    free_worker_slots: int = 0
    paused: bool = False

    _durations: ClassVar[Mapping[str, str]] = {"oldest_ready_age_ms": "oldest_ready_age"}


class FleetStats(View):
    """The live worker fleet in `Stats.workers`."""

    sessions: int = 0
    slots: int = 0
    busy: int = 0


class HistoryStats(View):
    """What history holds, in `Stats.history`."""

    #: Finished jobs kept in history; None when the server keeps no history.
    jobs: int | None = None


class Stats(View):
    """What `stats()` returns: job counts and the scaling signals (docs/protocol.md, "The control API").

    Live states and dead letters count the jobs stored; `succeeded` and `cancelled` count those the
    answering intake saw end since it started.
    """

    #: Jobs by state.
    jobs: dict[str, int] = {}
    #: Jobs by state, per capability.
    capabilities: dict[str, dict[str, int]] = {}
    workers: FleetStats = FleetStats()
    queues: dict[str, QueueSignals] = {}
    history: HistoryStats = HistoryStats()


class JobChange(View):
    """What `cancel`, `retry_dead` and `purge_dead` answer: the job, and where it stands now."""

    id: str
    #: Its state after the change (None once purged).
    state: JobState | None = None
    #: After `retry_dead`: the attempts it has now.
    max_attempts: int | None = None
    #: After `purge_dead`: gone for good.
    purged: bool = False


class QueueConfig(View):
    """A capability's queue settings, as `pause` and `configure_queue` answer (protocol.md, "Queue
    settings")."""

    paused: bool = False
    max_running: int | None = None
    max_running_per_key: int | None = None
    rate_per_s: float | None = None
    rate_per_key_per_s: float | None = None
    burst: int = 1
    #: `strict` or `weighted`.
    priority_mode: str = "strict"
    #: Strict mode: a ready job gains a priority level per this much waiting.
    aging: timedelta | None = None

    _durations: ClassVar[Mapping[str, str]] = {"aging_ms": "aging"}


class Draining(View):
    """What `drain` answers: the session now takes nothing new and exits once idle."""

    session: str
    draining: bool


class WorkerInfo(View):
    """One live worker session, as its heartbeats describe it (what `workers()` lists)."""

    #: The worker's name (its host, unless given).
    worker: str
    session: str
    capabilities: tuple[str, ...]
    labels: dict[str, str] = {}
    concurrency: int
    #: Jobs it runs now.
    running: int
    draining: bool = False
    #: How long ago its latest heartbeat arrived.
    seen_ago: timedelta

    _durations: ClassVar[Mapping[str, str]] = {"seen_ms_ago": "seen_ago"}


class Fire(View):
    """One fire a schedule dealt with (`ScheduleInfo.history`, the newest last)."""

    #: The nominal fire time.
    nominal: datetime
    #: The job (or workflow) it created; None when it was missed.
    job_id: str | None = None
    #: When the timer dealt with it.
    at: datetime
    #: Why it did not run (None if it did).
    missed: str | None = None

    _instants: ClassVar[Mapping[str, str]] = {"at_ms": "at", "nominal_ms": "nominal"}


class ScheduleSettings(View):
    """A schedule as created or updated (docs/protocol.md, "Schedules"); `ScheduleInfo.spec`."""

    id: str
    #: The cron expression, or `every`.
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    #: The job each fire creates (its wire template), or `workflow`, the workflow each starts.
    job: dict[str, Any] | None = None
    workflow: dict[str, Any] | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter: timedelta = timedelta(0)
    # The policies as strings: their enums live beside the cron arithmetic, which the client does not need.
    #: `skip`, `once` or `all`: what fires missed by more than `misfire_grace` do.
    misfire: str
    misfire_grace: timedelta
    catchup_window: timedelta
    #: `allow`, `skip`, `buffer_one` or `cancel_previous`.
    overlap: str
    #: `shift` or `skip`; and `first`, `second` or `both`.
    dst_gap: str
    dst_fold: str
    paused: bool = False

    _durations: ClassVar[Mapping[str, str]] = {
        "every_ms": "every",
        "jitter_ms": "jitter",
        "misfire_grace_ms": "misfire_grace",
        "catchup_window_ms": "catchup_window",
    }


class FireTime(View):
    """A fire to come (`ScheduleInfo.next_fires`, `SchedulePreview.fires`), in UTC and the schedule's zone."""

    utc: datetime
    local: datetime


class ScheduleInfo(View):
    """A schedule: its settings, its ledger (what the timer fired and missed), and its next fires."""

    spec: ScheduleSettings
    created_at: datetime
    updated_at: datetime
    #: Fires are due strictly after the later of this and `last_fire` (creation, resume or update).
    anchor: datetime
    last_fire: datetime | None = None
    next_fire: datetime | None = None
    #: The job (or workflow) the last fire created.
    last_job_id: str | None = None
    #: A fire held back by `overlap="buffer_one"`.
    buffered: datetime | None = None
    fired: int = 0
    missed: int = 0
    #: The latest fires dealt with, oldest first.
    history: tuple[Fire, ...] = ()
    #: The next five fires (none while paused).
    next_fires: tuple[FireTime, ...] = ()

    _instants: ClassVar[Mapping[str, str]] = {
        "anchor_ms": "anchor",
        "last_fire_ms": "last_fire",
        "next_fire_ms": "next_fire",
        "buffered_ms": "buffered",
    }

    @property
    def id(self) -> str:
        return self.spec.id

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> ScheduleInfo:
        """From a schedule reply (`get`, `create`, `update`, …): `{"schedule": record, "next_fires"}`."""
        return cls.model_validate({**reply["schedule"], "next_fires": reply.get("next_fires", ())})


class SchedulePreview(View):
    """What `preview_schedule` returns: the next fires, and the zone they are shown in."""

    timezone: str
    fires: tuple[FireTime, ...]
