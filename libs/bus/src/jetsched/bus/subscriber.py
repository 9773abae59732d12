"""An actor that serves one NATS subject: each message handled in its own task, bounded in number.

nats-py runs a subscription's callback for one message at a time; a handler that awaits a JetStream round
trip would serialise the whole subject. Spawning a task per message keeps many round trips in flight while
the semaphore bounds memory. On stop the subscription is drained first, then in-flight handlers finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.msg import Msg

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
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready()
        sub = await self._nc.subscribe(self._subject, queue=self._queue, cb=self._on_msg)
        try:
            await asyncio.Event().wait()
        finally:
            await sub.unsubscribe()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)

    async def _on_msg(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._handler(msg)
        except Exception:
            log.exception("handler failed", extra={"subject": msg.subject})
        finally:
            self._slots.release()
