"""OpenTelemetry across NATS: W3C trace context (plus baggage) carried in message headers.

One job is one trace: the client's submit span is the root; intake stores the context in the record
(`record.trace`), so every later step — timer, dispatch, the worker's run, the reaper — starts its span as a
child of it, whichever process and however much later. With no SDK configured the spans are no-ops but the
context still passes through unchanged, so a downstream service with tracing on still joins the trace.

Trace context arrives in untrusted headers and is stored with the job, then re-sent with every later
message of it: `traceparent` must have the W3C form, `tracestate` and `baggage` are bounded (`bounds.py`),
and anything else is dropped — a 70 KB baggage must not make every later report of its job too large.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from jetsched.core import bounds

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

tracer = trace.get_tracer("jetsched")
_CONTEXT_KEYS = ("traceparent", "tracestate", "baggage")
#: version 00 (or a later one, read as 00 reads it): trace id, parent id, flags; all-zero ids are invalid.
_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
)
_LIMITS = {"tracestate": bounds.MAX_TRACESTATE_BYTES, "baggage": bounds.MAX_BAGGAGE_BYTES}
#: The environment can name a provider too; it is read once, at start-up, like OpenTelemetry does.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def recording() -> bool:
    """Whether spans are recorded (an SDK is installed); if not, a hot path may skip building a span's
    name and attributes and just pass the context on."""
    # While no provider is set, get_tracer_provider() looks the environment up on every call (~3 µs per
    # span on the hot path); the global it checks first answers the common case for free.
    if trace._TRACER_PROVIDER is None and not _PROVIDER_FROM_ENV:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


#: Outcomes that end an attempt in error (the span's status says so).
_FAILED = frozenset({"failed", "fatal", "timeout", "retry"})


def messaging(
    operation: str, destination: str, message_id: str, size: int | None = None
) -> dict[str, str | int]:
    """OpenTelemetry messaging attributes for a span that sends, receives or processes a NATS message."""
    found: dict[str, str | int] = {
        "messaging.system": "nats",
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        "messaging.message.id": message_id,
    }
    if size is not None:
        found["messaging.message.body.size"] = size
    return found


def outcome_status(status: str, message: str) -> None:
    """Mark the current span as an error when an attempt's outcome is a failure."""
    if status in _FAILED:
        trace.get_current_span().set_status(
            trace.Status(trace.StatusCode.ERROR, f"{status}: {message}"[:256])
        )


def carrier() -> dict[str, str]:
    """The current context as headers (empty when there is none)."""
    headers: dict[str, str] = {}
    if otel_context.get_current():  # an empty context carries nothing: skip the propagators (~20 µs)
        propagate.inject(headers)
    return headers


def clean(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The trace context in `headers` that may be passed on and stored: valid and within bounds."""
    if not headers:
        return {}
    context: dict[str, str] = {}
    parent = headers.get("traceparent")
    if parent is None or len(parent) > 256 or not _TRACEPARENT.match(parent):
        return context  # without a valid parent, state and baggage belong to nothing
    context["traceparent"] = parent
    for key, limit in _LIMITS.items():
        value = headers.get(key)
        if value is not None and len(value.encode()) <= limit:
            context[key] = value
    return context


def span(
    name: str,
    parent: Mapping[str, str] | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
    link: Mapping[str, str] | None = None,
) -> AbstractContextManager[dict[str, str]]:
    """Run a block in a span that continues the trace in `parent` (headers or a stored carrier),
    linked to the span in `link` if given (a retry, to the attempt it retries).

    Yields the headers to send downstream: the new span's context, or `parent`'s own when tracing is off.
    """
    parent = clean(parent)
    if not recording():
        # Spans would be no-ops; pass the (checked) context through (hot path).
        return nullcontext(parent)
    return _span(name, parent, kind, attributes, _links(link))


def _links(carrier: Mapping[str, str] | None) -> list[trace.Link]:
    linked = trace.get_current_span(propagate.extract(clean(carrier))).get_span_context()
    return [trace.Link(linked)] if linked.is_valid else []


def linked_root(
    name: str,
    link: Mapping[str, str] | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> AbstractContextManager[dict[str, str]]:
    """A span that starts a trace of its own, linked to the span in `link` (one job of a batch: its own
    trace, joined to the batch's). Yields its context as headers; with tracing off, `link`'s own."""
    link = clean(link)
    if not recording():
        return nullcontext(link)
    return _root(name, link, kind, attributes)


@contextmanager
def _root(
    name: str, link: Mapping[str, str], kind: SpanKind, attributes: Mapping[str, str | int] | None
) -> Iterator[dict[str, str]]:
    token = otel_context.attach(otel_context.Context())  # no parent: a new trace
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes, links=_links(link)):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            yield headers
    finally:
        otel_context.detach(token)


@contextmanager
def _span(
    name: str,
    parent: Mapping[str, str] | None,
    kind: SpanKind,
    attributes: Mapping[str, str | int] | None,
    links: list[trace.Link],
) -> Iterator[dict[str, str]]:
    ctx = propagate.extract(dict(parent) if parent else {})
    token = otel_context.attach(ctx)
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes, links=links) as current:
            headers: dict[str, str] = {}
            if current.get_span_context().is_valid:
                propagate.inject(headers)
            else:
                propagate.inject(headers, context=ctx)
            yield headers
    finally:
        otel_context.detach(token)
