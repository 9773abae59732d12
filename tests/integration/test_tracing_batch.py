"""A batch submit makes one trace per job, each linked to the batch's span (not one trace for all)."""

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
from jetsched.sdk import Client, Job, Tasks

_exporter = InMemorySpanExporter()
_installed: list[bool] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # One SDK provider per process (another test module may have installed it): add our exporter once.
    if not _installed:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _installed.append(True)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_each_job_of_a_batch_is_its_own_trace(
    spans: InMemorySpanExporter, stack: Stack, nats_server: NatsServer
) -> None:
    tasks = Tasks()

    @tasks.task("batched")
    async def batched(job: Job) -> None:
        return None

    async with Client(nats_server.url) as client, running_worker(tasks, nats_server.url):
        replies = await client.submit_many("batched", [1, 2, 3])
        for reply in replies:
            assert not isinstance(reply, Exception)
            await client.wait(reply.id)
        await eventually(lambda: sum(s.name == "jetsched outcome" for s in spans.get_finished_spans()) == 3)

    finished = spans.get_finished_spans()
    (batch,) = [s for s in finished if s.name == "jetsched submit batch"]
    jobs = [s for s in finished if s.name == "jetsched submit"]
    assert len(jobs) == 3
    assert batch.context is not None
    traces = set()
    for job in jobs:
        assert job.context is not None
        assert job.parent is None  # a root of its own trace
        assert [link.context.span_id for link in job.links] == [batch.context.span_id]
        traces.add(job.context.trace_id)
    assert len(traces) == 3
    assert batch.context.trace_id not in traces
    # Each job's run and outcome live in that job's trace.
    for name in ("jetsched run batched", "jetsched outcome"):
        assert {s.context.trace_id for s in finished if s.name == name and s.context} == traces


async def test_a_cron_fire_is_a_span_its_job_continues(
    spans: InMemorySpanExporter, stack: Stack, nats_server: NatsServer
) -> None:
    """A schedule's fire is a `jetsched fire <schedule>` span; the job it made runs in its trace."""
    tasks = Tasks()

    @tasks.task("fired")
    async def fired(job: Job) -> None:
        return None

    async with Client(nats_server.url) as client, running_worker(tasks, nats_server.url):
        await client.create_schedule("beat", "fired", every=1.0)
        await eventually(
            lambda: any(s.name == "jetsched outcome" for s in spans.get_finished_spans()), timeout=15
        )
        await client.schedule("beat", "pause")

    finished = spans.get_finished_spans()
    fire = next(s for s in finished if s.name == "jetsched fire beat")
    assert fire.context is not None
    assert fire.attributes is not None
    assert fire.attributes["jetsched.schedule_id"] == "beat"
    job_id = fire.attributes["jetsched.job_id"]
    dispatch = next(
        s
        for s in finished
        if s.name == "jetsched dispatch" and s.attributes and s.attributes["jetsched.job_id"] == job_id
    )
    assert dispatch.parent is not None
    assert dispatch.parent.span_id == fire.context.span_id
    run = next(
        s
        for s in finished
        if s.name == "jetsched run fired" and s.attributes and s.attributes["jetsched.job_id"] == job_id
    )
    assert run.context is not None
    assert run.context.trace_id == fire.context.trace_id
