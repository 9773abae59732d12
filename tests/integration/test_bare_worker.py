"""A worker written against docs/protocol.md with nothing but a NATS client — as one in Go or Node would be."""

from __future__ import annotations

import asyncio

import nats
import orjson
from nats.aio.msg import Msg

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack
from jetsched.sdk import Client

SESSION = "bareworker1"


async def test_protocol_is_enough_for_a_foreign_worker(stack: Stack, nats_server: NatsServer) -> None:
    """Heartbeat, receive work, report outcomes durably: jobs succeed, fail and retry, as documented."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    held: list[list[object]] = []

    async def beat() -> None:
        while True:
            heartbeat = {
                "worker": "bare",
                "session": SESSION,
                "capabilities": ["shout"],
                "labels": {},
                "concurrency": 2,
                "running": held,
                "draining": False,
                "interval_ms": 200,
            }
            await nc.publish(f"jetsched.hb.{SESSION}", orjson.dumps(heartbeat))
            await asyncio.sleep(0.2)

    async def on_work(msg: Msg) -> None:
        work = orjson.loads(msg.data)
        entry = [work["id"], work["attempt"]]
        held.append(entry)
        report = {
            "id": work["id"],
            "attempt": work["attempt"],
            "token": work["token"],
            "session": SESSION,
            "finished_at_ms": 0,
        }
        if work["payload"] == "fail" and work["attempt"] == 1:
            report |= {"status": "failed", "error": {"type": "Oops", "message": "first try"}}
        else:
            report |= {"status": "succeeded", "result": str(work["payload"]).upper()}
        await js.publish(
            f"jetsched.outcome.shout.{work['id']}",
            orjson.dumps(report),
            headers={"Nats-Msg-Id": f"{work['id']}:{work['attempt']}:outcome"},
        )
        held.remove(entry)

    await nc.subscribe(f"jetsched.work.shout.{SESSION}", cb=on_work)
    beating = asyncio.create_task(beat())
    try:
        async with Client(nats_server.url) as client:
            ok = await client.submit("shout", "hello")
            flaky = await client.submit("shout", "fail", backoff={"base_ms": 10})
            done, retried = await client.wait(ok.id), await client.wait(flaky.id)
    finally:
        beating.cancel()
        await nc.close()
    assert (done.state, done.result) == ("succeeded", "HELLO")
    assert (retried.state, retried.attempt, retried.errors[0].type) == ("succeeded", 2, "Oops")
