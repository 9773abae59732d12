"""An actor that serves one NATS subject: each message handled in its own task, bounded in number.

Messages arrive over a direct subscription (`direct.py`) and each gets its own task at once, so a handler
that awaits a JetStream round trip does not hold up the rest; past `max_in_flight` they wait in a backlog.
On stop the subscription goes first, then in-flight handlers finish.

What waits is bounded too, in number (`MAX_BACKLOG`) and in bytes (`MAX_BACKLOG_BYTES`), and every
request is weighed whole: body, raw header block and `REQUEST_OVERHEAD_BYTES` for the objects that hold
it — an empty body under 60 KB of headers is no free ride. A waiting request keeps its headers raw, since
parsed they may weigh several times their bytes (one wide character widens a whole string); a request
past either bound is answered `unavailable` at once.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.errors import MaxPayloadError

from jetsched.core import subjects
from jetsched.core.clock import SystemClock
from jetsched.core.errors import ApiError, ErrorCode

from .direct import parse_headers

if TYPE_CHECKING:
    from jetsched.core.clock import Clock

    from .direct import Connection

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[None]]
#: Bytes of requests waiting for a handler slot; past it, requests are refused as `unavailable` at once.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
#: Requests waiting for a handler slot; past it, likewise.
MAX_BACKLOG = 10_000
#: What a request weighs beyond its body and header bytes: the objects that hold it while it waits.
REQUEST_OVERHEAD_BYTES = 512
#: Under `max_bytes_in_flight`, requests of at most this fraction of it take turns in a lane of their own.
SMALL_SHARE = 16


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


@dataclass(slots=True)
class _Waiting:
    """A request as it arrived, kept raw until a handler takes it."""

    subject: bytes
    reply: str
    data: bytes
    headers: bytes
    cost: int
    since_ms: int


class _Lane:
    """Requests let in one after another, in order, while the bytes in flight stay under a bound."""

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.waiting: deque[_Waiting] = deque()
        self.bytes_in_flight = 0

    def fits(self, cost: int) -> bool:
        # One is always let in, whatever its size.
        limit = self.max_bytes
        return limit is None or not self.bytes_in_flight or self.bytes_in_flight + cost <= limit


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
        max_wait_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`ready`: awaited before subscribing, e.g. until the views the handler reads are complete.
        `jetstream`: the subject is a consumer's delivery, whose replies are JetStream's ack subjects
        (only JetStream may publish there). `max_bytes_in_flight`: requests handled at once weigh at most
        this many bytes between them, for handlers whose work grows with the request; the rest wait their
        turn, in order — small ones (`SMALL_SHARE`) in a lane of their own with its own such bound, so that
        a queue of the largest never holds them up. `max_wait_s`: a request that waited longer for its
        turn is answered `unavailable` instead of handled, since its client has likely given up: work
        done for a client that saw a timeout is work its retry does again."""
        self.name = f"sub:{subject}"
        self._ready = ready
        self._nc = nc
        self._subject = subject
        self._queue = queue
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._max_wait_ms = None if max_wait_s is None else max_wait_s * 1000
        self._clock = clock or SystemClock()
        self._small = 0 if max_bytes_in_flight is None else max_bytes_in_flight // SMALL_SHARE
        #: Small requests' lane first: a freed slot goes to them first.
        self._lanes = [_Lane(max_bytes_in_flight)]
        if max_bytes_in_flight is not None:
            self._lanes.append(_Lane(max_bytes_in_flight))
        self._backlog = 0
        self._backlog_bytes = 0
        #: Handlers running, and the lane and weight of the request each was given.
        self._tasks: dict[asyncio.Task[None], tuple[_Lane, int]] = {}
        self._replies: set[asyncio.Task[None]] = set()
        self._jetstream = jetstream
        #: Requests dropped for a reply subject that is no inbox.
        self.refused = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn."""
        return self._backlog

    async def run(self) -> None:
        if self._ready is not None:
            await self._ready()
        sub = await self._nc.subscribe_direct(self._subject, self._on_raw, queue=self._queue)
        try:
            await asyncio.Event().wait()
        finally:
            await self._nc.unsubscribe_direct(sub)
            for lane in self._lanes:
                lane.waiting.clear()
            self._backlog = self._backlog_bytes = 0
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
        cost = len(data) + len(headers) + REQUEST_OVERHEAD_BYTES
        request = _Waiting(subject, answer, data, headers, cost, self._clock.now_ms())
        lane = self._lanes[0] if cost <= self._small else self._lanes[-1]
        if not lane.waiting and self._fits(lane, cost):
            self._start(lane, request)
        elif self._backlog < MAX_BACKLOG and self._backlog_bytes + cost <= MAX_BACKLOG_BYTES:
            lane.waiting.append(request)
            self._backlog += 1
            self._backlog_bytes += cost
        else:
            # A flood beyond what we hold in memory: say so at once rather than grow without bound.
            self._refuse(request, "too many requests waiting; retry shortly")

    def _fits(self, lane: _Lane, cost: int) -> bool:
        return len(self._tasks) < self._max_in_flight and lane.fits(cost)

    def _start(self, lane: _Lane, request: _Waiting) -> None:
        task = asyncio.create_task(self._handle(self._request(request, parse_headers(request.headers))))
        self._tasks[task] = (lane, request.cost)
        lane.bytes_in_flight += request.cost
        task.add_done_callback(self._done)

    def _request(self, request: _Waiting, headers: dict[str, str] | None = None) -> Request:
        subject = request.subject.decode(errors="replace")
        msg = Request(self._nc, subject, request.reply, request.data, headers)
        msg.nc = self._nc
        return msg

    def _refuse(self, request: _Waiting, message: str) -> None:
        busy = ApiError(code=ErrorCode.UNAVAILABLE, message=message).body()
        task = asyncio.create_task(self._request(request).respond(busy))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def _done(self, task: asyncio.Task[None]) -> None:
        finished, cost = self._tasks.pop(task)
        finished.bytes_in_flight -= cost
        now = self._clock.now_ms()
        for lane in self._lanes:
            while lane.waiting:
                head = lane.waiting[0]
                waited = now - head.since_ms
                expired = self._max_wait_ms is not None and waited > self._max_wait_ms
                if not expired and not self._fits(lane, head.cost):
                    break
                lane.waiting.popleft()
                self._backlog -= 1
                self._backlog_bytes -= head.cost
                if expired:
                    self._refuse(head, f"waited {waited} ms for its turn; the service is busy, retry later")
                else:
                    self._start(lane, head)

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
