"""A lean path for the hot subjects: handlers called straight from the protocol parser.

nats-py delivers a message by building a `Msg`, parsing its headers with a general parser, queueing it
and waking the subscription's task, which then awaits the callback: about 15 µs of CPU per message, the
largest single cost per job (docs/performance.md). A direct subscription's handler is a plain function
called with the raw subject, reply, payload and header block as the parser hands them over. It must not
block; whatever has to await schedules itself. Replies to `request()` are matched to their futures the
same way, over one wildcard inbox.

This overrides two private parts of nats-py's client (`_process_msg`, and the parser `_ps` with one that
reads `MSG`/`HMSG` frames without regular expressions and hands direct messages over without a
coroutine), pinned by the version range in `pyproject.toml` and exercised by every integration test. Every
other subscription and protocol line takes nats-py's own path unchanged, and nats-py still owns the
connection, reconnects and re-subscribes.

Every publish is checked against the server's `max_payload` for body *and* headers before it is written:
nats-py checks the body alone, and the server answers an oversized message with `-ERR 'Maximum Payload
Violation'` and closes the connection — one hostile request must cost a `MaxPayloadError` here, never the
connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from nats.aio.client import _HEADER_VALUE_NEWLINES, Client
from nats.errors import BadHeaderError, BadSubjectError, MaxPayloadError, NoRespondersError
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

if TYPE_CHECKING:
    from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

#: (subject, reply, payload, raw header block or b"")
DirectHandler: TypeAlias = Callable[[bytes, bytes, bytes, bytes], None]

_NO_RESPONDERS = b"NATS/1.0 503"
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 7230 token, as nats-py checks
#: How often requests past their timeout are failed.
SWEEP_S = 0.05


class Connection(Client):
    """nats-py's client plus direct subscriptions, lean requests, reconnect listeners and loss detection."""

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, DirectHandler] = {}
        self._waiting: dict[bytes, asyncio.Future[tuple[bytes, bytes, bytes]]] = {}
        self._deadlines: dict[bytes, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reply_prefix = ""
        self._token = 0
        self._on_reconnect: list[Callable[[], None]] = []
        #: One event per view fed from a stream, set once it has replayed (what readiness waits for).
        self.views: list[asyncio.Event] = []
        self._ps = _Parser(self)
        #: The server connected to (or the URLs tried), without credentials: for messages.
        self.server_url = ""
        self._asked_to_close = False
        self._lost = asyncio.Event()

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
        else:
            _deliver(handler, subject, reply, data, headers or b"")

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: dict[str, Any] | None
    ) -> None:
        """nats-py's, with headers counted against `max_payload` and written in one go (~3 µs less each)."""
        if not headers:
            await super()._send_publish(subject, reply, payload, payload_size, headers)
            return
        if not subject:
            raise BadSubjectError
        block = header_block(headers)
        if len(block) + payload_size > self._max_payload:
            raise MaxPayloadError(
                f"{payload_size} bytes of body and {len(block)} of headers exceed the server's limit of"
                f" {self._max_payload}"
            )
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(
            b"HPUB %s %s %d %d\r\n%s%s\r\n"
            % (subject.encode(), reply.encode(), len(block), len(block) + payload_size, block, payload)
        )
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def subscribe_direct(self, subject: str, handler: DirectHandler, queue: str = "") -> Subscription:
        # The handler is in place before the SUB goes out: nats-py numbers subscriptions in sequence.
        sid = self._sid + 1
        self._direct[sid] = handler
        try:
            sub = await self.subscribe(subject, queue=queue)
        except BaseException:
            self._direct.pop(sid, None)
            raise
        assert sub._id == sid, "nats-py changed how it numbers subscriptions"
        return sub

    async def unsubscribe_direct(self, sub: Subscription) -> None:
        self._direct.pop(sub._id, None)
        await sub.unsubscribe()

    def forget_direct(self, sub: Subscription) -> None:
        """Stop handing `sub`'s messages to its handler at once; `unsubscribe_direct` may follow later."""
        self._direct.pop(sub._id, None)

    async def request_raw(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> tuple[bytes, bytes]:
        """One request: the reply's (payload, raw header block). `NoRespondersError`, `TimeoutError`."""
        data, header_block, _ = await self.request_routed(subject, payload, timeout, headers)
        return data, header_block

    async def request_routed(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> tuple[bytes, bytes, bytes]:
        """`request_raw`, plus the tokens the replier appended to the reply subject (b"" if none).

        A replier may have the answer sent by someone else to `<reply>.<tokens>`: intake has JetStream
        ack a stored record straight to the client, naming the job in the tokens (docs/protocol.md).
        """
        if not self._reply_prefix:
            prefix = self.new_inbox() + "."
            await self.subscribe_direct(prefix + ">", self._on_reply)
            self._reply_prefix = prefix
            self._sweeper = asyncio.create_task(self._expire_requests())  # held: a task needs a reference
        self._token += 1
        token = str(self._token)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bytes, bytes, bytes]] = loop.create_future()
        key = token.encode()
        self._waiting[key] = future
        self._deadlines[key] = loop.time() + timeout
        try:
            await self.publish(subject, payload, reply=self._reply_prefix + token, headers=headers)
            data, header_block, tail = await future
        finally:
            del self._waiting[key], self._deadlines[key]
        if header_block.startswith(_NO_RESPONDERS):
            raise NoRespondersError
        return data, header_block, tail

    async def _expire_requests(self) -> None:
        # One sweep for all requests instead of a timer each: a timeout fires up to a sweep late.
        loop = asyncio.get_running_loop()
        while not self.is_closed:
            await asyncio.sleep(SWEEP_S)
            now = loop.time()
            for key in [k for k, deadline in self._deadlines.items() if deadline <= now]:
                future = self._waiting[key]
                if not future.done():
                    future.set_exception(TimeoutError())

    def _on_reply(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        token, _, tail = subject[len(self._reply_prefix) :].partition(b".")
        future = self._waiting.get(token)
        if future is not None and not future.done():
            future.set_result((data, headers, tail))

    def add_reconnect_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every reconnect; returns a function that removes it."""
        self._on_reconnect.append(listener)
        return lambda: self._on_reconnect.remove(listener)

    def reconnected(self) -> None:
        for listener in list(self._on_reconnect):
            listener()

    # nats-py calls `close()` itself only when it runs out of servers to try, which it never does with
    # `max_reconnect_attempts=-1` (connect.py); any other close it makes goes through `_close()`.
    async def close(self) -> None:
        self._asked_to_close = True
        await super().close()

    async def drain(self) -> None:
        self._asked_to_close = True
        await super().drain()

    def closed(self) -> None:
        """nats-py has closed the client for good (its `closed_cb`): lost, unless `close()` or `drain()` did it."""
        if not self._asked_to_close:
            self._lost.set()

    @property
    def is_lost(self) -> bool:
        """Closed for good without `close()` or `drain()`: true from the moment nats-py starts closing."""
        return self.is_closed and not self._asked_to_close

    async def wait_lost(self) -> None:
        """Return once the connection is lost for good (see `jetsched.bus.connect`)."""
        await self._lost.wait()


def _deliver(handler: DirectHandler, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
    """Hand a message to a direct handler; its failure is logged, never the reader's."""
    try:
        handler(subject, reply, data, headers)
    except Exception:
        log.exception("direct handler failed", extra={"subject": subject.decode(errors="replace")})


def _plain_header(item: tuple[str, Any]) -> bool:
    """A header nats-py would send unchanged: a clean name, a string value without line breaks."""
    name, value = item
    return (
        isinstance(value, str)
        and _HEADER_NAME.fullmatch(name) is not None
        and "\r" not in value
        and "\n" not in value
        and value == value.strip()
    )


def header_block(headers: dict[str, Any]) -> bytes:
    """The `NATS/1.0` header block nats-py would write for `headers` (the same bytes, tested)."""
    if all(map(_plain_header, headers.items())):
        return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    lines = ["NATS/1.0"]
    for name, value in headers.items():
        key = name.strip()
        if not key:
            continue  # nats-py skips empty names
        if not _HEADER_NAME.fullmatch(key):
            raise BadHeaderError(key)
        lines.append(f"{key}: {value.strip().translate(_HEADER_VALUE_NEWLINES)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_headers(block: bytes) -> dict[str, str] | None:
    """`NATS/1.0[ status]\\r\\nName: value\\r\\n...` as a dict (last value wins); None if there are none."""
    if not block:
        return None
    lines = block.split(b"\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:  # undecodable bytes are kept as U+FFFD: a header is never a reason to drop a message
            headers[name.decode(errors="replace")] = value.strip().decode(errors="replace")
    return headers


class _Parser(Parser):
    """nats-py's parser reading every `MSG`/`HMSG` frame itself; other lines go to nats-py's, one at a time.

    Fields of a frame's line are split on spaces only: a subject may hold other bytes that Python and
    nats-py's regular expressions count as whitespace (vertical tab, form feed), and one message with such a
    subject must not stop the reader (it used to, deafening every subscription of the connection).
    """

    nc: Connection

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        direct = self.nc._direct
        while buf and self.state == AWAITING_CONTROL_LINE:
            end = buf.find(b"\r\n")
            if end < 0:
                return  # the rest of the line is still on its way
            if not buf.startswith((b"MSG ", b"HMSG ")):
                await self._control_line(end)
                continue
            parts = [part for part in bytes(buf[:end]).replace(b"\t", b" ").split(b" ") if part]
            if parts[0] == b"MSG":  # MSG <subject> <sid> [reply] <size>
                header_size, reply = 0, parts[3] if len(parts) == 5 else b""
            else:  # HMSG <subject> <sid> [reply] <header size> <total size>
                header_size, reply = int(parts[-2]), parts[3] if len(parts) == 6 else b""
            start = end + 2
            stop = start + int(parts[-1])
            if len(buf) < stop + 2:
                return  # the payload is still on its way; the line is read again then
            headers = bytes(buf[start : start + header_size]) if header_size else b""
            payload = bytes(buf[start + header_size : stop])
            del buf[: stop + 2]
            sid = int(parts[2])
            handler = direct.get(sid)
            if handler is None:
                await self.nc._process_msg(sid, parts[1], reply, payload, headers)
            else:
                _deliver(handler, parts[1], reply, payload, headers)

    async def _control_line(self, end: int) -> None:
        """Hand one line that is not a message (INFO, PING, +OK, -ERR...) to nats-py's parser, alone."""
        rest = self.buf
        self.buf = bytearray(rest[: end + 2])
        del rest[: end + 2]
        try:
            await super().parse()
        finally:
            rest[:0] = self.buf  # whatever nats-py left unread (nothing, for a whole line)
            self.buf = rest
