"""Submit validation: every bad input gets one structured error naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from jetsched.core.errors import ApiError, ErrorCode
from jetsched.core.models import ConfigureRequest, JobRequest
from jetsched.core.schedules import PreviewRequest, ScheduleSpec
from jetsched.core.workflows import WorkflowRequest
from jetsched.intake.validate import parse, parse_batch, parse_submit

LIMIT = 1024


def error(capability: str, body: bytes) -> ApiError:
    result = parse_submit(capability, body, LIMIT)
    assert isinstance(result, ApiError), result
    return result


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{not json", ErrorCode.INVALID_JSON, None),
        (b'{"payload": 1', ErrorCode.INVALID_JSON, None),
        (b"\xff\xfe", ErrorCode.INVALID_JSON, None),
        (b"[1, 2]", ErrorCode.INVALID_JSON, None),
        (b'"text"', ErrorCode.INVALID_JSON, None),
        (b'{"priority": 11}', ErrorCode.INVALID_FIELD, "priority"),
        (b'{"priority": "urgent"}', ErrorCode.INVALID_FIELD, "priority"),
        (b'{"colour": "red"}', ErrorCode.INVALID_FIELD, "colour"),
        (b'{"backoff": {"factor": 0.5}}', ErrorCode.INVALID_FIELD, "backoff.factor"),
        (b'{"run_at": "next tuesday"}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"delay_ms": 1, "run_at": "2030-01-01T00:00:00Z"}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"max_attempts": 1e9}', ErrorCode.INVALID_FIELD, "max_attempts"),
        # Strict types: what a client would be surprised to see accepted.
        (b'{"priority": "5"}', ErrorCode.INVALID_FIELD, "priority"),
        (b'{"priority": true}', ErrorCode.INVALID_FIELD, "priority"),
        (b'{"timeout_s": Infinity}', ErrorCode.INVALID_FIELD, "timeout_s"),
        (b'{"payload": {"x": NaN}}', ErrorCode.INVALID_FIELD, "payload"),
        (b'{"run_at": 1893456000}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"run_at": "1893456000"}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"run_at": "2030-01-01 00:00:00Z"}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"run_at": "2030-01-01T00:00:00+0100"}', ErrorCode.INVALID_FIELD, "run_at"),
        (b'{"run_at": "2030-01-01T00:00:00"}', ErrorCode.INVALID_FIELD, "run_at"),
        # Values no component could encode later.
        (b'{"payload": 18446744073709551616}', ErrorCode.INVALID_FIELD, "payload"),
        (b'{"payload": ' + b"[" * 65 + b"]" * 65 + b"}", ErrorCode.INVALID_FIELD, "payload"),
        (b'{"labels": {"gpu": 1}}', ErrorCode.INVALID_FIELD, "labels.gpu"),
    ],
)
def test_bad_bodies(body: bytes, code: ErrorCode, field: str | None) -> None:
    """Malformed JSON, wrong types, unknown and out-of-range fields each get a code and a field."""
    got = error("email", body)
    assert got.code is code
    assert got.message
    if field is not None:
        assert got.field == field


def test_unknown_field_is_named() -> None:
    """An unknown field's message says which."""
    assert error("email", b'{"priorty": 3}').message == "unknown field 'priorty'"


def test_oversized_is_refused_before_parsing() -> None:
    """A body over the limit is refused by size, however broken its content."""
    got = error("email", b"{" + b"x" * LIMIT)
    assert got.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert str(LIMIT) in got.message


@pytest.mark.parametrize("capability", ["", "a..b", "a*", "x" * 200])
def test_bad_capability(capability: str) -> None:
    """The capability from the subject is checked first."""
    got = error(capability, b"{}")
    assert (got.code, got.field) == (ErrorCode.INVALID_CAPABILITY, "capability")


def test_empty_body_means_defaults() -> None:
    """No body is a job with no payload and default options."""
    assert parse_submit("email", b"", LIMIT) == JobRequest()


def test_deeply_nested_payload_does_not_crash() -> None:
    """Hostile nesting is an error or a value, never an exception."""
    body = b'{"payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    result = parse_submit("email", body, 100_000)
    assert isinstance(result, ApiError | JobRequest)


@pytest.mark.parametrize(
    ("capability", "body", "code", "field"),
    [
        ("bad capability", b'{"jobs": [{}]}', ErrorCode.INVALID_CAPABILITY, "capability"),
        ("a", b"[{}]", ErrorCode.INVALID_JSON, None),
        ("a", b'{"jobs": []}', ErrorCode.INVALID_FIELD, "jobs"),
        ("a", b'{"jobs": {}}', ErrorCode.INVALID_FIELD, "jobs"),
        ("a", b'{"jobs": [{}], "priority": 1}', ErrorCode.INVALID_FIELD, "priority"),
        ("a", orjson.dumps({"jobs": [{}] * 1001}), ErrorCode.INVALID_FIELD, "jobs"),
    ],
)
def test_bad_batches_are_refused_whole(
    capability: str, body: bytes, code: ErrorCode, field: str | None
) -> None:
    result = parse_batch(capability, body, LIMIT)
    assert isinstance(result, ApiError), result
    assert (result.code, result.field) == (code, field)


def test_batch_items_are_checked_one_by_one() -> None:
    """Each item is validated as a submit of its own, size limit included; its error names the item."""
    body = orjson.dumps({"jobs": [{"priority": 9}, {"priority": 11}, "text", {"payload": "x" * LIMIT}, {}]})
    items = parse_batch("a", body, LIMIT)
    assert isinstance(items, list)
    assert [item.priority for item in items if isinstance(item, JobRequest)] == [9, 5]
    errors = [(item.code, item.field) for item in items if isinstance(item, ApiError)]
    assert errors == [
        (ErrorCode.INVALID_FIELD, "jobs.1.priority"),
        (ErrorCode.INVALID_JSON, "jobs.2"),
        (ErrorCode.PAYLOAD_TOO_LARGE, "jobs.3"),
    ]


def test_messages_are_our_own_words() -> None:
    """Errors from our own checks read as sentences, without pydantic's 'Value error,' prefix."""
    got = error("email", b'{"delay_ms": 1, "run_at": "2030-01-01T00:00:00Z"}')
    assert got.message == "give delay_ms or run_at, not both"


def test_offsets_and_fractions_of_rfc3339_pass() -> None:
    """`Z`, `+01:00` and fractional seconds are RFC 3339 and accepted."""
    for run_at in ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.250+01:00", "2030-01-01t00:00:00z"):
        assert isinstance(parse_submit("email", orjson.dumps({"run_at": run_at}), LIMIT), JobRequest)


def test_headers_count_in_the_limit() -> None:
    """A small body with headers that take it past the limit is refused before parsing."""
    got = parse_submit("email", b"{}", LIMIT, headers=LIMIT)
    assert isinstance(got, ApiError)
    assert got.code is ErrorCode.PAYLOAD_TOO_LARGE


def test_batch_item_past_64_bits_is_its_own_error() -> None:
    """An item no encoder takes fails alone; the other items stand."""
    items = parse_batch("email", b'{"jobs": [{"payload": 1}, {"payload": 99999999999999999999}]}', LIMIT)
    assert not isinstance(items, ApiError)
    assert isinstance(items[0], JobRequest)
    assert isinstance(items[1], ApiError)
    assert items[1].field == "jobs.1"


JOB_SPEC: dict[str, Any] = {"id": "s1", "every_ms": 60_000, "job": {"capability": "a"}}
FLOW_SPEC: dict[str, Any] = {
    "id": "s1",
    "every_ms": 60_000,
    "workflow": {"steps": [{"name": "a", "capability": "a"}]},
}


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (JobRequest, {"backoff": {"base_ms": 1, "jiter": 0.5}}, "backoff.jiter"),
        (WorkflowRequest, {"steps": [{"name": "a", "capability": "a", "prority": 3}]}, "steps.0.prority"),
        (
            WorkflowRequest,
            {"steps": [{"name": "a", "capability": "a", "backoff": {"factr": 2}}]},
            "steps.0.backoff.factr",
        ),
        (ScheduleSpec, {**JOB_SPEC, "pased": True}, "pased"),
        (ScheduleSpec, {**JOB_SPEC, "job": {"capability": "a", "delay_ms": 5}}, "job.delay_ms"),
        (ScheduleSpec, {**JOB_SPEC, "job": {"capability": "a", "backoff": {"x": 1}}}, "job.backoff.x"),
        (ScheduleSpec, {**FLOW_SPEC, "workflow": {**FLOW_SPEC["workflow"], "key": "k"}}, "workflow.key"),
        (
            ScheduleSpec,
            {**FLOW_SPEC, "workflow": {"steps": [{"name": "a", "capability": "a", "x": 1}]}},
            "workflow.steps.0.x",
        ),
        (PreviewRequest, {"spec": {**JOB_SPEC, "job": {"capability": "a", "x": 1}}}, "spec.job.x"),
        (ConfigureRequest, {"capability": "a", "max_runing": 3}, "max_runing"),
    ],
)
def test_unknown_fields_are_refused_at_every_depth(
    model: type[BaseModel], body: dict[str, Any], field: str
) -> None:
    """The shapes a request shares with stored records (which keep unknown fields when read back from
    storage: a backoff, a schedule's spec and templates, a workflow's steps, queue settings) refuse them
    in a request: a typo is an error wherever it is."""
    got = parse(model, orjson.dumps(body), 64 * 1024)
    assert isinstance(got, ApiError), got
    assert (got.code, got.field, got.message) == (ErrorCode.INVALID_FIELD, field, f"unknown field '{field}'")


def test_a_batch_item_s_nested_unknown_field_is_refused() -> None:
    """A batch item is read at the same door: an unknown field in its backoff is its error."""
    items = parse_batch("a", orjson.dumps({"jobs": [{}, {"backoff": {"nope": 1}}]}), LIMIT)
    assert isinstance(items, list)
    assert isinstance(items[0], JobRequest)
    assert isinstance(items[1], ApiError)
    assert (items[1].field, items[1].message) == ("jobs.1.backoff.nope", "unknown field 'backoff.nope'")
