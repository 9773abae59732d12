"""All four services in the current event loop — what integration tests use unless they need processes.

The services are the same classes their processes run; in-process they share one loop, so a test can
read their views (e.g. the reaper's stale-report count) and collect spans with an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from jetsched.bus.auth import NatsAuth
from jetsched.bus.config import BusConfig
from jetsched.dispatcher.service import DispatcherService
from jetsched.intake.service import IntakeService
from jetsched.reaper.service import ReaperService
from jetsched.sdk import Tasks, Worker
from jetsched.timer.service import TimerService

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType

    from jetsched.bus.service import Service


class Stack:
    """`copies` replicas of every service, started in order and stopped together.

    `auth`: each service's credentials and TLS, by service name (default: anonymous)."""

    def __init__(
        self,
        nats_url: str,
        replicas: int = 1,
        copies: int = 1,
        retention_s: int = 7 * 86_400,
        auth: Mapping[str, NatsAuth] | None = None,
    ) -> None:
        def bus(name: str) -> BusConfig:
            credentials = (auth or {}).get(name, NatsAuth())
            return BusConfig(nats_url=nats_url, replicas=replicas, retention_s=retention_s, auth=credentials)

        self.services: list[Service] = []
        for _ in range(copies):
            self.services += [
                IntakeService(bus("intake")),
                TimerService(bus("timer")),
                DispatcherService(bus("dispatcher")),
                ReaperService(bus("reaper")),
            ]
        self._tasks: list[asyncio.Task[None]] = []

    def of(self, kind: type[Service]) -> list[Service]:
        return [s for s in self.services if isinstance(s, kind)]

    async def __aenter__(self) -> Stack:
        for service in self.services:
            task = asyncio.create_task(service.run(), name=service.name)
            self._tasks.append(task)
            started = asyncio.create_task(service.started.wait())
            done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED, timeout=20)
            if task in done:
                task.result()
            if started not in done:
                started.cancel()
                raise TimeoutError(f"{service.name} did not start")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for service in self.services:
            service.stop()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 30)


@contextlib.asynccontextmanager
async def running_worker(tasks: Tasks, nats_url: str, **options: object) -> AsyncIterator[Worker]:
    """A worker running in this loop for the duration of the block; drained on exit."""
    worker = Worker(tasks, nats_url=nats_url, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 60)
