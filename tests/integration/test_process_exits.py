"""A process never lingers half-alive: a connection NATS closes for good ends it non-zero, and SIGTERM ends
it at any moment, while it is still trying to connect included (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest

from jetsched.bus.config import BusConfig
from jetsched.bus.connect import ConnectionLost
from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.waiting import eventually
from jetsched.timer.service import TimerService

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server allowing one subscription per connection.

    The second SUB is answered `-ERR 'maximum subscriptions exceeded'`; nats-py closes the client for good on
    any `-ERR` but 'Stale Connection' (the same path as the 'Maximum Payload Violation' that first showed it).
    """
    config = tmp_path / "strict.conf"
    store = tmp_path / "strict"
    config.write_text(
        f'host: 127.0.0.1\nport: -1\nmax_subscriptions: 1\njetstream {{ store_dir: "{store}" }}\n'
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


async def test_lost_connection_fails_the_service_in_process(strict_server: NatsServer) -> None:
    """In-process, `Service.run()` raises `ConnectionLost` naming the server and its error."""
    service = TimerService(BusConfig(nats_url=strict_server.url))
    with pytest.raises(ConnectionLost, match=f"{strict_server.url}.*maximum subscriptions exceeded"):
        await asyncio.wait_for(service.run(), 10)


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
    assert proc.popen is not None
    os.kill(proc.popen.pid, signal.SIGTERM)
    sent = time.monotonic()
    assert await _exit_code(proc, 10) == 0
    assert time.monotonic() - sent < 2.0
    assert proc.log_path.read_text().count("cannot reach") == 1
