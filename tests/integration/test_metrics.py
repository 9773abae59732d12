"""Metrics scraped the way users scrape them: a real Prometheus (Debian's) polling every process's
`/metrics` on its health port while jobs succeed, get rescued, end dead and wait for their time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from jetsched.devkit import debian
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import free_port
from jetsched.devkit.procs import SERVICES
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(180)]


class Prometheus:
    def __init__(self, targets: list[int], work_dir: Path) -> None:
        binary = debian.require("prometheus", "prometheus")
        self.port = free_port()
        config = work_dir / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                    "scrape_configs": [
                        {
                            "job_name": "jetsched",
                            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}],
                        }
                    ],
                }
            )
        )
        self.log = (work_dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={work_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            result: list[dict[str, Any]] = json.loads(reply.read())["data"]["result"]
            return result

    def value(self, expr: str) -> float:
        """The value of a query that yields one number (0 when it yields nothing)."""
        try:
            found = self.query(expr)
        except OSError:
            return 0.0
        return float(found[0]["value"][1]) if found else 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def ready_soon(port: int) -> Callable[[], Awaitable[bool]]:
    return lambda: asyncio.to_thread(ready, port)


@pytest.fixture
def prometheus_ports(fleet: Fleet) -> list[int]:
    ports = []
    for name in SERVICES:
        port = free_port()
        fleet.service(name, env={"JETSCHED_HTTP_PORT": str(port)})
        ports.append(port)
    for _ in range(2):
        port = free_port()
        fleet.worker("--concurrency", "4", env={"JETSCHED_HTTP_PORT": str(port)})
        ports.append(port)
    return ports


async def test_prometheus_scrapes_every_process(
    fleet: Fleet, prometheus_ports: list[int], tmp_path: Path
) -> None:
    prometheus = Prometheus(prometheus_ports, tmp_path)
    try:
        # Every process ready first: a report sent before a reaper relays it waits for a retry, and the
        # run times below would count that start-up.
        for port in prometheus_ports:
            await eventually(ready_soon(port), timeout=30, what=f"/readyz on port {port}")
        async with Client(fleet.url, timeout=20) as client:
            await client.list(limit=1)
            ran = [await client.submit("probe.sleep", 0.05) for _ in range(20)]
            later = await client.submit("probe.sleep", 0, delay=1.0)
            for reply in [*ran, later]:
                assert (await client.wait(reply.id, timeout=30)).state == "succeeded"
            await eventually(
                lambda: prometheus.value("count(up == 1)") == len(prometheus_ports), timeout=30, what="all up"
            )
            handled = 'sum(jetsched_worker_handler_duration_seconds_count{outcome="succeeded"})'
            await eventually(lambda: prometheus.value(handled) == 21, timeout=30, what="the workers' runs")
            # Then a job that kills its worker (taking that worker's own series with it) and ends dead.
            doomed = await client.submit("probe.poison", None, max_attempts=1)
            assert (await client.wait(doomed.id, timeout=30)).state == "dead"
        expected = {
            "sum(jetsched_jobs_submitted_total)": 22,
            'sum(jetsched_jobs_submitted_total{capability="probe.sleep"})': 21,
            "sum(jetsched_jobs_started_total)": 22,
            'sum(jetsched_jobs_rescued_total{verdict="lost"})': 1,
            'sum(jetsched_jobs_failed_total{kind="lost"})': 1,
            'sum(jetsched_jobs_dead_total{kind="lost",capability="probe.poison"})': 1,
            "sum(jetsched_job_queue_wait_seconds_count)": 22,
            'sum(jetsched_job_run_time_seconds_count{outcome="succeeded"})': 21,
            "sum(jetsched_timer_lateness_seconds_count)": 1,
            "sum(jetsched_submit_duration_seconds_count)": 22,
            "sum(jetsched_dispatch_claim_duration_seconds_count)": 22,
        }

        def short() -> dict[str, float]:
            return {q: v for q, n in expected.items() if (v := prometheus.value(q)) < n}

        with contextlib.suppress(TimeoutError):
            await eventually(lambda: not short(), timeout=20, what="every counter")
        assert not short(), f"counted less than expected: {short()}"
        got = {q: prometheus.value(q) for q in expected}
        assert got['sum(jetsched_job_run_time_seconds_count{outcome="succeeded"})'] == 21
        assert got["sum(jetsched_jobs_submitted_total)"] == 22
        # Histogram buckets are in seconds: a 50 ms handler lands below the 0.1 s bound.
        assert prometheus.value('sum(jetsched_job_run_time_seconds_bucket{le="0.5"})') >= 20
        assert prometheus.value("count(jetsched_queue_ready)") >= 1  # intake's scaling gauges
        poisoned = len(prometheus_ports) - 1  # the poisoned worker's target is down
        await eventually(lambda: prometheus.value("count(up == 1)") == poisoned, timeout=10, what="one down")
    finally:
        prometheus.stop()
