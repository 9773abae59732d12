"""The nats-py port: its contract names what changed, and a broken contract means the public path."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.aio.transport import TcpTransport
from nats.protocol import parser as nats_parser

from jetsched.bus import natspy
from jetsched.bus.direct import Connection, _status_block, parse_headers


def test_the_installed_nats_py_keeps_the_contract() -> None:
    """Every private name the fast path relies on is there, as used. If this fails, read its message: it
    names what changed; `connection()` falls back to the public path meanwhile (slower, still correct)."""
    assert natspy.broken() == []


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (Client, "_process_msg", "Client._process_msg is gone"),
        (Client, "_send_publish", "Client._send_publish is gone"),
        (Client, "_send_ping", "Client._send_ping is gone"),
        (nats_parser, "AWAITING_CONTROL_LINE", "nats.protocol.parser.AWAITING_CONTROL_LINE is gone"),
    ],
)
def test_a_missing_name_is_named(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, named: str
) -> None:
    """A private name that disappears is reported by name."""
    monkeypatch.delattr(owner, name)
    assert named in natspy.broken()


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private method whose parameters changed is reported with both signatures."""

    async def renamed(self: Client, sid: int, subj: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        del self, sid, subj, reply, data, headers

    monkeypatch.setattr(Client, "_process_msg", renamed)
    (problem,) = natspy.broken()
    assert problem.startswith("Client._process_msg takes ['self', 'sid', 'subj'")


def test_an_attribute_gone_from_an_instance_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attributes nats-py sets in `__init__` (the pending buffer, the transport's writer) are checked too."""
    init = TcpTransport.__init__

    def without_writer(self: TcpTransport) -> None:
        init(self)  # type: ignore[no-untyped-call]
        del self._io_writer

    monkeypatch.setattr(TcpTransport, "__init__", without_writer)
    assert natspy.broken() == ["_io_writer is gone"]


def test_a_broken_contract_gives_the_public_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(natspy, "_fast_ok", None)
    monkeypatch.delattr(Client, "_send_publish")
    assert type(natspy.connection()) is Connection


def test_the_public_path_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(natspy.PATH_ENV, "public")
    assert type(natspy.connection()) is Connection
    monkeypatch.delenv(natspy.PATH_ENV)
    assert type(natspy.connection()) is natspy.FastConnection


@pytest.mark.parametrize(
    ("headers", "block"),
    [
        (
            {"Status": "100", "Description": "Idle Heartbeat", "Nats-Last-Consumer": "7"},
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\n\r\n",
        ),
        ({"Status": "503"}, b"NATS/1.0 503\r\n\r\n"),
        ({"Jetsched-State": "ready"}, b"NATS/1.0\r\nJetsched-State: ready\r\n\r\n"),
    ],
)
def test_public_path_rebuilds_the_header_block(headers: dict[str, str], block: bytes) -> None:
    """Headers nats-py parsed (its status line as `Status` and `Description`) become the block again."""
    assert _status_block(headers) == block
    assert parse_headers(block) == {k: v for k, v in headers.items() if k not in ("Status", "Description")}


class FakeSocket:
    """An asyncio write transport that records what is written to it, in order."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.unsent = 0

    def writelines(self, data: list[bytes]) -> None:
        self.written.append(b"".join(data))

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return False


class FakeWriter:
    def __init__(self, socket: FakeSocket) -> None:
        self.transport = socket

    def write(self, data: bytes) -> None:
        self.transport.write(data)


class FakeTransport:
    """nats-py's `TcpTransport` as the port reads it: its stream writer, and `write` for PING."""

    def __init__(self, socket: FakeSocket) -> None:
        self._io_writer = FakeWriter(socket)

    def write(self, data: bytes) -> None:
        self._io_writer.write(data)

    async def drain(self) -> None:
        pass


async def connected(socket: FakeSocket) -> natspy.FastConnection:
    """A fast connection as nats-py leaves it once connected, over `socket`; its flusher task idle."""
    nc = natspy.FastConnection()
    nc._status = Client.CONNECTED
    nc._transport = FakeTransport(socket)  # type: ignore[assignment]
    nc._flush_queue = asyncio.Queue(maxsize=1024)
    nc._flusher_task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    return nc


async def test_commands_of_one_loop_turn_go_out_in_one_write_in_order() -> None:
    """PUB, HPUB and nats-py's own SUB written in one turn: one write, in the order made, not via the flusher."""
    socket = FakeSocket()
    nc = await connected(socket)
    await nc.publish("a", b"1")
    await nc.subscribe("b")
    await nc.publish("c", b"2", headers={"K": "v"})
    assert socket.written == []
    await asyncio.sleep(0)
    assert socket.written == [b"PUB a  1\r\n1\r\nSUB b  1\r\nHPUB c  18 19\r\nNATS/1.0\r\nK: v\r\n\r\n2\r\n"]
    assert nc._pending == []
    assert nc._pending_data_size == 0
    assert nc._flush_queue is not None
    assert nc._flush_queue.empty()
    await nc.publish("d", b"3")
    await asyncio.sleep(0)
    assert socket.written[1:] == [b"PUB d  1\r\n3\r\n"]


async def test_ping_goes_out_after_what_is_pending() -> None:
    """A flush's PING must follow the publishes before it (nats-py writes it ahead of them)."""
    socket = FakeSocket()
    nc = await connected(socket)
    await nc.publish("a", b"1")
    await nc._send_ping()
    assert socket.written == [b"PUB a  1\r\n1\r\n", b"PING\r\n"]


async def test_while_reconnecting_publishes_stay_pending() -> None:
    """Not connected: nothing is written; nats-py keeps the buffer and writes it after the reconnect."""
    socket = FakeSocket()
    nc = await connected(socket)
    nc._status = Client.RECONNECTING
    nc._max_pending_size = 1024
    await nc.publish("a", b"1")
    await asyncio.sleep(0)
    assert socket.written == []
    assert nc._pending == [b"PUB a  1\r\n1\r\n"]


async def test_unsent_data_leaves_the_pace_to_nats_py_s_flusher() -> None:
    """With data the socket has not taken yet, nats-py's flusher (which waits for it to drain) writes."""
    socket = FakeSocket()
    nc = await connected(socket)
    socket.unsent = 1
    await nc.publish("a", b"1")
    await asyncio.sleep(0)
    assert socket.written == []
    assert nc._flush_queue is not None
    assert nc._flush_queue.qsize() == 1

    # The same when the socket backs up between the publish and the write at the end of the turn.
    socket.unsent = 0
    nc._flush_queue = asyncio.Queue()
    await nc.publish("b", b"2")
    socket.unsent = 1
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert socket.written == []
    assert nc._flush_queue.qsize() == 1
    assert nc._pending == [b"PUB a  1\r\n1\r\n", b"PUB b  1\r\n2\r\n"]
