"""Log lines carry the trace and span of the work they were logged for."""

from __future__ import annotations

import logging

import orjson
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from jetsched.bus.logs import JsonFormatter


def line(record: logging.LogRecord) -> dict[str, object]:
    parsed: dict[str, object] = orjson.loads(JsonFormatter("reaper").format(record))
    return parsed


def test_a_line_logged_inside_a_span_names_its_trace() -> None:
    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
    record = logging.makeLogRecord({"msg": "rescued job", "job": "01J"})
    with trace.use_span(NonRecordingSpan(context)):
        entry = line(record)
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "b7ad6b7169203331"
    assert (entry["msg"], entry["job"], entry["service"]) == ("rescued job", "01J", "reaper")


def test_a_line_outside_any_span_has_none() -> None:
    entry = line(logging.makeLogRecord({"msg": "started"}))
    assert "trace_id" not in entry
