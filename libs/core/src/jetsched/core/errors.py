"""jetsched's errors. Validation errors on the wire are data (`ApiError`), not exceptions.

    JetschedError
    ├── TransitionError            a state-machine verb does not apply to the record as it is
    │   ├── Fenced                 the report's attempt/token is not the record's current lease
    │   └── NotDue                 a timer fired before the record's due time
    ├── Conflict                   a CAS lost to another writer (re-read and re-decide)
    └── NotFound                   no record with that id

The SDK's behavioural exceptions (`Retry`, `Fatal`) live in `jetsched.sdk`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class JetschedError(Exception):
    """Base of every jetsched exception."""


class TransitionError(JetschedError):
    """The verb does not apply to the record in its current state."""


class Fenced(TransitionError):
    """A report from an attempt that no longer holds the lease."""


class NotDue(TransitionError):
    """The record's due time has not been reached."""


class Conflict(JetschedError):
    """A compare-and-set lost: the record changed since it was read."""


class NotFound(JetschedError):
    """No record with that id."""


class ErrorCode(StrEnum):
    """Codes of structured errors returned on the wire."""

    #: The body is not JSON (or not UTF-8).
    INVALID_JSON = "invalid_json"
    #: A field has a wrong type or value, or is unknown.
    INVALID_FIELD = "invalid_field"
    #: The body exceeds the configured size limit.
    PAYLOAD_TOO_LARGE = "payload_too_large"
    #: The capability in the subject is not a valid name.
    INVALID_CAPABILITY = "invalid_capability"
    #: No job (or schedule) with that id.
    NOT_FOUND = "not_found"
    #: A schedule with that id exists (or existed: ids are never reused).
    ALREADY_EXISTS = "already_exists"
    #: The operation does not apply to the job's current state.
    INVALID_STATE = "invalid_state"
    #: An unknown API name.
    UNKNOWN_API = "unknown_api"
    #: Storage did not answer; the request may be retried.
    UNAVAILABLE = "unavailable"


class ApiError(BaseModel):
    """`{"code", "message", "field"}` — the body of every error reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ErrorCode
    message: str
    field: str | None = None
