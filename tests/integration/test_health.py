"""/healthz and /readyz: what a Kubernetes probe sees of a service, as a real process."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from jetsched.bus.config import BusConfig
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.waiting import eventually
from jetsched.intake.service import IntakeService


async def probe(port: int, path: str) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def test_ready_once_started_and_not_while_nats_is_down(nats_server: NatsServer) -> None:
    """Ready once connected with its views replayed; unready while NATS is away; live throughout."""
    service = IntakeService(BusConfig(nats_url=nats_server.url, http_port=0))
    running = asyncio.create_task(service.run())
    try:
        await eventually(lambda: service.http_port, what="the health port")
        assert service.http_port is not None
        port = service.http_port
        await eventually(lambda: service.started.is_set(), what="intake started")
        assert await probe(port, "/readyz") == (200, {"ok": True, "reason": "ready"})
        assert (await probe(port, "/healthz"))[0] == 200
        nats_server.kill()

        async def unready() -> bool:
            return (await probe(port, "/readyz"))[0] == 503

        await eventually(unready, what="unready while NATS is down")
        assert (await probe(port, "/healthz"))[0] == 200
        nats_server.start()

        async def ready() -> bool:
            return (await probe(port, "/readyz"))[0] == 200

        await eventually(ready, timeout=20, what="ready again after NATS is back")
        assert (await probe(port, "/nothing"))[0] == 404
    finally:
        service.stop()
        await asyncio.wait_for(running, 20)


@pytest.mark.slow
async def test_a_service_process_serves_probes_on_its_port(fleet: Fleet) -> None:
    """`--http-port` (or JETSCHED_HTTP_PORT) on a service process."""
    port = free_port()
    fleet.service("reaper", env={"JETSCHED_HTTP_PORT": str(port)})

    async def ready() -> bool:
        try:
            return (await probe(port, "/readyz"))[0] == 200
        except OSError:
            return False

    await eventually(ready, timeout=20, what="the reaper ready")


async def test_a_worker_is_ready_while_it_takes_work(nats_server: NatsServer) -> None:
    """A worker's /readyz says ready once it takes work and unready while it drains; /healthz stays up."""
    from jetsched.sdk import Job, Tasks, Worker

    tasks = Tasks()

    @tasks.task("health.echo")
    async def echo(job: Job) -> None:
        return None

    worker = Worker(tasks, nats_url=nats_server.url, http_port=0, drain_timeout=1)
    running = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.http_port, what="the worker's health port")
        assert worker.http_port is not None
        port = worker.http_port

        async def ready() -> bool:
            return (await probe(port, "/readyz"))[0] == 200

        await eventually(ready, what="the worker ready")
        worker.draining = True  # what drain sets first, before finishing its jobs
        assert await probe(port, "/readyz") == (503, {"ok": False, "reason": "draining"})
        assert (await probe(port, "/healthz"))[0] == 200
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)
