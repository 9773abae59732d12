"""A subject's requests handled in tasks of their own, bounded in number and, where asked, in bytes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import nats
import orjson
import pytest

from jetsched.bus import subscriber
from jetsched.bus.connect import connect
from jetsched.bus.subscriber import Request, Subscriber
from jetsched.core.clock import FakeClock
from jetsched.devkit.waiting import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from nats.aio.client import Client

    from jetsched.devkit.nats_server import NatsServer

SUBJECT = "t.work"
#: A header block of about 60 KB, sent with an empty body.
PADDING = {"X-Pad": "x" * 60_000}


class Held:
    """A handler that keeps each request labelled by its body's first byte until the test lets it go."""

    def __init__(self) -> None:
        self.released: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.running: set[str] = set()
        self.peak = 0

    def release(self, label: str) -> None:
        self.released.setdefault(label, asyncio.Event()).set()

    async def __call__(self, msg: Request) -> None:
        label = msg.data[:1].decode()
        if label == "p":
            await msg.respond(b"pong")
            return
        self.started.append(label)
        self.running.add(label)
        self.peak = max(self.peak, len(self.running))
        if label.isupper():  # lower case and empty bodies are answered at once
            await self.released.setdefault(label, asyncio.Event()).wait()
        self.running.discard(label)
        await msg.respond(label.encode() or b"ok")


@asynccontextmanager
async def serving(
    nats_server: NatsServer, handle: Held, **options: Any
) -> AsyncIterator[tuple[Client, Subscriber]]:
    nc = await connect(nats_server.url, "test-subscriber")
    sub = Subscriber(nc, SUBJECT, handle, **options)
    serve = asyncio.create_task(sub.run())
    client = await nats.connect(nats_server.url)
    try:

        async def subscribed() -> bool:
            try:
                return (await client.request(SUBJECT, b"ping", timeout=0.5)).data == b"pong"
            except nats.errors.Error:
                return False

        await eventually(subscribed, what="the subscriber serving")
        yield client, sub
    finally:
        await client.close()
        serve.cancel()
        await asyncio.gather(serve, return_exceptions=True)
        await nc.close()


def ask(client: Client, body: bytes, headers: dict[str, str] | None = None) -> asyncio.Task[Any]:
    return asyncio.create_task(client.request(SUBJECT, body, timeout=10, headers=headers))


def code(reply: Any) -> str | None:
    error = orjson.loads(reply.data).get("error") if reply.data.startswith(b"{") else None
    return None if error is None else str(error["code"])


async def test_bytes_in_flight_let_requests_in_turn_by_turn(nats_server: NatsServer) -> None:
    """Requests that would pass `max_bytes_in_flight` together wait, in order, for those being handled;
    one alone is let in whatever its size. (Without the bound all four ran at once: intake took any
    number of 2,000-step workflow submits together, each multiplying every other request's wait.)"""
    held = Held()
    async with serving(nats_server, held, max_bytes_in_flight=1000) as (client, _):
        sizes = {"A": 600, "B": 600, "C": 1500, "D": 100}
        asked = [ask(client, label.encode() * size) for label, size in sizes.items()]
        await client.flush()
        for label in "ABCD":
            await eventually(lambda: label in held.started, what=f"{label} started")  # noqa: B023  # awaited here
            held.release(label)
        answers = [reply.data for reply in await asyncio.gather(*asked)]
    assert answers == [b"A", b"B", b"C", b"D"]
    assert held.started == ["A", "B", "C", "D"]
    assert held.peak == 1  # each weighs its body plus REQUEST_OVERHEAD_BYTES: any two are over the bound


async def test_a_small_request_passes_a_queue_of_large_ones(nats_server: NatsServer) -> None:
    """Under `max_bytes_in_flight`, small requests take turns in a lane of their own: one is handled
    while a large one runs and another waits. (Without it a 1-step workflow submit waited behind every
    2,000-step one queued before it, past the SDK's 5 s timeout behind 10-15 of them.)"""
    held = Held()
    async with serving(nats_server, held, max_bytes_in_flight=32_000) as (client, _):
        large = [ask(client, label.encode() * 20_000) for label in "AB"]
        await eventually(lambda: held.started == ["A"], what="A started")
        small = await client.request(SUBJECT, b"s" * 100, timeout=5)
        assert held.started == ["A", "s"]  # B still waits for A
        for label in "AB":
            held.release(label)
        answers = [reply.data for reply in await asyncio.gather(*large)]
    assert small.data == b"s"
    assert answers == [b"A", b"B"]


async def test_headers_weigh_on_the_backlog(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting request weighs its header bytes too: empty bodies under 60 KB of headers fill a 1 MiB
    backlog after 17, and the rest are answered `unavailable` at once. (Only bodies were counted: 3,000
    such requests held 258 MiB of a 64 MiB backlog.)"""
    monkeypatch.setattr(subscriber, "MAX_BACKLOG_BYTES", 1024 * 1024)
    held = Held()
    async with serving(nats_server, held, max_in_flight=1) as (client, _):
        first = ask(client, b"A")
        await eventually(lambda: held.started == ["A"], what="A started")
        padded = [ask(client, b"", PADDING) for _ in range(40)]
        await eventually(lambda: sum(t.done() for t in padded) >= 40 - 17, timeout=5, what="refusals")
        refused = [code(task.result()) for task in padded if task.done()]
        assert held.started == ["A"]  # those answered were answered without their turn
        held.release("A")
        answers = [code(reply) for reply in await asyncio.gather(first, *padded)]
    assert refused == ["unavailable"] * (40 - 17)
    assert answers.count("unavailable") == 40 - 17
    assert len(held.started) == 1 + 17


async def test_the_backlog_holds_so_many_requests(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `MAX_BACKLOG` waiting requests, however small, the next are answered `unavailable` at once."""
    monkeypatch.setattr(subscriber, "MAX_BACKLOG", 5)
    held = Held()
    async with serving(nats_server, held, max_in_flight=1) as (client, _):
        first = ask(client, b"A")
        await eventually(lambda: held.started == ["A"], what="A started")
        rest = [ask(client, b"") for _ in range(8)]
        await eventually(lambda: sum(t.done() for t in rest) >= 3, timeout=5, what="refusals")
        refused = [code(task.result()) for task in rest if task.done()]
        held.release("A")
        answers = [code(reply) for reply in await asyncio.gather(first, *rest)]
    assert refused == ["unavailable"] * 3
    assert answers.count(None) == 1 + 5


async def test_a_request_that_waited_too_long_is_answered_not_handled(nats_server: NatsServer) -> None:
    """A request whose turn comes after `max_wait_s` is answered `unavailable` and never handled: its
    client has likely given up. (It was handled: an unkeyed workflow made after its client saw a
    timeout, and again by the client's retry.)"""
    clock = FakeClock(start_ms=1_000_000, autojump=False)
    held = Held()
    options: dict[str, Any] = {"max_in_flight": 1, "max_wait_s": 3.0, "clock": clock}
    async with serving(nats_server, held, **options) as (client, sub):
        first = ask(client, b"A")
        await eventually(lambda: held.started == ["A"], what="A started")
        late = [ask(client, label) for label in (b"b", b"c")]
        await eventually(lambda: sub.waiting == 2, what="b and c waiting")
        clock.advance(3.001)
        fresh = ask(client, b"d")
        await eventually(lambda: sub.waiting == 3, what="d waiting")
        held.release("A")
        replies = await asyncio.gather(first, *late, fresh)
        answers = [code(reply) or reply.data for reply in replies]
    assert answers == [b"A", "unavailable", "unavailable", b"d"]
    assert held.started == ["A", "d"]
