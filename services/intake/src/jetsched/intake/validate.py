"""Request bytes → a valid request model, or one structured error. Pure; hostile input is expected.

The size limit is checked before any parsing, so an oversized body costs nothing but its length. Parsing
goes straight from bytes through pydantic (no intermediate dict), and the first problem found is reported
as `{code, message, field}` with the field as a dotted path (`backoff.factor`).

This is the one door for what clients send, and it reads strictly: no type coercion, and no unknown field
anywhere in the body — also in the shapes a request shares with stored records (`Backoff`, a schedule's
spec, a workflow's steps), which keep unknown fields when read back from storage (`models.Stored`).
"""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from jetsched.core.bounds import check_json
from jetsched.core.errors import ApiError, ErrorCode, FieldError
from jetsched.core.models import BatchRequest, JobRequest, check_capability

M = TypeVar("M", bound=BaseModel)

_JSON_ERRORS = {"json_invalid", "json_type"}


def header_bytes(headers: dict[str, str] | None) -> int:
    """What a message's headers take on the wire (near enough: name, value and separators)."""
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) if headers else 0


def parse(model: type[M], data: bytes, max_bytes: int, headers: int = 0) -> M | ApiError:
    """Validate `data` as `model`; an empty body means `{}`. `headers`: their bytes, counted in the limit."""
    if len(data) + headers > max_bytes:
        return ApiError(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            message=f"the request is {len(data) + headers} bytes with its headers; the limit is {max_bytes}",
        )
    try:
        return model.model_validate_json(data or b"{}", strict=True, extra="forbid")
    except ValidationError as exc:
        return from_validation(exc)


def from_validation(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    kind = first["type"]
    message = first["msg"]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        # A check across fields blames one of them; its path is relative to the model that raised it.
        loc.append(cause.field)
    if isinstance(cause, ValueError):
        message = str(cause)  # our own words, not pydantic's "Value error, ..."
    field = ".".join(loc) or None
    if kind in _JSON_ERRORS:
        return ApiError(code=ErrorCode.INVALID_JSON, message=f"the body is not valid JSON: {message}")
    if kind == "model_type" and not loc:
        return ApiError(code=ErrorCode.INVALID_JSON, message="the body must be a JSON object")
    if kind == "extra_forbidden":
        return ApiError(code=ErrorCode.INVALID_FIELD, message=f"unknown field '{field}'", field=field)
    return ApiError(code=ErrorCode.INVALID_FIELD, message=message, field=field)


def capability_error(capability: str) -> ApiError | None:
    """The error for a capability name (taken from the subject) that is not valid, if it is not."""
    try:
        check_capability(capability)
    except ValueError as exc:
        return ApiError(code=ErrorCode.INVALID_CAPABILITY, message=str(exc), field="capability")
    return None


def parse_submit(capability: str, data: bytes, max_bytes: int, headers: int = 0) -> JobRequest | ApiError:
    """Validate a submit: the capability (from the subject) and the body (with its headers' size)."""
    return capability_error(capability) or parse(JobRequest, data, max_bytes, headers)


def parse_batch(capability: str, data: bytes, max_job_bytes: int) -> list[JobRequest | ApiError] | ApiError:
    """Validate a batch: one error for the whole message, or each item validated as a submit of its own.

    An item is checked exactly as a single submit body would be (its own size limit included), and its
    error names the item: `jobs.3.priority`.
    """
    # The message as a whole is bounded by NATS's max_payload; each item by the submit limit below.
    request = capability_error(capability) or parse(BatchRequest, data, len(data))
    if isinstance(request, ApiError):
        return request
    items: list[JobRequest | ApiError] = []
    for n, item in enumerate(request.jobs):
        try:
            body = orjson.dumps(check_json(item))
        except ValueError as exc:  # orjson's errors are ValueErrors too (an integer past 64 bits)
            items.append(ApiError(code=ErrorCode.INVALID_FIELD, message=str(exc), field=f"jobs.{n}"))
            continue
        parsed = parse(JobRequest, body, max_job_bytes)
        if isinstance(parsed, ApiError):
            field = f"jobs.{n}" if parsed.field is None else f"jobs.{n}.{parsed.field}"
            parsed = parsed.model_copy(update={"field": field})
        items.append(parsed)
    return items
