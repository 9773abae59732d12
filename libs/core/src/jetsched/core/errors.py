"""jetsched's errors. Validation errors on the wire are data (`ApiError`), not exceptions.

    JetschedError
    ├── TransitionError            a state-machine verb does not apply to the record as it is
    │   ├── Fenced                 the report's attempt/token is not the record's current lease
    │   └── NotDue                 a timer fired before the record's due time
    ├── Conflict                   a CAS lost to another writer (re-read and re-decide)
    ├── NotFound                   no record with that id
    └── Poisoned                   a stored item cannot be decoded (quarantine it, skip it)

    FieldError (a ValueError)      a check across fields inside a model, naming the field to blame

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


class Poisoned(JetschedError):
    """A stored item that cannot be decoded: it is quarantined and skipped, never a crash."""

    def __init__(self, bucket: str, key: str, revision: int, reason: str) -> None:
        super().__init__(f"{bucket}/{key} (revision {revision}) cannot be read: {reason}")
        self.bucket = bucket
        self.key = key
        self.revision = revision
        self.reason = reason


class FieldError(ValueError):
    """A check that spans fields, raised inside a model validator, naming the field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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
    #: Storage did not answer, or the service is too busy to take the request; it may be retried.
    UNAVAILABLE = "unavailable"
    #: The answer would be over the server's message limit (ask for a smaller page).
    REPLY_TOO_LARGE = "reply_too_large"
    #: Something stored cannot be read or acted on; it is quarantined (`jetsched doctor`).
    QUARANTINED = "quarantined"
    #: The service failed to handle the request (a bug: the service logs it); retrying may not help.
    INTERNAL = "internal"


class ApiError(BaseModel):
    """`{"code", "message", "field"}` — the body of every error reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ErrorCode
    message: str
    field: str | None = None

    def body(self) -> bytes:
        """The reply that carries it: `{"error": {"code", "message", "field"}}`."""
        return b'{"error":' + self.model_dump_json().encode() + b"}"
