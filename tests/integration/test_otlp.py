"""Traces as users see them: every process exports over OTLP/HTTP (configured only by the standard
`OTEL_*` variables) to a receiver here that decodes the protobuf; one job that fails once and then
succeeds must arrive as one whole span tree, rooted in the CLI's submit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from jetsched.devkit.fleet import Fleet
from jetsched.devkit.procs import SERVICES
from jetsched.devkit.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class Received:
    service: str
    span: Span

    def attribute(self, key: str) -> Any:
        for kv in self.span.attributes:
            if kv.key == key:
                return getattr(kv.value, kv.value.WhichOneof("value"))
        return None


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint keeping every span it is sent (metrics are accepted and dropped)."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            with self.server.lock:
                for resource_spans in request.resource_spans:
                    names = [a for a in resource_spans.resource.attributes if a.key == "service.name"]
                    service = names[0].value.string_value if names else ""
                    for scope in resource_spans.scope_spans:
                        self.server.spans += [Received(service, s) for s in scope.spans]
            reply = ExportTraceServiceResponse().SerializeToString()
        else:
            reply = b""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_a_retried_job_is_one_span_tree(receiver: Receiver, fleet: Fleet) -> None:
    # The receiver is set up first so that it is torn down last: processes export once more as they exit.
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
    }
    for name in SERVICES:
        fleet.service(name, env=otel)
    fleet.worker(env=otel)
    submit = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "jetsched.cli",
            "--nats",
            fleet.url,
            "--json",
            "submit",
            "probe.flaky",
            "--wait",
        ],
        env={**os.environ, **otel, "OTEL_SERVICE_NAME": "billing-app"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert submit.returncode == 0, submit.stderr[-2000:]
    # `--wait` shows the job's progress on stderr: the failed first attempt, then success.
    progress = [line.split("  ", 1)[-1] for line in submit.stderr.splitlines()]
    assert progress[0].startswith("submitted ")
    assert any(
        p.startswith("scheduled until ")
        and p.endswith("attempt 1: [error] RuntimeError: first attempts fail")
        for p in progress
    ), progress
    assert progress[-1] == "succeeded", progress

    def tree() -> list[Received]:
        with receiver.lock:
            outcomes = [r for r in receiver.spans if r.span.name == "jetsched outcome"]
            if len(outcomes) < 2:
                return []
            trace_id = outcomes[0].span.trace_id
            return [r for r in receiver.spans if r.span.trace_id == trace_id]

    await eventually(lambda: len(tree()) >= 9, timeout=30, what="the whole tree exported")
    spans = tree()
    by_id = {r.span.span_id: r for r in spans}
    names = sorted((r.service, r.span.name) for r in spans)
    roots = [r for r in spans if not r.span.parent_span_id]
    assert [(r.service, r.span.name) for r in roots] == [("billing-app", "jetsched submit probe.flaky")], (
        names
    )

    def parent(r: Received) -> Received:
        return by_id[r.span.parent_span_id]

    def named(name: str) -> list[Received]:
        return sorted(
            (r for r in spans if r.span.name == name), key=lambda r: r.attribute("jetsched.attempt") or 0
        )

    (accepted,) = named("jetsched submit")
    assert (accepted.service, parent(accepted).span.name) == (
        "jetsched-intake",
        "jetsched submit probe.flaky",
    )
    runs, outcomes, dispatches = (
        named("jetsched run probe.flaky"),
        named("jetsched outcome"),
        named("jetsched dispatch"),
    )
    assert [r.attribute("jetsched.attempt") for r in runs] == [1, 2]
    assert [r.attribute("jetsched.attempt") for r in outcomes] == [1, 2]
    assert [r.attribute("jetsched.attempt") for r in dispatches] == [1, 2]
    assert {r.service for r in runs} == {"jetsched-worker"}
    assert {r.service for r in outcomes} == {"jetsched-reaper"}
    assert {r.service for r in dispatches} == {"jetsched-dispatcher"}
    assert [parent(r).span.name for r in runs] == ["jetsched dispatch", "jetsched dispatch"]
    assert [parent(r).span.name for r in outcomes] == ["jetsched run probe.flaky"] * 2
    assert [parent(r).span.name for r in dispatches] == ["jetsched submit"] * 2
    # The retry's dispatch links to the run of the attempt it retries.
    assert list(dispatches[0].span.links) == []
    assert [link.span_id for link in dispatches[1].span.links] == [runs[0].span.span_id]
    # The retry waited for its backoff: the timer made it due, under the same trace.
    assert [r.service for r in named("jetsched due")] == ["jetsched-timer"]
    # The failed attempt says so, with the exception; the one that succeeded does not.
    assert [r.span.status.code for r in runs] == [Status.STATUS_CODE_ERROR, Status.STATUS_CODE_UNSET]
    assert [r.span.status.code for r in outcomes] == [Status.STATUS_CODE_ERROR, Status.STATUS_CODE_UNSET]
    (event,) = [e for e in runs[0].span.events if e.name == "exception"]
    assert {a.key: a.value.string_value for a in event.attributes}["exception.type"] == "RuntimeError"
    # Every span names the job; the messaging ones follow the semantic conventions.
    job_id = accepted.attribute("jetsched.job_id")
    assert job_id
    assert all(r.attribute("jetsched.job_id") == job_id for r in spans), names
    for r in [roots[0], accepted, *dispatches, *runs, *outcomes]:
        assert r.attribute("messaging.system") == "nats", r.span.name
        assert r.attribute("messaging.destination.name"), r.span.name
        assert r.attribute("messaging.operation.type") in ("publish", "process", "send"), r.span.name
    # The worker's own log: a line per start and per outcome, the failure with its traceback, each
    # line naming the job's trace.
    lines = [
        orjson.loads(line)
        for line in fleet.workers[0].log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    about = [e for e in lines if e.get("job") == job_id]
    assert [(e["msg"], e["attempt"]) for e in about] == [
        ("job started", 1),
        ("job failed", 1),
        ("job started", 2),
        ("job succeeded", 2),
    ]
    failed = about[1]
    assert failed["level"] == "warning"
    assert failed["error"] == "RuntimeError: first attempts fail"
    assert "raise RuntimeError" in failed["traceback"]
    assert {e["trace_id"] for e in about} == {roots[0].span.trace_id.hex()}
