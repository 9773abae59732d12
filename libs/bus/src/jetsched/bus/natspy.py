"""The port: every use of nats-py's private names in jetsched, behind one contract and one switch.

Why it exists. nats-py delivers a message by building a `Msg`, parsing its headers with a general parser,
queueing it and waking the subscription's task, which then awaits the callback; and it checks and encodes
each header of a publish separately. On the hot subjects (submits, the record feed, work messages, request
replies) that cost ~15 µs of CPU per message, the largest single cost per job. `FastConnection` overrides
three private parts of nats-py's client — `_process_msg`, the parser `_ps` (one that reads `MSG`/`HMSG`
frames without regular expressions and hands direct messages over without a coroutine) and
`_send_publish` (headers formatted into the frame in one go) — and numbers direct subscriptions as
nats-py does (`_sid`, `Subscription._id`). It also writes nats-py's pending buffer itself, once per loop
turn from a `call_soon`, instead of kicking nats-py's flusher task through a queue for every turn with
output (`_flush_pending`; PING, which nats-py writes straight to the socket, after what is pending); it
leaves the writing to nats-py whenever it is not connected, the socket has unsent data or the pending
limit is reached. Everything else (connection, reconnects, re-subscribing, every other subscription and
protocol line) stays nats-py's own.

The contract. `CONTRACT` names each private thing relied on; `broken()` lists those missing or changed
in the nats-py installed. `tests/unit/bus/test_natspy.py` fails loudly, naming them, on any change, and
the version range in `pyproject.toml` pins nats-py to the minor release it was checked against (2.16).

The fallback. `connection()` returns the public-path `direct.Connection` — same API, nats-py's public
subscribe/publish only — when the contract does not hold (logged once, naming what broke) or when
`JETSCHED_NATS_PATH=public` asks for it. Lifecycle tests run through both (`test_public_path.py`).

Measured gain over the public path: docs/performance.md ("The nats-py port").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.aio.transport import TcpTransport
from nats.errors import BadSubjectError, MaxPayloadError
from nats.protocol import parser as nats_parser

from .direct import Connection, DirectHandler, DirectSubscription, _deliver, header_block

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

#: Set to `public` to use nats-py's public path even where the fast one would work.
PATH_ENV = "JETSCHED_NATS_PATH"


def _method(owner: type, name: str, *params: str) -> Callable[[], str | None]:
    def check() -> str | None:
        found = getattr(owner, name, None)
        if not callable(found):
            return f"{owner.__name__}.{name} is gone"
        have = list(inspect.signature(found).parameters)
        if have[: len(params)] != list(params):
            return f"{owner.__name__}.{name} takes {have}, not {list(params)}"
        return None

    return check


def _attribute(make: Callable[[], object], name: str, kind: type) -> Callable[[], str | None]:
    def check() -> str | None:
        made = make()
        if not hasattr(made, name):
            return f"{name} is gone"
        value = getattr(made, name)
        return (
            None if isinstance(value, kind) else f"{name} is a {type(value).__name__}, not a {kind.__name__}"
        )

    return check


def _constant(module: Any, name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if hasattr(module, name) else f"{module.__name__}.{name} is gone"

    return check


def _subscription_id() -> str | None:
    return None if getattr(Subscription(None, id=7), "_id", None) == 7 else "Subscription(id=n)._id is not n"


#: Each private thing of nats-py relied on, and how to tell it is still there as used.
CONTRACT: dict[str, Callable[[], str | None]] = {
    "Client._process_msg": _method(
        Client, "_process_msg", "self", "sid", "subject", "reply", "data", "headers"
    ),
    "Client._send_publish": _method(
        Client, "_send_publish", "self", "subject", "reply", "payload", "payload_size", "headers"
    ),
    "Client._send_command": _method(Client, "_send_command", "self", "cmd"),
    "Client._max_pending_size": _attribute(Client, "_max_pending_size", int),
    "Client._flush_pending": _method(Client, "_flush_pending", "self", "force_flush"),
    "Client._send_ping": _method(Client, "_send_ping", "self", "future"),
    "Client._pending": _attribute(Client, "_pending", list),
    "Client._pending_data_size": _attribute(Client, "_pending_data_size", int),
    "Client._flusher_task": _attribute(Client, "_flusher_task", type(None)),
    "Client._transport": _attribute(Client, "_transport", type(None)),
    "TcpTransport._io_writer": _attribute(TcpTransport, "_io_writer", type(None)),
    "Client._ps": _attribute(Client, "_ps", nats_parser.Parser),
    "Client._sid": _attribute(Client, "_sid", int),
    "Client._max_payload": _attribute(Client, "_max_payload", int),
    "Client._flush_queue": _attribute(Client, "_flush_queue", type(None)),
    "Subscription._id": _subscription_id,
    "Parser(nc)": _method(nats_parser.Parser, "__init__", "self", "nc"),
    "Parser.parse": _method(nats_parser.Parser, "parse", "self", "data"),
    "Parser.buf": _attribute(lambda: nats_parser.Parser(None), "buf", bytearray),
    "Parser.state": _attribute(lambda: nats_parser.Parser(None), "state", int),
    "parser.AWAITING_CONTROL_LINE": _constant(nats_parser, "AWAITING_CONTROL_LINE"),
}


def broken() -> list[str]:
    """What of `CONTRACT` the installed nats-py no longer provides as used (empty: the fast path is safe)."""
    problems = []
    for name, check in CONTRACT.items():
        try:
            problem = check()
        except Exception as exc:  # a check that cannot even run is a broken contract, said as such
            problem = f"{name}: {type(exc).__name__}: {exc}"
        if problem is not None:
            problems.append(problem)
    return problems


_fast_ok: bool | None = None


def connection() -> Connection:
    """A new client: the fast path if the contract holds and nobody asked for the public one."""
    global _fast_ok
    if os.environ.get(PATH_ENV) == "public":
        return Connection()
    if _fast_ok is None:
        problems = broken()
        _fast_ok = not problems
        if problems:
            log.warning("nats-py changed; using its public path (slower): %s", "; ".join(problems))
    return FastConnection() if _fast_ok else Connection()


class FastConnection(Connection):
    """`Connection` with direct messages handed over by the parser and headers written in one go."""

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, DirectHandler] = {}
        self._ps = _Parser(self)
        self._write_soon = False
        self._kicks: set[asyncio.Task[Any]] = set()

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
        else:
            _deliver(handler, subject, reply, data, headers or b"")

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, Any] | None = None
    ) -> None:
        # The size check with headers is `_send_publish`'s here, on the block it writes anyway.
        await Client.publish(self, subject, payload, reply, headers)

    async def _send_publish(
        self, subject: str, reply: str, payload: bytes, payload_size: int, headers: dict[str, Any] | None
    ) -> None:
        """nats-py's, with headers counted against `max_payload` and written in one go (~3 µs less each),
        and the frame appended to the pending buffer here rather than through `_send_command`."""
        if not subject:
            raise BadSubjectError
        if headers is not None:
            block = header_block(headers)
            if len(block) + payload_size > self._max_payload:
                raise MaxPayloadError(
                    f"{payload_size} bytes of body and {len(block)} of headers exceed the server's limit of"
                    f" {self._max_payload}"
                )
            frame = b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
                subject.encode(),
                reply.encode(),
                len(block),
                len(block) + payload_size,
                block,
                payload,
            )
        else:
            frame = b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), payload_size, payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        # nats-py's `_send_command`, then its kick of the flusher when none is due yet.
        self._pending.append(frame)
        self._pending_data_size += len(frame)
        if 0 < self._max_pending_size < self._pending_data_size:
            await self._flush_pending(force_flush=True)
        if not self._write_soon and self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _flush_pending(self, force_flush: bool = False) -> Any:
        """Written by one callback at the end of this loop turn, not by nats-py's flusher task.

        nats-py appends every command (PUB, HPUB, SUB, UNSUB, PONG) to `_pending`, then kicks its flusher
        through a queue: a future, a queue put and a task wake-up per loop turn with output, and a drain.
        Here one `call_soon` writes `_pending` as it then is — everything written in this loop turn, in
        the order written, in one `writelines`. nats-py's own path is kept whenever it matters: not
        connected (it keeps the buffer for the reconnect, or closes), a forced flush (the pending-size
        limit reached: it waits for the flusher), the flusher gone (it writes inline), a WebSocket, and a
        socket with data still unsent (its flusher waits for the socket to drain, which is what holds the
        pending buffer back until the limit makes publishers wait).
        """
        if force_flush or (not self._write_soon and self._socket() is None):
            return await super()._flush_pending(force_flush)
        if not self._write_soon:  # one write is due this turn already: it takes this command too
            self._write_soon = True
            asyncio.get_running_loop().call_soon(self._write_pending)
        return None

    def _socket(self) -> asyncio.WriteTransport | None:
        """The socket's transport, if `_pending` may go straight to it now (see `_flush_pending`)."""
        if not self.is_connected or self._flusher_task is None or self._flusher_task.done():
            return None
        writer: asyncio.StreamWriter | None = getattr(self._transport, "_io_writer", None)
        if writer is None:
            return None
        socket = writer.transport
        if socket.is_closing() or socket.get_write_buffer_size():
            return None
        return socket

    def _write_pending(self) -> None:
        self._write_soon = False
        if not self._pending:
            return
        socket = self._socket()
        if socket is not None:
            pending = self._pending
            self._pending = []
            self._pending_data_size = 0
            socket.writelines(pending)
        elif self.is_connected:
            # The socket backed up (or the flusher ended) since this was scheduled: nats-py's own path
            # writes it (its flusher, once the socket drains). Rare: a task is cheap enough here.
            kick = asyncio.get_running_loop().create_task(super()._flush_pending())
            self._kicks.add(kick)
            kick.add_done_callback(self._kicks.discard)
        # Not connected: nats-py keeps `_pending` and writes it after the reconnect.

    async def _send_ping(self, future: asyncio.Future[Any] | None = None) -> None:
        """nats-py writes PING to the socket at once, ahead of what is pending: pending goes first here."""
        if self._pending and self._socket() is not None:
            self._write_pending()
        await super()._send_ping(future)

    async def subscribe_direct(
        self, subject: str, handler: DirectHandler, queue: str = ""
    ) -> DirectSubscription:
        # The handler is in place before the SUB goes out: nats-py numbers subscriptions in sequence.
        sid = self._sid + 1
        self._direct[sid] = handler
        try:
            sub = await self.subscribe(subject, queue=queue)
        except BaseException:
            self._direct.pop(sid, None)
            raise
        assert sub._id == sid, "nats-py changed how it numbers subscriptions"
        direct = DirectSubscription(handler)
        direct.sub = sub
        return direct

    def forget_direct(self, direct: DirectSubscription) -> None:
        super().forget_direct(direct)
        self._direct.pop(direct.sub._id, None)


class _Parser(nats_parser.Parser):
    """nats-py's parser reading every `MSG`/`HMSG` frame itself; other lines go to nats-py's, one at a time.

    Fields of a frame's line are split on spaces only: a subject may hold other bytes that Python and
    nats-py's regular expressions count as whitespace (vertical tab, form feed), and one message with such a
    subject must not stop the reader (it used to, deafening every subscription of the connection).
    """

    nc: FastConnection

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        direct = self.nc._direct
        while buf and self.state == nats_parser.AWAITING_CONTROL_LINE:
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
