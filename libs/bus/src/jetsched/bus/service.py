"""The service shell: connect, declare, run supervised actors, stop cleanly on SIGTERM/SIGINT.

A service subclass builds its actors in `setup()` and may tidy up in `drain()`. The same class runs as its
own process (`main()`) or inside a test's event loop (`await service.run()` / `service.stop()`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from jetsched.core.clock import LocalClock, ServerClock, SystemClock
from jetsched.core.ids import new_ulid

from . import health, logs, loop, telemetry, topology
from .actors import Actor, ActorFailed, Supervisor
from .config import BusConfig, add_bus_arguments, bus_config
from .connect import ConnectionLost, connect, unless_lost
from .quarantine import Quarantine
from .retry import Backoff, retry
from .server_time import ServerTimeProbe, sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext

    from .direct import Connection

log = logging.getLogger(__name__)


class Service(ABC):
    name: str = "service"

    def __init__(self, bus: BusConfig, clock: LocalClock | None = None) -> None:
        self.bus = bus
        #: This host's clock: for durations the service measures itself (a lease's silence).
        self.local = clock or SystemClock()
        #: The NATS servers' time: for everything that stamps a record or decides when a job may start
        #: (learnt before `setup()` runs; `jetsched.core.clock`).
        self.clock = ServerClock(self.local)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self._nc: Connection | None = None
        #: The port /healthz and /readyz listen on, once they do (`BusConfig.http_port`).
        self.http_port: int | None = None
        #: Where this service sets aside stored items it cannot read (set once connected).
        self.quarantine: Quarantine | None = None
        # Unique per process start, and safe in KV keys and subjects (no dots).
        self.instance = new_ulid(self.local.now_ms()).lower()

    @abstractmethod
    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        """Subscribe, rebuild views, and return the actors to supervise."""

    async def drain(self) -> None:  # noqa: B027 -- optional hook, most services need nothing here
        """Finish in-flight work before the connection closes."""

    def stop(self) -> None:
        self._stop.set()

    @property
    def quarantined(self) -> Quarantine:
        """The quarantine, for `setup()` and later (it needs the connection)."""
        assert self.quarantine is not None, "the quarantine exists once the service is connected"
        return self.quarantine

    async def _declare(self, js: JetStreamContext) -> None:
        # A cluster still electing its leaders (or a replica count it cannot place yet) refuses
        # declarations for a while; keep trying, so services can start in any order.
        def waiting(exc: BaseException, delay: float) -> None:
            log.warning("storage not ready; retrying", extra={"error": repr(exc), "retry_s": delay})

        bus = self.bus
        await retry(
            lambda: topology.declare(
                js, bus.replicas, bus.retention_s, bus.history_bytes, bus.record_partitions
            ),
            backoff=Backoff(0.1, 2.0),
            unless=lambda exc: isinstance(exc, topology.PartitionsMismatch),
            on_retry=waiting,
            clock=self.local,
        )

    async def run(self) -> None:
        """Connect and serve until `stop()`. Raises `ConnectionLost` if NATS closes the connection for good."""
        checks = {"/healthz": lambda: health.liveness(self._nc), "/readyz": self._ready}
        async with health.endpoints(self.bus.http_port, checks) as self.http_port:
            nc = await connect(self.bus.nats_url, f"jetsched-{self.name}", self.bus.auth, until=self._stop)
            if nc is None:
                log.info("stopped before connecting", extra={"service": self.name})
                return
            self._nc = nc
            try:
                await unless_lost(nc, self._serve(nc))
            finally:
                with contextlib.suppress(Exception):
                    await nc.drain()
            log.info("stopped", extra={"service": self.name})

    def _ready(self) -> tuple[bool, str]:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False, "not connected to NATS"
        if not self.started.is_set():
            return False, "starting"
        replaying = sum(not view.is_set() for view in nc.views)
        return (False, f"{replaying} views replaying") if replaying else (True, "ready")

    async def _serve(self, nc: Connection) -> None:
        starting = asyncio.create_task(self._start(nc))
        stopping = asyncio.create_task(self._stop.wait())
        supervised: asyncio.Task[None] | None = None
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                return  # stopped while starting (storage not ready, views replaying): nothing to drain
            actors = [*starting.result(), ServerTimeProbe(nc, self.clock)]
            supervised = asyncio.create_task(Supervisor(clock=self.local).run(actors))
            self.started.set()
            log.info(
                "started",
                extra={"service": self.name, "instance": self.instance, "host": socket.gethostname()},
            )
            await asyncio.wait({supervised, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if supervised.done():
                supervised.result()
        finally:  # also when cancelled because the connection was lost: what we started ends with us
            stopping.cancel()
            for task in (starting, supervised):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        await self.drain()

    async def _start(self, nc: Connection) -> list[Actor]:
        js = nc.jetstream()
        self.quarantine = Quarantine(nc, self.name, self.clock)
        await self._declare(js)
        await sync(nc, self.clock)
        return await self.setup(nc, js)


def main(
    name: str,
    build: Callable[[argparse.Namespace, BusConfig], Service],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Entry point of a service process: parse flags, set up logs and tracing, run until a signal."""
    parser = argparse.ArgumentParser(prog=f"jetsched-{name}")
    add_bus_arguments(parser)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    bus = bus_config(args)
    logs.setup(name, bus.log_level)
    telemetry.setup(f"jetsched-{name}")
    service = build(args, bus)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    # What the collector tracks at start — modules, classes, pydantic's schemas — lives as long as the
    # process: kept out of every full collection, which would walk all of it again whenever requests
    # allocate a lot (an intake taking a 2,000-step workflow: pauses of the loop of 40-75 ms, 15 without).
    gc.collect()
    gc.freeze()
    try:
        loop.run(run())
    except ActorFailed:
        log.exception("service failed")
        sys.exit(1)
    except (ConnectionLost, topology.PartitionsMismatch) as exc:
        log.error(f"service failed: {exc}")
        sys.exit(1)
