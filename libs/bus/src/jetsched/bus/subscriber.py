"""An actor that serves one NATS subject: each message handled in its own task, bounded in number.

Messages arrive over a direct subscription (`direct.py`) and each gets its own task at once, so a handler
that awaits a JetStream round trip does not hold up the rest; past `max_in_flight` they wait in a backlog.
On stop the subscription goes first, then in-flight handlers finish.

Every request gets an answer: a handler that fails, or whose reply does not fit the server's message
limit, is answered with a structured error. Replies carry no headers — nats-py's `respond` echoes the
request's, which lets a client size a reply past the limit with one padded header. Answers go only to an
inbox (`subjects.is_reply`): a request naming any other reply subject is dropped unhandled, since the
answer would be published there with this service's permissions, not the sender's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.errors import MaxPayloadError

from jetsched.core import subjects
from jetsched.core.errors import ApiError, ErrorCode

from .direct import parse_headers

if TYPE_CHECKING:
    from .direct import Connection

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[None]]
#: Bytes of requests waiting for a handler slot; past it, requests are refused as `unavailable` at once.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024


class Request(Msg):
    """A message whose reply goes out without the request's headers, once."""

    responded = False
    #: The connection it came in on (nats-py's own reference, `_client`, is private).
    nc: Connection

    async def respond(self, data: bytes) -> None:
        if not self.reply or self.responded:
            return
        self.responded = True
        try:
            await self.nc.publish(self.reply, data)
        except MaxPayloadError:
            message = f"the reply ({len(data)} bytes) is over the server's message limit; ask for less"
            await self.nc.publish(
                self.reply, ApiError(code=ErrorCode.REPLY_TOO_LARGE, message=message).body()
            )


class Subscriber:
    def __init__(
        self,
        nc: Connection,
        subject: str,
        handler: Handler,
        queue: str = "",
        max_in_flight: int = 2000,
        ready: Callable[[], Awaitable[object]] | None = None,
        jetstream: bool = False,
        max_bytes_in_flight: int | None = None,
    ) -> None:
        """`ready`: awaited before subscribing, e.g. until the views the handler reads are complete.
        `jetstream`: the subject is a consumer's delivery, whose replies are JetStream's ack subjects
        (only JetStream may publish there). `max_bytes_in_flight`: requests handled at once hold at most
        this many bytes of body between them (one is always let in), for handlers whose work grows with
        the body; the rest wait their turn in the backlog, in order."""
        self.name = f"sub:{subject}"
        self._ready = ready
        self._nc = nc
        self._subject = subject
        self._queue = queue
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._max_bytes_in_flight = max_bytes_in_flight
        self._backlog: deque[Request] = deque()
        self._backlog_bytes = 0
        #: Handlers running, and the bytes of the body each was given.
        self._tasks: dict[asyncio.Task[None], int] = {}
        self._bytes_in_flight = 0
        self._replies: set[asyncio.Task[None]] = set()
        self._jetstream = jetstream
        #: Requests dropped for a reply subject that is no inbox.
        self.refused = 0

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready()
        sub = await self._nc.subscribe_direct(self._subject, self._on_raw, queue=self._queue)
        try:
            await asyncio.Event().wait()
        finally:
            await self._nc.unsubscribe_direct(sub)
            self._backlog.clear()
            self._backlog_bytes = 0
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=10)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        answer = reply.decode(errors="replace")
        if answer and not self._jetstream and not subjects.is_reply(answer):
            self.refused += 1
            if self.refused % 1000 == 1:  # hostile traffic must not flood the log either
                log.warning(
                    "request dropped: its reply subject is no inbox",
                    extra={"subject": self._subject, "reply": answer[:64], "dropped": self.refused},
                )
            return
        msg = Request(self._nc, subject.decode(errors="replace"), answer, data, parse_headers(headers))
        msg.nc = self._nc
        if not self._backlog and self._fits(len(data)):
            self._start(msg)
        elif self._backlog_bytes + len(data) <= MAX_BACKLOG_BYTES:
            self._backlog.append(msg)
            self._backlog_bytes += len(data)
        else:
            # A flood beyond what we hold in memory: say so at once rather than grow without bound.
            busy = ApiError(code=ErrorCode.UNAVAILABLE, message="too many requests in flight; retry shortly")
            self._start_reply(msg, busy.body())

    def _fits(self, size: int) -> bool:
        if len(self._tasks) >= self._max_in_flight:
            return False
        limit = self._max_bytes_in_flight
        return limit is None or not self._tasks or self._bytes_in_flight + size <= limit

    def _start(self, msg: Request) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._tasks[task] = len(msg.data)
        self._bytes_in_flight += len(msg.data)
        task.add_done_callback(self._done)

    def _start_reply(self, msg: Request, body: bytes) -> None:
        task = asyncio.create_task(msg.respond(body))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._bytes_in_flight -= self._tasks.pop(task, 0)
        while self._backlog and self._fits(len(self._backlog[0].data)):
            msg = self._backlog.popleft()
            self._backlog_bytes -= len(msg.data)
            self._start(msg)

    async def _handle(self, msg: Request) -> None:
        try:
            await self._handler(msg)
        except Exception as exc:
            log.exception("handler failed", extra={"subject": msg.subject})
            try:
                await msg.respond(
                    ApiError(
                        code=ErrorCode.INTERNAL, message=f"the request failed: {type(exc).__name__}"
                    ).body()
                )
            except Exception:
                log.exception("could not answer a failed request", extra={"subject": msg.subject})
