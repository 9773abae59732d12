"""Liveness and readiness over HTTP, for Kubernetes probes and load balancers (`--http-port`).

- `GET /healthz` — 200 while the process serves (its event loop answers, its connection is not lost for
  good); a process that cannot recover exits non-zero instead, so liveness failing means it is wedged.
- `GET /readyz` — 200 once connected to NATS, started, and every view it keeps has replayed its feed;
  503 with the reason otherwise (starting, reconnecting, replaying after a failover).
- `GET /metrics` — the process's metrics in Prometheus text format (`telemetry.py`).

Deliberately tiny: one request per connection, no keep-alive, bodies of a few bytes, a request line of at
most 1 KiB read with a deadline — a probe port must not become a way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import orjson

from . import telemetry

if TYPE_CHECKING:
    from .direct import Connection

log = logging.getLogger(__name__)

#: (ok, reason) for each path served.
Check = Callable[[], tuple[bool, str]]
_READ_TIMEOUT_S = 2.0


def liveness(nc: Connection | None) -> tuple[bool, str]:
    """`/healthz` of a process holding `nc` (None while it connects)."""
    if nc is not None and nc.is_lost:
        return False, "the NATS connection is closed for good"
    return True, "serving" if nc is not None else "connecting"


@contextlib.asynccontextmanager
async def endpoints(port: int | None, checks: dict[str, Check]) -> AsyncIterator[int | None]:
    """Serve `checks` on `port` for the block (0: a free port); yields the port, or None when not asked."""
    if port is None:
        yield None
        return
    server = HealthServer(port, checks)
    try:
        yield await server.start()
    finally:
        await server.stop()


class HealthServer:
    def __init__(self, port: int, checks: dict[str, Check], host: str = "0.0.0.0") -> None:
        """`host`: every interface by default, since probes come from the pod network."""
        self.port = port
        self.host = host
        self.checks = checks
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (useful when 0 asked for a free one)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=1024)
        port: int = self._server.sockets[0].getsockname()[1]
        log.info("health endpoints listening", extra={"port": port})
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                line = await reader.readline()
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 and parts[0] == "GET" else None
            check = self.checks.get(path) if path is not None else None
            kind = "application/json"
            if path == "/metrics":
                status = "200 OK"
                data, kind = telemetry.exposition()
            elif check is None:
                status = "404 Not Found"
                data = orjson.dumps({"ok": False, "reason": "GET /healthz, /readyz or /metrics"})
            else:
                ok, reason = check()
                status = "200 OK" if ok else "503 Service Unavailable"
                data = orjson.dumps({"ok": ok, "reason": reason})
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, ValueError, OSError, asyncio.LimitOverrunError):
            pass  # a probe that cannot be read gets nothing; a real probe retries
        finally:
            writer.close()
