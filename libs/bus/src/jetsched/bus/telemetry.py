"""OpenTelemetry set-up for a jetsched process, from the standard `OTEL_*` variables.

`setup()` installs the SDK's tracer and meter providers unless someone already installed their own (a
library user's, or one named by `OTEL_PYTHON_*_PROVIDER`), which is then left alone:

- **metrics**: a Prometheus reader — `GET /metrics` on the process's `--http-port` (the health port)
  renders it — plus the exporters `OTEL_METRICS_EXPORTER` names (`otlp`, `console`, `none`);
- **traces**: the exporters `OTEL_TRACES_EXPORTER` names (`otlp`, `console`, `none`);
- OTLP over HTTP (`http/protobuf`, the default) or gRPC (`grpc`) per `OTEL_EXPORTER_OTLP_PROTOCOL` or its
  per-signal variant; endpoints, headers and timeouts are read by the exporters themselves from the
  usual variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, …);
- the service name from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, else `jetsched-<role>`;
- `OTEL_SDK_DISABLED=true` turns it all off.

The SDK, its exporters and the Prometheus client come with `jetsched[otel]` (and jetsched-server); without
them the API's no-op providers stay, `/metrics` is empty, and exporters asked for get one warning naming
the extra.

One deliberate difference from the specification: with neither an exporter variable nor an OTLP
endpoint set, nothing is exported (the spec would send to localhost:4318 and log a failure every few
seconds on every machine that runs no collector).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

#: This process's metrics, as the Prometheus reader renders them (None until `setup()` installs it).
_registry: CollectorRegistry | None = None


def exporters(signal: str) -> list[str]:
    """The exporters chosen for `signal` (TRACES or METRICS): the variable's list, else `otlp` when an
    OTLP endpoint is configured, else none."""
    chosen = os.environ.get(f"OTEL_{signal}_EXPORTER")
    if chosen is None:
        configured = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
        )
        return ["otlp"] if configured else []
    return [name.strip() for name in chosen.split(",") if name.strip() and name.strip() != "none"]


def _grpc(signal: str) -> bool:
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r}: jetsched speaks grpc and http/protobuf")
    return protocol == "grpc"


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER {name!r}: jetsched knows otlp, console and none")
    if _grpc("TRACES"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_METRICS_EXPORTER {name!r}: jetsched knows otlp, console and none")
    if _grpc("METRICS"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def setup(default_name: str, prometheus: bool = True) -> None:
    """Install tracer and meter providers for this process (see the module's docstring).

    `prometheus`: keep metrics for `/metrics` (a process with a health port); a client has none."""
    global _registry
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ModuleNotFoundError:
        if exporters("TRACES") or exporters("METRICS"):
            log.warning("OTEL_* variables ask for exporters: pip install 'jetsched[otel]' to send anything")
        return

    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": default_name})
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        readers: list[MetricReader] = []
        if prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            _registry = CollectorRegistry(auto_describe=True)
            readers.append(PrometheusMetricReader(registry=_registry))
        readers += [PeriodicExportingMetricReader(_metric_exporter(n)) for n in exporters("METRICS")]
        if readers:
            metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    chosen = exporters("TRACES")
    if chosen and not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(resource=resource)
        for name in chosen:
            provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))
        trace.set_tracer_provider(provider)


def exposition() -> tuple[bytes, str]:
    """`/metrics`: every instrument of this process in Prometheus text format, and its content type."""
    if _registry is None:
        return b"", "text/plain; charset=utf-8"
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return generate_latest(_registry), CONTENT_TYPE_LATEST
