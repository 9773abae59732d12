"""Middleware: code that wraps every submit (client side) and every handler run (worker side).

Each hook receives the call and `call_next`, and returns what `call_next` returned (or raises), like
temporal's interceptors and Starlette's middleware; a subclass overrides only the hooks it needs:

    class Audit(Middleware):
        async def submit(self, call, call_next):
            call.headers["x-tenant"] = tenant.get()      # travels with the request
            return await call_next(call)

        async def run(self, job, call_next):
            started = time.monotonic()
            try:
                return await call_next(job)             # raises what the handler raised (Retry, …)
            finally:
                log.info("ran %s in %.3fs", job.id, time.monotonic() - started)

    Client(url, middleware=[Audit()]); Worker(tasks, middleware=[Audit()])

The first in the list is the outermost. The client's own tracing is a middleware (`Tracing`, always
outermost, so yours run inside its span). The worker's run span and handler-time metric stay in the
worker, around the hooks: the span must also enclose the outcome report (its headers carry the trace to
the reaper), and the metric is labelled with the outcome, which is decided after every hook returned.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from jetsched.bus import tracing

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._tasks import Job

T = TypeVar("T")


@dataclass(slots=True)
class Submit:
    """One submit request on its way out: hooks may change `body` and `headers`, not where it goes."""

    #: `job` (`Client.submit`), `batch` (`submit_many`) or `workflow` (`submit_workflow`).
    kind: Literal["job", "batch", "workflow"]
    capability: str
    subject: str
    #: The request as it goes on the wire (docs/protocol.md).
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Middleware:
    """Hooks around submits and runs; each default passes the call on unchanged."""

    async def submit(self, call: Submit, call_next: Callable[[Submit], Awaitable[Any]]) -> Any:
        """Around a submit request; returns the decoded reply. Runs once per request sent: a keyed submit
        resent through a storage failover passes through again."""
        return await call_next(call)

    async def run(self, job: Job, call_next: Callable[[Job], Awaitable[Any]]) -> Any:
        """Around a handler (inside the attempt's timeout); returns its result or raises its exception."""
        return await call_next(job)


def chained(
    hooks: Sequence[Callable[[T, Callable[[T], Awaitable[Any]]], Awaitable[Any]]],
    last: Callable[[T], Awaitable[Any]],
) -> Callable[[T], Awaitable[Any]]:
    """`hooks[0]` wrapping `hooks[1]` … wrapping `last`."""
    call = last
    for hook in reversed(hooks):
        call = functools.partial(hook, call_next=call)
    return call


class Tracing(Middleware):
    """A PRODUCER span per submit, whose context travels in the request's headers (docs/operations.md)."""

    async def submit(self, call: Submit, call_next: Callable[[Submit], Awaitable[Any]]) -> Any:
        if not tracing.recording():
            # No span to make: only the application's own trace context, if any, goes along (hot path).
            call.headers.update(tracing.clean(tracing.carrier()))
            return await call_next(call)
        name = {
            "job": f"jetsched submit {call.capability}",
            "batch": f"jetsched submit batch {call.capability}",
            "workflow": "jetsched submit workflow",
        }[call.kind]
        attributes: dict[str, str | int] = {
            "jetsched.capability": call.capability,
            **tracing.messaging("publish", call.subject, str(call.body.get("key") or "")),
        }
        with tracing.span(name, tracing.carrier(), SpanKind.PRODUCER, attributes) as headers:
            call.headers.update(headers)
            reply = await call_next(call)
            if isinstance(reply, dict) and isinstance(reply.get("id"), str):
                trace.get_current_span().set_attribute("jetsched.job_id", reply["id"])
            return reply
