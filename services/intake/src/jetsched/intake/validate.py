"""Request bytes → a valid request model, or one structured error. Pure; hostile input is expected.

The size limit is checked before any parsing, so an oversized body costs nothing but its length. Parsing
goes straight from bytes through pydantic (no intermediate dict), and the first problem found is reported
as `{code, message, field}` with the field as a dotted path (`backoff.factor`).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from jetsched.core.errors import ApiError, ErrorCode
from jetsched.core.models import JobRequest, check_capability

M = TypeVar("M", bound=BaseModel)

_JSON_ERRORS = {"json_invalid", "json_type"}


def parse(model: type[M], data: bytes, max_bytes: int) -> M | ApiError:
    """Validate `data` as `model`; an empty body means `{}`."""
    if len(data) > max_bytes:
        return ApiError(
            code=ErrorCode.PAYLOAD_TOO_LARGE,
            message=f"the request is {len(data)} bytes; the limit is {max_bytes}",
        )
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as exc:
        return from_validation(exc)


def from_validation(exc: ValidationError) -> ApiError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if kind in _JSON_ERRORS:
        return ApiError(code=ErrorCode.INVALID_JSON, message=f"the body is not valid JSON: {first['msg']}")
    if kind == "model_type":
        return ApiError(code=ErrorCode.INVALID_JSON, message="the body must be a JSON object", field=field)
    if kind == "extra_forbidden":
        return ApiError(code=ErrorCode.INVALID_FIELD, message=f"unknown field '{field}'", field=field)
    return ApiError(code=ErrorCode.INVALID_FIELD, message=first["msg"], field=field)


def parse_submit(capability: str, data: bytes, max_bytes: int) -> JobRequest | ApiError:
    """Validate a submit: the capability (from the subject) and the body."""
    try:
        check_capability(capability)
    except ValueError as exc:
        return ApiError(code=ErrorCode.INVALID_CAPABILITY, message=str(exc), field="capability")
    return parse(JobRequest, data, max_bytes)
