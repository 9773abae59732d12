"""Scaling signals: per-capability queue figures in the stats API and as OpenTelemetry gauges."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Job, Tasks

_reader = InMemoryMetricReader()
_installed = False


def reader() -> InMemoryMetricReader:
    # The global meter provider can be set once per process; the intake's gauges attach to it.
    global _installed
    if not _installed:
        metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))
        _installed = True
    return _reader


def gauge(name: str, capability: str) -> float | None:
    data = reader().get_metrics_data()
    found = None
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        if (point.attributes or {}).get("capability") == capability:
                            assert isinstance(point, NumberDataPoint)
                            found = point.value
    return found


async def test_signals_in_stats_and_metrics(nats_server: NatsServer) -> None:
    """Ready count, oldest ready age and free slots per capability, in the API and as gauges."""
    reader()
    async with Stack(nats_server.url), Client(nats_server.url) as client:
        for _ in range(3):
            await client.submit("signals.none")
        await eventually(lambda: _queue(client, "signals.none", "ready", 3), what="3 ready")
        await eventually(lambda: _age(client, "signals.none"), what="ready jobs age")
        assert gauge("jetsched.queue.ready", "signals.none") == 3
        assert gauge("jetsched.queue.unroutable", "signals.none") == 3
        assert (gauge("jetsched.queue.oldest_ready_age", "signals.none") or 0) > 0

        tasks = Tasks()

        @tasks.task("signals.some")
        async def some(job: Job) -> None: ...

        async with running_worker(tasks, nats_server.url, concurrency=6):
            await eventually(
                lambda: _queue(client, "signals.some", "free_worker_slots", 6), what="6 free slots"
            )
            assert gauge("jetsched.workers.free_slots", "signals.some") == 6


async def _queue(client: Client, capability: str, field: str, value: Any) -> bool:
    signals = (await client.stats()).queues.get(capability)
    return signals is not None and bool(getattr(signals, field) == value)


async def _age(client: Client, capability: str) -> bool:
    return (await client.stats()).queues[capability].oldest_ready_age > timedelta(0)
