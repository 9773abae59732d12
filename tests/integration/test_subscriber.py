"""A subject's requests handled in tasks of their own, bounded in number and, where asked, in bytes."""

from __future__ import annotations

import asyncio

import nats

from jetsched.bus.connect import connect
from jetsched.bus.subscriber import Request, Subscriber
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually

SUBJECT = "t.work"


async def test_bytes_in_flight_let_requests_in_turn_by_turn(nats_server: NatsServer) -> None:
    """Requests whose bodies would pass `max_bytes_in_flight` together wait, in order, for those being
    handled; one alone is let in whatever its size. (Without the bound all four ran at once: intake took
    any number of 2,000-step workflow submits together, each multiplying every other request's wait.)"""
    released = {label: asyncio.Event() for label in "ABCD"}
    started: list[str] = []
    running: set[str] = set()
    peak = 0

    async def handle(msg: Request) -> None:
        nonlocal peak
        label = msg.data[:1].decode()
        if label == "p":
            await msg.respond(b"pong")
            return
        started.append(label)
        running.add(label)
        peak = max(peak, len(running))
        await released[label].wait()
        running.discard(label)
        await msg.respond(label.encode())

    nc = await connect(nats_server.url, "test-subscriber")
    serving = asyncio.create_task(Subscriber(nc, SUBJECT, handle, max_bytes_in_flight=1000).run())
    client = await nats.connect(nats_server.url)
    try:

        async def subscribed() -> bool:
            try:
                return (await client.request(SUBJECT, b"ping", timeout=0.5)).data == b"pong"
            except nats.errors.Error:
                return False

        await eventually(subscribed, what="the subscriber serving")
        sizes = {"A": 600, "B": 600, "C": 1500, "D": 100}
        asked = [
            asyncio.create_task(client.request(SUBJECT, label.encode() * size, timeout=10))
            for label, size in sizes.items()
        ]
        await client.flush()
        for label in "ABCD":
            await eventually(lambda: label in started, what=f"{label} started")  # noqa: B023  # awaited here
            released[label].set()
        answers = [reply.data for reply in await asyncio.gather(*asked)]
    finally:
        await client.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await nc.close()
    assert answers == [b"A", b"B", b"C", b"D"]
    assert started == ["A", "B", "C", "D"]
    assert peak == 1  # A and B: 1,200 bytes; C alone; D waits behind C although it would fit with B
