"""What the client hands back: typed views of the wire's replies, with instants as aware datetimes.

The wire keeps epoch milliseconds (`created_at_ms`); these views turn each instant into a UTC `datetime`
named without the suffix (`created_at`). They ignore fields they do not know, unlike the wire models: the
protocol grows additively, and an older client must go on reading a newer server's records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from jetsched.core.models import TERMINAL, JobState


def _instant(key: str) -> str | None:
    """The view's name for a wire field holding an instant in epoch ms (`at_ms`, `x_at_ms`), else None."""
    if key in ("at_ms", "ready_since_ms") or key.endswith("_at_ms"):
        return key.removesuffix("_ms")
    return None


class View(BaseModel):
    """A reply read for Python: instants as datetimes, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _datetimes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = _instant(key)
            if name is None:
                out[key] = value
            else:
                out[name] = None if value is None else datetime.fromtimestamp(value / 1000, UTC)
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


class JobProgress(View):
    """What the job's latest attempt last reported with `job.progress()`."""

    attempt: int
    #: The report's number within its attempt.
    seq: int
    value: Any = None
    #: When intake stored it.
    at: datetime


class JobLease(View):
    """Which worker session holds the running attempt."""

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
