"""OpenTelemetry set-up for a jetsched process: metrics always, on `/metrics`; OTLP when configured.

`setup()` installs the SDK's meter provider with a Prometheus reader — `GET /metrics` on the process's
`--http-port` (the health port) renders it — plus an OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT`
(or the metrics-specific variable) is set, and a tracer provider exporting over OTLP in that case. A
provider someone already installed (a library user's, or `OTEL_PYTHON_*_PROVIDER`) is left alone.
"""

from __future__ import annotations

import os

from opentelemetry import metrics, trace
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: What `/metrics` answers with (Prometheus text exposition format).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: This process's metrics, as the Prometheus reader renders them (empty until `setup()`).
registry = CollectorRegistry(auto_describe=True)


def _otlp(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def setup(service_name: str) -> None:
    """Install meter (and, with OTLP configured, tracer) providers for this process."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": service_name})
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
        if _otlp("METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    if _otlp("TRACES") and not isinstance(trace.get_tracer_provider(), TracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)


def exposition() -> bytes:
    """`/metrics`: every instrument of this process in Prometheus text format."""
    return generate_latest(registry)
