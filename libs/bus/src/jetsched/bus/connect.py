"""Connecting to NATS: reconnect forever, log connection changes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .direct import Connection

if TYPE_CHECKING:
    from .auth import NatsAuth

log = logging.getLogger(__name__)


async def connect(url: str, name: str, auth: NatsAuth | None = None) -> Connection:
    """Connect to one or more comma-separated NATS URLs, reconnecting forever on loss.

    `auth`: credentials and TLS (default: anonymous, plain)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": repr(exc)})

    nc = Connection()

    async def on_disconnect() -> None:
        if not nc.is_closed:  # a close we asked for is not news
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        nc.reconnected()

    await nc.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,  # type: ignore[arg-type]  # annotated int, used as seconds
        connect_timeout=2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **(auth.options() if auth is not None else {}),
    )
    return nc
