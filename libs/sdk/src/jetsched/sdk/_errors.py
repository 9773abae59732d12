"""Exceptions of the SDK.

Exception
├── Retry              raised by a handler: run this job again after `delay` seconds (or snooze it)
├── Fatal              raised by a handler: do not retry; the job is dead at once
├── JetschedApiError   a submit or API request was refused (`code`, `message`, `field`)
├── JobFailed          the job awaited through a handle ended dead or cancelled (`job`)
└── SessionConflict    another worker process runs under this worker's session (identity)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import JobInfo


class Retry(Exception):
    """Run the job again after exactly `delay` seconds (no backoff).

    By default this spends an attempt, like any failure: it is recorded in the job's errors (kind
    `retry`), and the job ends dead if it was the last one. With `spend_attempt=False` it is a *snooze*
    (Oban's word): the attempt does not count, nothing is recorded as an error, and the job may snooze any
    number of times (`JobInfo.snoozes` counts them) — for "not yet" rather than "failed": a rate limit, a
    resource that is not ready.
    """

    def __init__(self, delay: float = 0.0, message: str = "", *, spend_attempt: bool = True) -> None:
        super().__init__(message or (f"retry in {delay}s" if spend_attempt else f"snooze for {delay}s"))
        self.delay = delay
        self.spend_attempt = spend_attempt


class Fatal(Exception):
    """Do not retry this job; it goes to the dead letters with this error."""


class JetschedApiError(Exception):
    """jetsched refused a request; `code` and `field` say what and where."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field

    @classmethod
    def from_body(cls, error: dict[str, Any]) -> JetschedApiError:
        """From a reply's `{"code", "message", "field"}`."""
        return cls(error.get("code", "unknown"), error.get("message", ""), error.get("field"))


class JobFailed(Exception):
    """The job ended without a result (dead or cancelled); `job` is its record, `job.last_error` why."""

    def __init__(self, job: JobInfo) -> None:
        error = job.last_error
        why = f": {error.type}: {error.message}" if error is not None else ""
        super().__init__(f"job {job.id} ended {job.state}{why}")
        self.job = job


class SessionConflict(Exception):
    """Another process heartbeats under this worker's session: one identity, one process at a time."""
