"""The wire contract: every JSON shape jetsched stores or sends, as pydantic v2 models.

Three kinds, by who reads a shape and what they do with a field they do not know (docs/protocol.md,
"Compatibility"):

- **Requests** (`Model`): what a client sends. Unknown fields are errors, so a typo in a client's request
  is an error, not a silently ignored option. Intake reads every request at one door (`validate.parse`:
  `strict=True, extra="forbid"`), which holds every shape nested in it to that too — also the shapes a
  request shares with a stored record (`Backoff`, a schedule's spec and templates, a workflow's steps).
- **Stored shapes** (`Stored`): what is written to a bucket or stream and read back, maybe by a service of
  another version during a rolling deploy. Unknown fields are kept: read, carried through every
  transition (`model_copy`) and written back as they were, so a service of the previous version neither
  refuses a record a newer one wrote nor drops what the newer one added to it.
- **Messages** (`Message`): what workers and services send each other (reports, heartbeats, work,
  commands, replies), each side of its own version. Unknown fields are ignored: nobody stores a message
  back, so there is nothing to keep.

Times are integers with a unit suffix (`*_ms` epoch or duration milliseconds) except where a client
types them (`run_at`, RFC 3339). `docs/protocol.md` is the prose version of this module.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .bounds import check_json
from .ids import CURSOR_RE, ULID_RE
from .types import JSON

CAPABILITY_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MAX_CAPABILITY_LEN = 128
#: RFC 3339 with a time zone offset, as `run_at` is documented (no space for `T`, no `+0100`).
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_capability(name: str) -> str:
    if len(name) > MAX_CAPABILITY_LEN or not CAPABILITY_RE.match(name):
        raise ValueError(
            "a capability is 1-128 characters of letters, digits, '_' and '-', in dot-separated tokens"
        )
    return name


CapabilityName = Annotated[str, AfterValidator(check_capability)]


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


#: A job id: checked before it reaches any subject or key, so `*` or `>` can never match other jobs.
JobId = Annotated[
    str,
    _matching(ULID_RE, "a job id is a ULID: 26 characters of Crockford base32 (0-9, A-Z without I, L, O, U)"),
]
#: A list page cursor (`ids.CURSOR_RE`): a job id, or a place in history.
PageCursor = Annotated[
    str, _matching(CURSOR_RE, "a cursor is a job id (a ULID) or the `next` of a previous page")
]
SessionName = Annotated[
    str, _matching(SESSION_RE, "a session is 1-64 characters of letters, digits, '_' and '-'")
]
#: A payload or result: JSON that every component can encode (bounds.py).
JSONValue = Annotated[JSON, AfterValidator(check_json)]


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):  # built in Python, not read from the wire
        if value.tzinfo is None:
            raise ValueError("a time needs a time zone offset")
        return value
    if not isinstance(value, str) or not RFC3339_RE.match(value):
        raise ValueError("an RFC 3339 time with an offset is needed, e.g. 2026-01-01T09:00:00Z")
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


#: An instant as clients write it: RFC 3339 with an offset, strictly (no epoch numbers, no space for
#: `T`, no `+0100`).
Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


def token_hash(token: str) -> str:
    """What a record keeps of a lease token: enough to check a report's token, useless to forge one."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > 16 or any(not 0 < len(k) <= 64 or len(v) > 64 for k, v in labels.items()):
        raise ValueError("at most 16 labels, keys of 1-64 characters, values of up to 64")
    return labels


Labels = Annotated[dict[str, str], AfterValidator(check_labels)]


class Model(BaseModel):
    """A request, and the base of every wire shape: unknown fields are errors. Intake reads client requests
    strictly as well (`validate.parse`: `"5"` or `true` is not 5, and no nested shape takes an unknown
    field either); built in Python, models coerce as usual."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Stored(Model):
    """A shape that is stored and read back — perhaps by another version: unknown fields are kept.

    A field it does not know (a newer version added it) is read into `__pydantic_extra__`, held to the
    bounds of any stored JSON (`check_json`: nesting, 64-bit integers, finite numbers; an unreadable one
    quarantines the value as before), carried by every `model_copy` and written back by `model_dump*`
    with the known ones: a read-modify-write by this version keeps what a newer one added. Being part of
    the stored bytes, such fields count in every size check made on them. A shape this version builds
    anew (`Lease(...)` at a claim) has only the fields it knows.
    """

    model_config = ConfigDict(extra="allow")

    __pydantic_extra__: dict[str, JSONValue] = Field(init=False)


class Message(Model):
    """A message between workers and services, each of its own version, that nobody stores back:
    unknown fields are ignored (a newer peer may send more than this version reads)."""

    model_config = ConfigDict(extra="ignore")


class JobState(StrEnum):
    """Where a job is in its life. `succeeded`, `dead` and `cancelled` are terminal."""

    #: A workflow step whose parents have not all succeeded yet (or a map step collecting its
    #: instances): nothing runs it until its workflow releases it (`core/workflows.py`).
    WAITING = "waiting"
    #: Waiting for its due time (a delay or a retry backoff), owned by the timer.
    SCHEDULED = "scheduled"
    #: Due and queued for a worker, owned by the dispatcher.
    READY = "ready"
    #: Leased to a worker session for one attempt.
    RUNNING = "running"
    #: Finished; `result` holds what the handler returned.
    SUCCEEDED = "succeeded"
    #: Out of attempts, or failed fatally; `errors` tells why. Can be revived or purged.
    DEAD = "dead"
    #: Cancelled through the API before it finished.
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


class Backoff(Stored):
    """Retry delay policy: `min(max_ms, base_ms * factor**(n-1))`, spread by ±`jitter`.

    Stored in every job record and job template, so it keeps unknown fields there; in a request it is
    read at intake's door, which refuses them."""

    base_ms: int = Field(1000, ge=0, le=86_400_000)
    factor: float = Field(2.0, ge=1.0, le=10.0)
    max_ms: int = Field(600_000, ge=0, le=7 * 86_400_000)
    jitter: float = Field(0.2, ge=0.0, le=1.0)


class JobRequest(Model):
    """The body a client sends to `jetsched.submit.<capability>`."""

    payload: JSONValue = None
    priority: int = Field(5, ge=0, le=9)
    delay_ms: int | None = Field(None, ge=0, le=366 * 86_400_000)
    #: RFC 3339 with an offset (`2026-01-01T09:00:00Z`); not with `delay_ms`.
    run_at: Rfc3339 | None = None
    key: str | None = Field(None, min_length=1, max_length=256)
    max_attempts: int = Field(5, ge=1, le=1000)
    timeout_s: float = Field(300.0, gt=0, le=7 * 86_400)
    #: Fail an attempt whose handler reports no progress (`job.heartbeat()`) for this long.
    heartbeat_timeout_s: float | None = Field(None, gt=0, le=7 * 86_400)
    #: The first attempt must start within this long of the due time, or the job dies as expired.
    expires_in_ms: int | None = Field(None, ge=0, le=366 * 86_400_000)
    #: Only workers announcing all these labels (e.g. {"gpu": "a100"}) may run it.
    labels: Labels = Field(default_factory=dict)
    #: Jobs sharing a key (e.g. "tenant=acme") are limited and scheduled fairly together (see queue settings).
    concurrency_key: str | None = Field(None, min_length=1, max_length=128)
    backoff: Backoff = Backoff()

    @field_validator("run_at")
    @classmethod
    def _one_start_time(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("delay_ms") is not None:
            raise ValueError("give delay_ms or run_at, not both")
        return value


class Lease(Stored):
    """Who holds a running job: one worker session, for one attempt, proven by a per-attempt token.

    The token itself travels only in the work message to that session; the record keeps its hash, so
    whoever can read records (any client, through `jobs.get`) cannot report for the attempt.
    """

    worker: str
    session: str
    attempt: int
    token_hash: str
    claimed_at_ms: int
    #: The worker process the session was announced by when it was claimed (see `Heartbeat.incarnation`).
    incarnation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _hash_legacy_token(cls, data: Any) -> Any:
        # Records written before tokens were hashed kept the token itself.
        if isinstance(data, dict) and "token" in data and "token_hash" not in data:
            legacy = str(data["token"])
            data = {k: v for k, v in data.items() if k != "token"}
            data["token_hash"] = token_hash(legacy)
        return data


class ErrorKind(StrEnum):
    """Why an attempt did not succeed."""

    #: The handler raised an exception.
    ERROR = "error"
    #: The handler asked not to be retried (`Fatal`).
    FATAL = "fatal"
    #: The handler asked to run again later (`Retry`).
    RETRY = "retry"
    #: The attempt ran past the job's timeout.
    TIMEOUT = "timeout"
    #: The worker session holding the job vanished.
    LOST = "lost"
    #: The first attempt did not start before the job's start deadline.
    EXPIRED = "expired"
    #: The job was handed back unrun too many times (`MAX_RELEASES`).
    RELEASED = "released"


class Run(Stored):
    """Who ran an attempt: what a record keeps of a lease once the attempt is over."""

    attempt: int
    worker: str
    session: str
    claimed_at_ms: int


class ErrorInfo(Stored):
    attempt: int
    at_ms: int
    kind: ErrorKind
    type: str = ""
    message: str = ""
    traceback: str | None = None
    #: Who ran the failed attempt, from its lease (the worker's name cut to `MAX_ERROR_WORKER_BYTES`).
    #: None when no worker did (an expired start, a workflow step failed before it ran) and in records
    #: written before attempts kept their worker.
    worker: str | None = None
    session: str | None = None
    claimed_at_ms: int | None = None


class WorkflowLink(Stored):
    """What ties a job to a workflow step (`core/workflows.py`)."""

    #: The workflow's id.
    id: str
    #: The step's name and its position in the workflow's step list.
    step: str
    index: int = Field(ge=0)
    #: Which run of the step this job is (a `workflows.retry` starts another run with new jobs).
    run: int = Field(0, ge=0)
    #: A map instance's position in its list (None: the step's own job).
    instance: int | None = None
    #: A map step's own job: never dispatched, it holds the instances' results once they are in.
    map: bool = False
    #: Start delay and start deadline counted from the moment the step is released.
    delay_ms: int | None = None
    expires_in_ms: int | None = None


class JobRecord(Stored):
    """One job: the value stored under its id in the `jobs` KV bucket. The record is the truth."""

    id: str
    capability: str
    #: Checked on every read too: a record stored before inputs were bounded is quarantined, not sent on.
    payload: JSONValue = None
    priority: int
    state: JobState
    #: Claims so far; each claim increments it, so it fences reports from older attempts.
    attempt: int = 0
    #: Claims handed back without running (worker drain, over-delivery); they do not use up attempts.
    #: Counted from 0 again by a revive (`states.revive`), after which the earlier ones count as used.
    releases: int = 0
    #: Attempts the handler ended by asking to run later without spending an attempt (`snoozed`).
    snoozes: int = 0
    max_attempts: int
    timeout_s: float
    heartbeat_timeout_s: float | None = None
    backoff: Backoff
    #: Earliest start (epoch ms); the due time while `scheduled`.
    run_at_ms: int
    #: When the job first became ready (epoch ms): its place in its queue, kept through rescues and retries.
    ready_since_ms: int | None = None
    #: Latest start of the first attempt (epoch ms); past it, an unstarted job dies as expired. Dropped
    #: once the job snoozes or is revived.
    expires_at_ms: int | None = None
    #: Labels a worker must announce to run it.
    labels: dict[str, str] = Field(default_factory=dict)
    concurrency_key: str | None = None
    key: str | None = None
    lease: Lease | None = None
    #: Who ran the latest attempt once its lease is gone: the lease is cleared when an attempt ends, and
    #: a succeeded or cancelled attempt leaves no error entry to name its worker.
    last_run: Run | None = None
    errors: tuple[ErrorInfo, ...] = ()
    result: JSONValue = None
    created_at_ms: int
    updated_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    #: W3C trace context (traceparent, tracestate) of the submit, so every service joins one trace.
    trace: dict[str, str] | None = None
    #: Trace context of the failed attempt's run, while a retry waits and runs: its spans link to it.
    retry_of: dict[str, str] | None = None
    #: The schedule whose fire created this job, and that fire's nominal time (epoch ms).
    schedule_id: str | None = None
    fire_at_ms: int | None = None
    #: The workflow step this job runs, if it is one.
    workflow: WorkflowLink | None = None
    #: A released step's parents' results (step name → result), handed to its handler.
    parents: dict[str, JSONValue] | None = None
    #: A map instance's element of the list it maps over (see `workflow.instance`).
    item: JSONValue = None

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.releases - self.snoozes

    @property
    def queued_at(self) -> int:
        """Its place among ready jobs of its priority (records from before `ready_since_ms`: their due time)."""
        return self.ready_since_ms if self.ready_since_ms is not None else self.run_at_ms


class OutcomeStatus(StrEnum):
    """What a worker reports at the end of an attempt."""

    #: The handler returned; `result` holds its value.
    SUCCEEDED = "succeeded"
    #: The handler raised; retried per the job's backoff while attempts remain.
    FAILED = "failed"
    #: The handler raised `Fatal`: dead at once.
    FATAL = "fatal"
    #: The handler raised `Retry(delay)`: run again after `retry_delay_ms` (counts as an attempt).
    RETRY = "retry"
    #: The handler raised `Retry(delay, spend_attempt=False)`: run again after `retry_delay_ms`,
    #: without counting the attempt (Oban's snooze).
    SNOOZED = "snoozed"
    #: The attempt ran past `timeout_s` and was cancelled by the worker.
    TIMEOUT = "timeout"
    #: The worker hands the job back unrun (draining, or over capacity): ready again, no attempt used.
    RELEASED = "released"


class OutcomeError(Message):
    type: str = ""
    message: str = ""
    traceback: str | None = None


#: No job is ever claimed this often (attempts and releases are bounded far below): a larger attempt
#: number in a message is hostile, and refused before it reaches logs or arithmetic.
MAX_ATTEMPT = 1_000_000


class Outcome(Message):
    """A worker's report on one attempt, published durably to `jetsched.outcome.<capability>`.

    Read leniently where a worker may be careless (the result and error texts are bounded when the
    reaper applies them), strictly where it decides (id, attempt, token). Fields a newer worker adds are
    ignored: the reaper applies a report, it never stores it back.
    """

    id: JobId
    attempt: int = Field(le=MAX_ATTEMPT)
    token: str = Field(max_length=128)
    session: str = Field(max_length=64)
    status: OutcomeStatus
    result: JSON = None
    error: OutcomeError | None = None
    retry_delay_ms: int | None = Field(None, ge=0, le=366 * 86_400_000)
    finished_at_ms: int


class WorkMessage(Message):
    """What a dispatcher sends a worker session: one claimed job for one attempt."""

    id: JobId
    capability: CapabilityName
    attempt: int = Field(ge=1, le=MAX_ATTEMPT)
    token: str = Field(max_length=128)
    payload: JSON = None
    priority: int
    timeout_s: float
    heartbeat_timeout_s: float | None = None
    created_at_ms: int
    run_at_ms: int
    #: A workflow step's parents' results (step name → result); absent for a plain job.
    parents: dict[str, JSON] | None = None
    #: A map instance's element; absent otherwise.
    item: JSON = None


#: Jobs a heartbeat may list beyond its concurrency: attempts past their handler whose reports are
#: still being stored, and work messages over capacity on their way back (`released`).
HELD_BEYOND_CONCURRENCY = 64


def max_listed(concurrency: int) -> int:
    """The most jobs a heartbeat of this concurrency may list (`running`): twice the concurrency plus
    `HELD_BEYOND_CONCURRENCY`. A worker holds no more than that, so that its heartbeats stay valid."""
    return 2 * concurrency + HELD_BEYOND_CONCURRENCY


class ProgressReport(Message):
    """A worker's report of an attempt's progress, fenced like an outcome by (`attempt`, `token`)."""

    id: JobId
    attempt: int = Field(ge=1, le=MAX_ATTEMPT)
    token: str = Field(max_length=128)
    #: Counts the attempt's reports from 1: a report older than the stored one is dropped.
    seq: int = Field(ge=1, le=2**53)
    value: JSONValue = None


class Progress(Stored):
    """What the `progress` bucket keeps for a job: its latest accepted report, stamped by intake.

    A newer report replaces it whole (it is not modified), so what an entry keeps of unknown fields
    matters only to its readers: they must not refuse it."""

    attempt: int
    seq: int
    value: JSONValue = None
    at_ms: int


class JobChanged(Message):
    """Announced on `changed(job id)` after every stored write of the job's record (a hint, not the truth)."""

    state: JobState
    attempt: int = 0


class Heartbeat(Message):
    """A worker session's periodic announcement (core NATS `jetsched.hb.<session>`)."""

    worker: str = Field(min_length=1, max_length=128)
    session: SessionName
    capabilities: tuple[CapabilityName, ...] = Field(max_length=256)
    labels: Labels = Field(default_factory=dict)
    concurrency: int = Field(ge=1, le=10_000)
    #: `[job id, attempt]` of every job the session holds, running or about to.
    running: tuple[tuple[JobId, int], ...] = ()
    draining: bool = False
    interval_ms: int = Field(ge=10, le=60_000)
    #: Unique per process start. A session id kept across restarts (a worker identity confined to its
    #: own subjects, docs/security.md) needs it: a new incarnation means the old one's attempts are lost.
    incarnation: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _bounded(self) -> Heartbeat:
        if len(self.running) > max_listed(self.concurrency):
            raise ValueError(
                f"lists {len(self.running)} jobs for a concurrency of {self.concurrency}"
                f" (at most twice that plus {HELD_BEYOND_CONCURRENCY})"
            )
        return self


class Control(Message):
    """A command to one worker session (`jetsched.control.<session>`): cancel an attempt, or drain."""

    op: Literal["cancel", "drain"]
    id: str = ""
    attempt: int = 0


#: Jobs one batch submit may carry (the message itself is bounded by NATS's max_payload, 1 MiB by default).
MAX_BATCH_JOBS = 1000


class BatchRequest(Model):
    """`jetsched.batch.<capability>`: many submits in one message; each item is a submit body."""

    jobs: list[JSON] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class SubmitReply(Message):
    """Intake's answer to a submit, read by clients of any version."""

    id: str
    state: JobState
    duplicate: bool = False


class EmptyRequest(Model):
    """The body of an API that takes no parameters: empty, or `{}`."""


class GetRequest(Model):
    id: JobId


class ListRequest(Model):
    state: JobState | None = None
    capability: CapabilityName | None = None
    limit: int = Field(100, ge=1, le=1000)
    #: Page cursor: the previous page's `next` (its last id, or a place in history).
    after: PageCursor | None = None


class CapabilityRequest(Model):
    capability: CapabilityName


#: The most jobs `max_running` and `max_running_per_key` may allow (beyond that, leave them unset).
MAX_RUNNING_LIMIT = 1_000_000
#: Start rates are between one per 1,000 s and a million per second.
MIN_RATE_PER_S = 0.001
MAX_RATE_PER_S = 1_000_000.0


class QueueSettings(Stored):
    """How one capability's queue is dispatched (the `queues` bucket; `jetsched.api.queues.configure`)."""

    paused: bool = False
    #: Jobs of the capability running at once, fleet-wide.
    max_running: int | None = Field(None, ge=0, le=MAX_RUNNING_LIMIT)
    #: Jobs of one concurrency key running at once, fleet-wide.
    max_running_per_key: int | None = Field(None, ge=0, le=MAX_RUNNING_LIMIT)
    #: Jobs started per second (token bucket of `burst`), for the capability and for each key.
    rate_per_s: float | None = Field(None, ge=MIN_RATE_PER_S, le=MAX_RATE_PER_S)
    rate_per_key_per_s: float | None = Field(None, ge=MIN_RATE_PER_S, le=MAX_RATE_PER_S)
    burst: int = Field(1, ge=1, le=100_000)
    #: `strict`: a higher priority always goes first. `weighted`: priority p gets a share p + 1 of starts,
    #: so low priorities progress under a steady stream of high ones.
    priority_mode: Literal["strict", "weighted"] = "strict"
    #: In strict mode, a ready job gains one priority level per this many milliseconds of waiting.
    aging_ms: int | None = Field(None, ge=1, le=366 * 86_400_000)


class ConfigureRequest(QueueSettings):
    """`queues.configure`: a request, so strict again (the settings it carries are stored whole, as given)."""

    model_config = ConfigDict(extra="forbid")

    capability: CapabilityName


class SessionRequest(Model):
    session: SessionName


class ReviveRequest(Model):
    id: JobId
    #: Further attempts granted; by default the job's own `max_attempts`.
    attempts: int | None = Field(None, ge=1, le=1000)
