"""Connecting to NATS: reconnect while there is a server to reconnect to, give up loudly when there is not.

nats-py reconnects forever after a dropped connection (`max_reconnect_attempts=-1`), but some endings are
final: any `-ERR` from the server except 'Stale Connection' ('Authorization Violation' after a config
reload removed the user, 'Maximum Payload Violation', ...) makes it close the client for good, and the
process would run on connected to nothing. So a connection that closes without our asking is *lost*:
`unless_lost()` stops the work it guards and raises `ConnectionLost`, which a process's `main()` turns into
a non-zero exit for its supervisor to restart it (DESIGN.md §7).

The first connection is retried forever too (services may start before NATS), raced against the caller's
stop event so that SIGTERM is acted on while connecting. Connection errors name the server, without
credentials, and each distinct error is logged once per outage rather than on every retry (four a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import natspy

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .auth import NatsAuth
    from .direct import Connection

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Seconds between connection attempts to one server.
RECONNECT_WAIT_S = 0.25
#: A server that answers no ping for about three of these is given up for the next one (nats-py's default
#: of 120 s left a process talking to a partitioned node for minutes).
PING_INTERVAL_S = 2


class ConnectionLost(Exception):
    """The NATS connection closed for good without being asked to; the process should exit non-zero."""


class Unreachable(TimeoutError):
    """No NATS server answered within the time allowed for the first connection."""


def redact(url: str) -> str:
    """`url` (comma-separated servers) without credentials: `nats://user:pass@host:4222` → `nats://host:4222`."""
    servers = []
    for server in url.split(","):
        scheme, sep, rest = server.strip().rpartition("://")
        servers.append(scheme + sep + rest.rpartition("@")[2])
    return ",".join(servers)


@overload
async def connect(
    url: str, name: str, auth: NatsAuth | None = ..., *, timeout: float | None = ...
) -> Connection: ...


@overload
async def connect(
    url: str, name: str, auth: NatsAuth | None = ..., *, until: asyncio.Event, timeout: float | None = ...
) -> Connection | None: ...


async def connect(
    url: str,
    name: str,
    auth: NatsAuth | None = None,
    *,
    until: asyncio.Event | None = None,
    timeout: float | None = None,
) -> Connection | None:
    """Connect to one or more comma-separated NATS URLs, retrying the first connection as long as allowed.

    Args:
        url: comma-separated NATS URLs.
        name: the connection's name, as the server shows it.
        auth: credentials and TLS (default: anonymous, plain; docs/security.md).
        until: stop trying when this is set (a process's stop event): then None is returned.
        timeout: seconds to keep trying the first connection (None: forever).

    Raises:
        Unreachable: no server answered within `timeout`; the message names the URL and the last error.
    """
    nc = natspy.connection()
    narrator = _Narrator(nc, redact(url))
    connecting = asyncio.create_task(
        nc.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=name,
            max_reconnect_attempts=-1,
            # In the order given: a process lists its own zone's server first (docs/operations.md).
            dont_randomize=True,
            ping_interval=PING_INTERVAL_S,
            max_outstanding_pings=2,
            reconnect_time_wait=RECONNECT_WAIT_S,  # type: ignore[arg-type]  # annotated int, used as seconds
            connect_timeout=2,
            error_cb=narrator.on_error,
            disconnected_cb=narrator.on_disconnect,
            reconnected_cb=narrator.on_reconnect,
            closed_cb=narrator.on_close,
            **(auth.options() if auth is not None else {}),
        )
    )
    stopping = asyncio.create_task((until or asyncio.Event()).wait())
    try:
        await asyncio.wait({connecting, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not connecting.done():
            # Abandoned (stopped, timed out or cancelled): nats-py leaves no task behind once closed.
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await nc.close()
    if connecting.cancelled():
        if until is not None and until.is_set():
            return None
        raise Unreachable(f"cannot reach {narrator.url} within {timeout}s: {_describe(nc.last_error)}")
    connecting.result()
    narrator.connected("connected")
    return nc


async def unless_lost(nc: Connection, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, unless `nc` is lost for good first: then cancel it and raise `ConnectionLost`."""
    task = asyncio.create_task(work)
    lost = asyncio.create_task(nc.wait_lost())
    try:
        await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        lost.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # Work that failed because the connection is closing (ConnectionClosedError) may end before nats-py
    # calls `closed_cb`: the loss is the cause either way.
    if task.cancelled() or nc.is_lost:
        cause = None if task.cancelled() else task.exception()
        message = f"connection to {nc.server_url} closed for good: {_describe(nc.last_error)}"
        raise ConnectionLost(message) from cause
    return task.result()


class _Narrator:
    """nats-py's callbacks: log what changed, once, and tell the connection when it closed."""

    def __init__(self, nc: Connection, url: str) -> None:
        self.nc = nc
        self.url = nc.server_url = url
        #: Errors already logged in this outage; a retry that fails the same way is not news.
        self.seen: set[str] = set()

    def connected(self, verb: str) -> None:
        self.seen.clear()
        server = self.nc.connected_url
        self.nc.server_url = redact(server.geturl()) if server else self.url
        log.info(f"{verb} to {self.nc.server_url}")

    async def on_error(self, exc: Exception) -> None:
        error = _describe(exc)
        if self.nc.is_connected:  # not a connection error: a permissions violation, a slow consumer...
            log.warning(f"nats error on {self.nc.server_url}: {error}")
        elif error not in self.seen:
            self.seen.add(error)
            log.warning(f"cannot reach {self.url}: {error}; retrying")

    async def on_disconnect(self) -> None:
        if not self.nc.is_closed:  # a close is reported by whoever sees `ConnectionLost`, or was asked for
            log.warning(f"disconnected from {self.nc.server_url}; reconnecting")

    async def on_reconnect(self) -> None:
        self.connected("reconnected")
        self.nc.reconnected()

    async def on_close(self) -> None:
        self.nc.closed()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error given"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
