"""The nats-py port: its contract names what changed, and a broken contract means the public path."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
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
