"""One job is one trace: client submit → intake → dispatch → worker run → reaper, across NATS headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Job, Tasks, chain, step

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process; every test using it shares one exporter.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_one_trace_per_job(spans: InMemorySpanExporter, stack: Stack, nats_server: NatsServer) -> None:
    """Every span of a delayed job that fails once shares the submit span's trace id."""
    tasks = Tasks()
    seen: list[int] = []

    @tasks.task("traced")
    async def traced(job: Job) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        if job.attempt == 1:
            raise RuntimeError("once")

    tracer = trace.get_tracer("test")
    async with Client(nats_server.url) as client, running_worker(tasks, nats_server.url):
        with tracer.start_as_current_span("user request") as root:
            reply = await client.submit("traced", delay=0.05, backoff={"base_ms": 20})
        await client.wait(reply.id)
        await eventually(lambda: sum(s.name == "jetsched outcome" for s in spans.get_finished_spans()) == 2)

    trace_id = root.get_span_context().trace_id
    names = [
        s.name for s in spans.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id
    ]
    for expected in (
        "jetsched submit traced",
        "jetsched submit",
        "jetsched due",
        "jetsched dispatch",
        "jetsched run traced",
        "jetsched outcome",
    ):
        assert expected in names, (expected, names)
    assert names.count("jetsched run traced") == 2
    assert seen == [trace_id, trace_id]
    others = {s.context.trace_id for s in spans.get_finished_spans() if s.context is not None} - {trace_id}
    assert not others


async def test_one_trace_per_workflow(
    spans: InMemorySpanExporter, stack: Stack, nats_server: NatsServer
) -> None:
    """Every span of every step of a workflow — a chain into a map and a fan-in after it — shares the
    trace of the span the workflow was submitted under; its handlers run in that trace."""
    tasks = Tasks()
    seen: list[int] = []

    @tasks.task("listing")
    async def listing(job: Job) -> list[int]:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return [1, 2, 3]

    @tasks.task("each")
    async def each(job: Job) -> int:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return int(job.item) * 10

    @tasks.task("total")
    async def total(job: Job) -> int:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return sum(job.parents["each"])

    flow = chain(step("list", "listing"), step("each", "each", map_over="list"), step("total", "total"))
    tracer = trace.get_tracer("test")
    async with Client(nats_server.url) as client, running_worker(tasks, nats_server.url):
        with tracer.start_as_current_span("user request") as root:
            reply = await client.submit_workflow(flow)

        async def done() -> bool:
            return (await client.workflow(reply.id)).state == "succeeded"

        await eventually(done, timeout=20, what="the workflow succeeded")
        # The last outcome's span ends after its CAS; the view can be read just before.
        await eventually(lambda: sum(s.name == "jetsched outcome" for s in spans.get_finished_spans()) == 5)

    trace_id = root.get_span_context().trace_id
    finished = [s for s in spans.get_finished_spans() if s.context is not None]
    names = [s.name for s in finished if s.context.trace_id == trace_id]
    assert "jetsched workflow submit" in names, names
    assert names.count("jetsched run listing") == 1
    assert names.count("jetsched run each") == 3
    assert names.count("jetsched run total") == 1
    assert names.count("jetsched dispatch") == 5
    assert names.count("jetsched outcome") == 5
    assert seen == [trace_id] * 5
    assert {s.context.trace_id for s in finished} == {trace_id}
