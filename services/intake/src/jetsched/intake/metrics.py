"""Scaling signals as OpenTelemetry metrics (observable gauges, per capability), for KEDA, HPA and friends.

Exported when an SDK meter provider is installed (`OTEL_EXPORTER_OTLP_ENDPOINT` in `bus/tracing.py`);
the same numbers are in `jetsched.api.stats` under `queues`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

GAUGES = {
    "jetsched.queue.ready": ("ready", "{job}", "jobs ready and waiting for a worker"),
    "jetsched.queue.running": ("running", "{job}", "jobs running on workers"),
    "jetsched.queue.oldest_ready_age": (
        "oldest_ready_age_ms",
        "ms",
        "how long the oldest ready job has waited",
    ),
    "jetsched.workers.free_slots": ("free_worker_slots", "{slot}", "idle slots of live workers"),
}


def register(signals: Callable[[], dict[str, dict[str, Any]]]) -> None:
    meter = metrics.get_meter("jetsched")
    for name, (field, unit, description) in GAUGES.items():
        meter.create_observable_gauge(
            name, callbacks=[_observe(signals, field)], unit=unit, description=description
        )


def _observe(
    signals: Callable[[], dict[str, dict[str, Any]]], field: str
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(values[field], {"capability": cap}) for cap, values in signals().items()]

    return callback
