"""The direct path's protocol parser: whole frames, split anywhere, reach the right handler in order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import MaxPayloadError

from jetsched.bus.direct import parse_headers
from jetsched.bus.natspy import FastConnection, _Parser


class FakeConnection:
    """What the parser touches on the client: direct handlers, nats-py's slow path, PING handling."""

    def __init__(self) -> None:
        self.direct_seen: list[tuple[bytes, bytes, bytes, bytes]] = []
        self.slow_seen: list[tuple[int, bytes, bytes, bytes, Any]] = []
        self.pings = 0
        self._direct = {1: lambda *message: self.direct_seen.append(message)}

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        self.slow_seen.append((sid, subject, reply, data, headers or b""))

    async def _process_ping(self) -> None:
        self.pings += 1


HEADERS = b"NATS/1.0\r\nJetsched-State: ready\r\n\r\n"
FRAMES = [
    b"MSG a.b 1 5\r\nhello\r\n",
    b"MSG a.b 1 _INBOX.x.1 0\r\n\r\n",
    b"HMSG $KV.jobs.J1 1 $JS.ACK.s.c.1.2.3.4.0 %d %d\r\n%sbody\r\n"
    % (len(HEADERS), len(HEADERS) + 4, HEADERS),
    b"PING\r\n",
    b"MSG hb.a\x0bb\x0c 1 2\r\nhi\r\n",  # bytes regular expressions take for whitespace, in a subject
    b"HMSG _INBOX.y.2 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
    b"MSG other 2 3\r\nxyz\r\n",
]
DIRECT = [
    (b"a.b", b"", b"hello", b""),
    (b"a.b", b"_INBOX.x.1", b"", b""),
    (b"$KV.jobs.J1", b"$JS.ACK.s.c.1.2.3.4.0", b"body", HEADERS),
    (b"hb.a\x0bb\x0c", b"", b"hi", b""),
]
SLOW = [
    (2, b"_INBOX.y.2", b"", b"", b"NATS/1.0 503\r\n\r\n"),
    (2, b"other", b"", b"xyz", b""),
]


@given(cuts=st.lists(st.integers(min_value=0, max_value=sum(map(len, FRAMES))), max_size=12))
async def test_frames_split_anywhere_arrive_whole_and_in_order(cuts: list[int]) -> None:
    stream = b"".join(FRAMES)
    nc = FakeConnection()
    parser = _Parser(nc)
    bounds = [0, *sorted(cuts), len(stream)]
    for start, stop in itertools.pairwise(bounds):
        await parser.parse(stream[start:stop])
    assert nc.direct_seen == DIRECT
    assert [(sid, subject, data, headers) for sid, subject, _, data, headers in nc.slow_seen] == [
        (sid, subject, data, headers) for sid, subject, _, data, headers in SLOW
    ]
    assert nc.pings == 1


def test_parse_headers() -> None:
    assert parse_headers(b"") is None
    assert parse_headers(HEADERS) == {"Jetsched-State": "ready"}
    assert parse_headers(b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 7\r\n\r\n") == {
        "Nats-Last-Consumer": "7"
    }


def _headers_piece_by_piece(block: bytes) -> dict[str, str] | None:
    """`parse_headers` as it was: each name and value decoded apart, values stripped as bytes."""
    if not block:
        return None
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.decode(errors="replace")] = value.strip().decode(errors="replace")
    return headers


_PIECES = st.sampled_from(
    [
        b"\r\n",
        b":",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\x0b",
        b"\x85",
        b"\xa0",
        b"\xc3",
        b"\xa9",
        b"\xe2\x80\xa8",
        b"\xff",
        b"Name",
        b"value",
        b"NATS/1.0",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.binary(max_size=4)), max_size=24))
def test_headers_decoded_at_once_read_as_piece_by_piece(pieces: list[bytes]) -> None:
    """Decoding the block once finds the same names and values as decoding each apart, whatever the
    bytes (invalid UTF-8, Unicode spaces, stray CR or LF)."""
    block = b"".join(pieces)
    assert parse_headers(block) == _headers_piece_by_piece(block)


class RecordingConnection(FastConnection):
    """A client never connected: what it would write stays in nats-py's pending buffer."""

    @property
    def written(self) -> list[bytes]:
        return self._pending


@pytest.mark.parametrize(
    "headers",
    [
        {"Jetsched-State": "ready", "Nats-Expected-Last-Subject-Sequence": "0"},
        {"traceparent": "00-abc-def-01", "Nats-Msg-Id": "J1:2:outcome"},
        {"Bad": " padded "},
        {"Bad": "line\r\nInjected: yes"},
        {" spaced ": "x"},
        {},
        None,
    ],
)
async def test_fast_headers_write_what_nats_py_writes(headers: dict[str, str] | None) -> None:
    """Headers needing no cleaning are written directly; the rest go nats-py's way. Same bytes either way."""
    fast, slow = RecordingConnection(), RecordingConnection()
    await fast._send_publish("a.b", "_INBOX.x.1", b"payload", 7, headers)
    await Client._send_publish(slow, "a.b", "_INBOX.x.1", b"payload", 7, headers)
    assert fast.written == slow.written


async def test_headers_count_against_max_payload() -> None:
    """A message whose body fits but whose headers take it over the limit is refused here, before the
    server would close the connection for it."""
    nc = RecordingConnection()
    body = b"x" * (nc._max_payload - 100)
    await nc._send_publish("a.b", "", body, len(body), {"Small": "y"})
    with pytest.raises(MaxPayloadError):
        await nc._send_publish("a.b", "", body, len(body), {"Pad": "p" * 200})
    with pytest.raises(MaxPayloadError):
        await nc._send_publish("a.b", "", body, len(body), {"Bad ": "p" * 200})  # nats-py's cleaning path
    assert len(nc.written) == 1
