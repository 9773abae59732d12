"""Which exporters the standard OTEL_* variables choose (`telemetry.exporters`)."""

from __future__ import annotations

import pytest

from jetsched.bus.telemetry import exporters


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({}, [], []),  # nothing configured: nothing exported (no collector assumed on localhost)
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"], ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"], []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"], []),
        ({"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_METRICS_EXPORTER": "none"}, ["otlp", "console"], []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, [], ["otlp"]),
    ],
)
def test_exporters_follow_the_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], traces: list[str], metrics: list[str]
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (exporters("TRACES"), exporters("METRICS")) == (traces, metrics)
