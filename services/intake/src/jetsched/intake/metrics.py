"""Scaling signals as OpenTelemetry metrics (observable gauges, per capability), for KEDA, HPA and friends.

Exported when an SDK meter provider is installed (`OTEL_EXPORTER_OTLP_ENDPOINT` in `bus/tracing.py`);
the same numbers are in `jetsched.api.stats` under `queues`. The gauges are created once per process (an
SDK keeps the first instrument of a name) and report every intake instance registered in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

Signals = Callable[[], dict[str, dict[str, Any]]]

#: name → (field of the stats reply, unit, description, scale from the field to the unit)
GAUGES = {
    "jetsched.queue.ready": ("ready", "{job}", "jobs ready and waiting for a worker", 1.0),
    "jetsched.queue.running": ("running", "{job}", "jobs running on workers", 1.0),
    "jetsched.queue.unroutable": (
        "unroutable",
        "{job}",
        "ready jobs no live worker has the capability for",
        1.0,
    ),
    "jetsched.queue.oldest_ready_age": (
        "oldest_ready_age_ms",
        "s",
        "how long the oldest ready job has waited",
        0.001,
    ),
    "jetsched.workers.free_slots": ("free_worker_slots", "{slot}", "idle slots of live workers", 1.0),
}

_sources: list[Signals] = []
_created: list[bool] = []


def register(signals: Signals) -> Callable[[], None]:
    """Report `signals()` through the gauges; returns the function that stops reporting them."""
    if not _created:
        meter = metrics.get_meter("jetsched")
        for name, (field, unit, description, scale) in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[_observe(field, scale)], unit=unit, description=description
            )
        _created.append(True)
    _sources.append(signals)
    return lambda: _sources.remove(signals)


def _observe(field: str, scale: float) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(values[field] * scale if scale != 1.0 else values[field], {"capability": capability})
            for source in _sources
            for capability, values in source().items()
        ]

    return callback
