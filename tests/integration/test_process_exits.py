"""A process never lingers half-alive: a connection NATS closes for good ends it non-zero, and SIGTERM ends
it at any moment, while it is still trying to connect included (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest

from jetsched.bus.config import BusConfig
from jetsched.bus.connect import ConnectionLost, connect
from jetsched.core import subjects
from jetsched.core.models import WorkMessage
from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Job, Tasks, Worker
from jetsched.timer.service import TimerService

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


HELD, QUICK = "01KBZ3R6X9T2M0Q7D5W8C4N1HE", "01KBZ3R6X9T2M0Q7D5W8C4N1HF"


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server allowing three subscriptions per connection.

    The fourth SUB is answered `-ERR 'maximum subscriptions exceeded'`; nats-py closes the client for good on
    any `-ERR` but 'Stale Connection' (the same path as the 'Maximum Payload Violation' that first showed it).
    A service, and a worker with two capabilities, need more from the start; a worker with one capability
    (its own heartbeat, work and control subjects) takes its fourth, its reply inbox, when it first reports.
    """
    config = tmp_path / "strict.conf"
    store = tmp_path / "strict"
    config.write_text(
        f'host: 127.0.0.1\nport: -1\nmax_subscriptions: 3\njetstream {{ store_dir: "{store}" }}\n'
    )
    server = NatsServer(store, config=config).start()
    try:
        yield server
    finally:
        server.stop()


def _with_password(url: str) -> str:
    return url.replace("nats://", "nats://jetsched:hunter2@")


async def _exit_code(proc: procs.Proc, timeout: float) -> int:
    assert proc.popen is not None
    code: int = await asyncio.to_thread(proc.popen.wait, timeout)
    return code


async def test_server_restart_is_a_reconnect_not_a_loss(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A nats-server restart is reconnected from, not lost; each change is logged once, with the URL."""
    caplog.set_level(logging.INFO, logger="jetsched.bus.connect")
    nc = await connect(nats_server.url, "test")
    try:
        nats_server.kill()
        await eventually(lambda: f"cannot reach {nats_server.url}" in caplog.text, what="retrying")
        await asyncio.sleep(0.6)  # on purpose: a few more refused attempts, which must not be logged again
        nats_server.start()
        await eventually(lambda: f"reconnected to {nats_server.url}" in caplog.text, what="reconnected")
        assert caplog.text.count("cannot reach") == 1
        assert f"disconnected from {nats_server.url}" in caplog.text
        assert nc.is_connected
        assert not nc.is_lost
    finally:
        await nc.close()


async def test_lost_connection_fails_the_service_in_process(strict_server: NatsServer) -> None:
    """In-process, `Service.run()` raises `ConnectionLost` naming the server and its error."""
    service = TimerService(BusConfig(nats_url=strict_server.url))
    with pytest.raises(ConnectionLost, match=f"{strict_server.url}.*maximum subscriptions exceeded"):
        await asyncio.wait_for(service.run(), 10)


async def test_lost_connection_ends_a_worker_holding_jobs(strict_server: NatsServer) -> None:
    """A worker losing its connection while it holds a job raises `ConnectionLost` at once, abandoning the job
    (it cannot report it; the job is rescued once the session's heartbeats stop)."""
    tasks = Tasks()

    @tasks.task("life.sleep")
    async def sleep(job: Job) -> None:
        await asyncio.sleep(float(job.payload))

    worker = Worker(tasks, nats_url=strict_server.url)
    running = asyncio.create_task(worker.run())
    nc = await connect(strict_server.url, "test")

    async def send(job_id: str, seconds: float) -> None:
        work = WorkMessage(
            id=job_id,
            capability="life.sleep",
            attempt=1,
            token="t",
            payload=seconds,
            priority=5,
            timeout_s=120,
            created_at_ms=0,
            run_at_ms=0,
        )
        await nc.publish(subjects.work("life.sleep", worker.session), work.model_dump_json().encode())

    try:
        beats = await nc.subscribe(subjects.heartbeat(worker.session))
        await beats.next_msg(timeout=10)  # the worker beats once it has subscribed
        await send(HELD, 60.0)
        await eventually(lambda: (HELD, 1) in worker.held, what="the job held")
        await send(QUICK, 0.0)
        with pytest.raises(ConnectionLost, match="maximum subscriptions exceeded"):
            await asyncio.wait_for(running, 2)
        assert not worker.held
    finally:
        await nc.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["service", "worker"])
async def test_lost_connection_exits_non_zero(strict_server: NatsServer, tmp_path: Path, kind: str) -> None:
    """A service or worker whose connection NATS closes for good exits 1, saying where and why, no password."""
    url = _with_password(strict_server.url)
    if kind == "service":
        proc = procs.service("timer", url, tmp_path).start()
    else:
        proc = procs.worker("jetsched.devkit.probe", url, tmp_path).start()
    assert await _exit_code(proc, 15) == 1
    log = proc.log_path.read_text()
    assert f"connection to {strict_server.url} closed for good" in log
    assert "maximum subscriptions exceeded" in log
    assert "hunter2" not in log


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["service", "worker"])
async def test_sigterm_while_connecting(tmp_path: Path, kind: str) -> None:
    """SIGTERM to a process still trying to reach NATS ends it at once; it said once that it cannot reach it."""
    url = f"nats://127.0.0.1:{free_port()}"
    if kind == "service":
        proc = procs.service("timer", url, tmp_path).start()
    else:
        proc = procs.worker("jetsched.devkit.probe", url, tmp_path).start()
    await eventually(lambda: f"cannot reach {url}" in proc.log_path.read_text(), timeout=15, what="retrying")
    await asyncio.sleep(0.6)  # on purpose: a few more refused attempts, which must not be logged again
    await _sigterm_ends_at_once(proc)
    assert proc.log_path.read_text().count("cannot reach") == 1


@pytest.mark.slow
async def test_sigterm_while_storage_is_not_ready(tmp_path: Path) -> None:
    """SIGTERM to a service connected to a NATS that refuses its declarations (no JetStream) ends it at once."""
    config = tmp_path / "plain.conf"
    config.write_text("host: 127.0.0.1\nport: -1\n")
    server = NatsServer(tmp_path / "plain", config=config).start()
    try:
        proc = procs.service("timer", server.url, tmp_path).start()
        await eventually(
            lambda: "storage not ready" in proc.log_path.read_text(), timeout=15, what="retrying"
        )
        await _sigterm_ends_at_once(proc)
    finally:
        server.stop()


async def _sigterm_ends_at_once(proc: procs.Proc) -> None:
    assert proc.popen is not None
    os.kill(proc.popen.pid, signal.SIGTERM)
    sent = time.monotonic()
    assert await _exit_code(proc, 10) == 0
    assert time.monotonic() - sent < 2.0
