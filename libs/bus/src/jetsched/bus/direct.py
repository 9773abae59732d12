"""Direct subscriptions and lean requests over nats-py: handlers take raw frames, requests share one inbox.

A direct subscription's handler is a plain function called with the raw subject, reply, payload and
header block. It must not block; whatever has to await schedules itself. Replies to `request_routed()`
are matched to their futures over one wildcard inbox, with one timeout sweep for all of them.

This module uses nats-py's public API only: a direct handler is called from an ordinary subscription's
callback, with the header block rebuilt from the parsed headers. `natspy.FastConnection` (the port) calls
the same handlers straight from nats-py's protocol parser instead — about 15 µs less CPU per message, the
largest single cost per job (docs/performance.md) — and `connect()` uses it whenever nats-py still has the
private parts it relies on. Both paths run the same tests.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from nats.aio.client import Client
from nats.errors import BadHeaderError, MaxPayloadError, NoRespondersError
from nats.js.api import Header

from jetsched.core.clock import SystemClock

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from jetsched.core.clock import Clock

log = logging.getLogger(__name__)

#: (subject, reply, payload, raw header block or b"")
DirectHandler: TypeAlias = Callable[[bytes, bytes, bytes, bytes], None]

_NO_RESPONDERS = b"NATS/1.0 503"
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 7230 token, as nats-py checks
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})  # as nats-py cleans a value
#: How often requests past their timeout are failed.
SWEEP_S = 0.05


@dataclass(eq=False)
class DirectSubscription:
    """A subscription whose messages go to `handler`, until it is forgotten (None)."""

    handler: DirectHandler | None
    sub: Subscription = field(init=False)


class Connection(Client):
    """nats-py's client plus direct subscriptions, lean requests, reconnect listeners and loss detection."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: dict[bytes, asyncio.Future[tuple[bytes, bytes, bytes]]] = {}
        #: Each request's deadline, in `clock` milliseconds.
        self._deadlines: dict[bytes, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reply_prefix = ""
        self._token = 0
        self._on_reconnect: list[Callable[[], None]] = []
        #: One event per view fed from a stream, set once it has replayed (what readiness waits for).
        self.views: list[asyncio.Event] = []
        #: The server connected to (or the URLs tried), without credentials: for messages.
        self.server_url = ""
        self._asked_to_close = False
        self._lost = asyncio.Event()
        #: What request timeouts are measured on (a test's `FakeClock` runs them without waiting).
        self.clock: Clock = SystemClock()

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, Any] | None = None
    ) -> None:
        """nats-py's, with headers counted against `max_payload` (see the module's docstring)."""
        if headers:
            block = len(header_block(headers))
            if block + len(payload) > self.max_payload:
                raise MaxPayloadError(
                    f"{len(payload)} bytes of body and {block} of headers exceed the server's limit of"
                    f" {self.max_payload}"
                )
        await super().publish(subject, payload, reply, headers)

    async def subscribe_direct(
        self, subject: str, handler: DirectHandler, queue: str = ""
    ) -> DirectSubscription:
        direct = DirectSubscription(handler)

        async def deliver(msg: Msg) -> None:
            if direct.handler is not None:
                block = _status_block(msg.headers) if msg.headers else b""
                _deliver(direct.handler, msg.subject.encode(), msg.reply.encode(), msg.data, block)

        direct.sub = await self.subscribe(subject, queue=queue, cb=deliver)
        return direct

    async def unsubscribe_direct(self, direct: DirectSubscription) -> None:
        self.forget_direct(direct)
        await direct.sub.unsubscribe()

    def forget_direct(self, direct: DirectSubscription) -> None:
        """Stop handing the subscription's messages to its handler at once; `unsubscribe_direct` may follow."""
        direct.handler = None

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
        future: asyncio.Future[tuple[bytes, bytes, bytes]] = asyncio.get_running_loop().create_future()
        key = token.encode()
        self._waiting[key] = future
        self._deadlines[key] = self.clock.now_ms() + timeout * 1000
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
        while not self.is_closed:
            await self.clock.sleep(SWEEP_S)
            now = self.clock.now_ms()
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


#: Header names seen to be RFC 7230 tokens: the same few names go out again and again.
_PLAIN_NAMES: set[str] = set()


def _plain_header(item: tuple[str, Any]) -> bool:
    """A header nats-py would send unchanged: a clean name, a string value without line breaks."""
    name, value = item
    if not isinstance(value, str) or "\r" in value or "\n" in value or value != value.strip():
        return False
    if name in _PLAIN_NAMES:
        return True
    if _HEADER_NAME.fullmatch(name) is None:
        return False
    if len(_PLAIN_NAMES) < 1024:  # bounded: names come from callers, and a few are hostile
        _PLAIN_NAMES.add(name)
    return True


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
    headers: dict[str, str] = {}
    # Decoded once, not per name and value (the record feed parses ~9 headers a message): undecodable
    # bytes are kept as U+FFFD — a header is never a reason to drop a message — and no UTF-8 sequence
    # holds the ASCII ":" or CR LF, so splitting after decoding finds the same pieces.
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name] = value.strip(_ASCII_SPACE)
    return headers


#: What `bytes.strip()` strips; `str.strip()` would strip Unicode spaces too.
_ASCII_SPACE = " \t\n\r\x0b\x0c"


def _status_block(headers: dict[str, str]) -> bytes:
    """The header block nats-py parsed into `headers`, its status line (`Status`, `Description`) included."""
    fields = dict(headers)
    status = " ".join(filter(None, (fields.pop(Header.STATUS, ""), fields.pop(Header.DESCRIPTION, ""))))
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"NATS/1.0{' ' + status if status else ''}\r\n{lines}\r\n".encode()
