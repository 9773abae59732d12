"""Every parameter the dashboard takes from a browser, checked before it reaches NATS (pure).

A URL or a form is hostile input like any other: ids must be ULIDs (they end up in `jetsched.api`
request bodies, never in subjects, but intake should not have to be the first to say no), capabilities
follow the wire rules (`core.models.check_capability`), numbers are digits within bounds, and unknown
query parameters are refused rather than ignored, as the wire models refuse unknown fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jetsched.core.ids import CURSOR_RE, ULID_RE
from jetsched.core.models import SESSION_RE, JobState, check_capability

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

#: The most records one list endpoint returns (intake allows 1,000; a browser table needs far fewer).
MAX_LIMIT = 200
#: The most fire times a schedule preview shows.
MAX_PREVIEW = 50
#: Error type filters are compared with stored types, which are cut at 256 bytes.
MAX_ERROR_TYPE = 256
WORKFLOW_STATES = frozenset({"running", "succeeded", "failed", "cancelled"})
JOB_STATES = frozenset(state.value for state in JobState)


class BadParam(ValueError):
    """A parameter the dashboard refuses; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        """The refusal as the wire contract's structured error."""
        return {"error": {"code": "invalid_field", "message": self.message, "field": self.field}}


def job_id(value: str, field: str = "id") -> str:
    if not ULID_RE.match(value):
        raise BadParam(field, "a job id is a ULID: 26 characters of Crockford base32")
    return value


def cursor(value: str) -> str:
    """A page's `next`: a job id, or a place in the history of finished jobs."""
    if not CURSOR_RE.match(value):
        raise BadParam("after", "a cursor is a job id (a ULID) or the `next` of a previous page")
    return value


def workflow_id(value: str) -> str:
    return job_id(value)


def capability(value: str, field: str = "capability") -> str:
    try:
        return check_capability(value)
    except ValueError as exc:
        raise BadParam(field, str(exc)) from None


def session(value: str) -> str:
    if not SESSION_RE.match(value):
        raise BadParam("session", "a session is 1-64 characters of letters, digits, '_' and '-'")
    return value


def schedule_id(value: str) -> str:
    if not SESSION_RE.match(value):  # the same alphabet and length: 1-64 of A-Z a-z 0-9 - _
        raise BadParam("id", "a schedule id is 1-64 characters of letters, digits, '_' and '-'")
    return value


def count(value: str | None, field: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 7 or not 1 <= int(value) <= maximum:
        raise BadParam(field, f"a whole number from 1 to {maximum}")
    return int(value)


def error_type(value: str) -> str:
    if not value or len(value.encode()) > MAX_ERROR_TYPE or not value.isprintable():
        raise BadParam("error_type", "an error type is 1-256 bytes of printable characters")
    return value


def one_of(value: str, allowed: Collection[str], field: str) -> str:
    if value not in allowed:
        raise BadParam(field, f"one of {', '.join(sorted(allowed))}")
    return value


def query(params: Mapping[str, str], allowed: Collection[str]) -> dict[str, str]:
    """The query string as a dict, refusing unknown and repeated names."""
    names = list(params.keys())
    for name in names:
        if name not in allowed:
            raise BadParam(name, "unknown parameter")
    if len(set(names)) != len(names):
        raise BadParam(next(n for n in names if names.count(n) > 1), "given more than once")
    return {name: params[name] for name in names}


def job_filters(params: Mapping[str, str]) -> dict[str, str | int]:
    """`state`, `capability`, `limit`, `after` of a job list."""
    given = query(params, ("state", "capability", "limit", "after"))
    body: dict[str, str | int] = {"limit": count(given.get("limit"), "limit", 50, MAX_LIMIT)}
    if "state" in given:
        body["state"] = one_of(given["state"], JOB_STATES, "state")
    if "capability" in given:
        body["capability"] = capability(given["capability"])
    if "after" in given:
        body["after"] = cursor(given["after"])
    return body


def dead_filters(params: Mapping[str, str]) -> tuple[dict[str, str | int], str | None]:
    """A dead-letter page (`capability`, `limit`, `after`) and the error type to keep, if any."""
    given = query(params, ("capability", "limit", "after", "error_type"))
    body: dict[str, str | int] = {"limit": count(given.get("limit"), "limit", 50, MAX_LIMIT)}
    if "capability" in given:
        body["capability"] = capability(given["capability"])
    if "after" in given:
        body["after"] = job_id(given["after"], "after")
    kind = error_type(given["error_type"]) if "error_type" in given else None
    return body, kind


def workflow_filters(params: Mapping[str, str]) -> dict[str, str | int]:
    given = query(params, ("state", "limit", "after"))
    body: dict[str, str | int] = {"limit": count(given.get("limit"), "limit", 50, MAX_LIMIT)}
    if "state" in given:
        body["state"] = one_of(given["state"], WORKFLOW_STATES, "state")
    if "after" in given:
        body["after"] = cursor(given["after"])
    return body


def bulk(body: object) -> tuple[str | None, str]:
    """A bulk dead-letter action's body: `{"error_type", "capability"?}` → (capability, error type)."""
    if not isinstance(body, dict):
        raise BadParam("body", "a JSON object")
    unknown = set(body) - {"error_type", "capability"}
    if unknown:
        raise BadParam(sorted(unknown)[0], "unknown field")
    kind, cap = body.get("error_type"), body.get("capability")
    if not isinstance(kind, str):
        raise BadParam("error_type", "required: the error type whose dead letters to act on")
    if cap is not None and not isinstance(cap, str):
        raise BadParam("capability", "a capability name")
    return (None if cap is None else capability(cap)), error_type(kind)
