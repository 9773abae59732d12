"""An actor that serves one NATS subject: each message handled in its own task, bounded in number.

Messages arrive over a direct subscription (`direct.py`) and each gets its own task at once, so a handler
that awaits a JetStream round trip does not hold up the rest; past `max_in_flight` they wait in a backlog.
On stop the subscription goes first, then in-flight handlers finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from .direct import parse_headers

if TYPE_CHECKING:
    from .direct import Connection

log = logging.getLogger(__name__)

Handler = Callable[["Msg"], Awaitable[None]]


class Subscriber:
    def __init__(
        self,
        nc: Connection,
        subject: str,
        handler: Handler,
        queue: str = "",
        max_in_flight: int = 2000,
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`ready`: awaited before subscribing, e.g. until the views the handler reads are complete."""
        self.name = f"sub:{subject}"
        self._ready = ready
        self._nc = nc
        self._subject = subject
        self._queue = queue
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._backlog: deque[Msg] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready()
        sub = await self._nc.subscribe_direct(self._subject, self._on_raw, queue=self._queue)
        try:
            await asyncio.Event().wait()
        finally:
            await self._nc.unsubscribe_direct(sub)
            self._backlog.clear()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        msg = Msg(self._nc, subject.decode(), reply.decode(), data, parse_headers(headers))
        if len(self._tasks) >= self._max_in_flight:
            self._backlog.append(msg)
        else:
            self._start(msg)

    def _start(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._backlog:
            self._start(self._backlog.popleft())

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._handler(msg)
        except Exception:
            log.exception("handler failed", extra={"subject": msg.subject})
