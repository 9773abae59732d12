"""Submitting over NATS: accepted means stored; bad input is refused whole; keys deduplicate."""

from __future__ import annotations

from typing import Any

import nats
import orjson
import pytest

from jetsched.core import subjects
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack
from jetsched.sdk import Client, JetschedApiError


async def bare_request(url: str, subject: str, body: bytes) -> dict[str, object]:
    nc = await nats.connect(url)
    try:
        reply = await nc.request(subject, body, timeout=5)
    finally:
        await nc.close()
    data: dict[str, object] = orjson.loads(reply.data)
    return data


async def stored_count(url: str) -> int:
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(subjects.kv_stream(subjects.JOBS_BUCKET))
    await nc.close()
    return info.state.messages


async def test_bare_client_submit_and_get(stack: Stack, nats_server: NatsServer) -> None:
    """A client speaking only the JSON contract submits and reads back the stored record."""
    reply = await bare_request(
        nats_server.url, "jetsched.submit.email.send", b'{"payload": {"to": "a@b.c"}, "priority": 8}'
    )
    assert set(reply) == {"id", "state", "duplicate"}
    assert (reply["state"], reply["duplicate"]) == ("ready", False)
    view = await bare_request(nats_server.url, "jetsched.api.jobs.get", orjson.dumps({"id": reply["id"]}))
    job = view["job"]
    assert isinstance(job, dict)
    assert (job["capability"], job["payload"], job["priority"]) == ("email.send", {"to": "a@b.c"}, 8)
    assert view["waiting"] == "no live worker with capability 'email.send'"


async def test_store_acked_submit(stack: Stack, nats_server: NatsServer) -> None:
    """Asked for it, an unkeyed submit is answered by JetStream's ack of the stored record, on the reply
    subject with the job's id and state appended; a keyed one is still answered by intake."""
    nc = await nats.connect(nats_server.url)
    try:
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox + ".>")
        asking = {subjects.REPLY_HEADER: subjects.REPLY_BY_STORE}
        await nc.publish("jetsched.submit.a", b'{"delay_ms": 60000}', reply=inbox + ".1", headers=asking)
        ack = await replies.next_msg(timeout=5)
        job_id, _, state = ack.subject.removeprefix(inbox + ".1.").partition(".")
        assert state == "scheduled"
        assert orjson.loads(ack.data)["stream"] == subjects.kv_stream(subjects.JOBS_BUCKET)
        view = await bare_request(nats_server.url, "jetsched.api.jobs.get", orjson.dumps({"id": job_id}))
        assert view["job"]["state"] == "scheduled"  # type: ignore[index]
        await nc.publish("jetsched.submit.a", b'{"key": "k"}', reply=inbox + ".2", headers=asking)
        reply = await replies.next_msg(timeout=5)
        assert reply.subject == inbox + ".2"
        assert set(orjson.loads(reply.data)) == {"id", "state", "duplicate"}
    finally:
        await nc.close()


async def test_delayed_submit_is_scheduled(stack: Stack, client: Client) -> None:
    """A delayed job is accepted as scheduled."""
    assert (await client.submit("a", delay=60)).state == "scheduled"


@pytest.mark.parametrize(
    ("subject", "body", "code", "field"),
    [
        ("jetsched.submit.a", b"{oops", "invalid_json", None),
        ("jetsched.submit.a", b'{"payload": 1, "extra": true}', "invalid_field", "extra"),
        ("jetsched.submit.a", b'{"priority": 99}', "invalid_field", "priority"),
        ("jetsched.submit.a", b'{"priority": [1]}', "invalid_field", "priority"),
        ("jetsched.submit.a", b'{"run_at": "soon"}', "invalid_field", "run_at"),
        ("jetsched.submit.a", b'{"payload": "' + b"x" * 300_000 + b'"}', "payload_too_large", None),
        ("jetsched.submit.h\u00e9llo", b"{}", "invalid_capability", "capability"),
        ("jetsched.submit." + "x" * 200, b"{}", "invalid_capability", "capability"),
        ("jetsched.api.jobs.get", b'{"id": 5}', "invalid_field", "id"),
        ("jetsched.api.jobs.get", b'{"id": "NOPE"}', "invalid_field", "id"),
        ("jetsched.api.jobs.get", b'{"id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE"}', "not_found", "id"),
        ("jetsched.api.jobs.cancel", b'{"id": "*"}', "invalid_field", "id"),
        ("jetsched.api.dead.purge", b'{"id": ">"}', "invalid_field", "id"),
        ("jetsched.api.stats", b"[1]", "invalid_json", None),
        (
            "jetsched.api.schedules.preview",
            b'{"spec": {"id": "s", "cron": "* * * * *", "timezone": "Europe", "job": {"capability": "a"}}}',
            "invalid_field",
            "spec.timezone",
        ),
        ("jetsched.api.jobs.list", b'{"state": "sleeping"}', "invalid_field", "state"),
        ("jetsched.api.nothing", b"{}", "unknown_api", "subject"),
    ],
)
async def test_bad_input_refused_nothing_stored(
    stack: Stack, nats_server: NatsServer, subject: str, body: bytes, code: str, field: str | None
) -> None:
    """Each bad request gets a structured error; nothing is stored; the service keeps serving."""
    reply = await bare_request(nats_server.url, subject, body)
    error = reply["error"]
    assert isinstance(error, dict)
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error["field"] == field
    assert await stored_count(nats_server.url) == 0
    ok = await bare_request(nats_server.url, "jetsched.submit.a", b"{}")
    assert ok["state"] == "ready"


async def test_idempotency_key(stack: Stack, client: Client) -> None:
    """A second submit with the same key returns the first job and creates nothing."""
    first = await client.submit("a", {"n": 1}, key="order-42")
    second = await client.submit("a", {"n": 2}, key="order-42")
    assert second.id == first.id
    assert (first.duplicate, second.duplicate) == (False, True)
    other = await client.submit("b", {"n": 1}, key="order-42")
    assert other.id != first.id
    assert len((await client.list()).jobs) == 2


async def test_half_done_keyed_submit_is_completed(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A key entry left without its job (intake died between the two creates) is finished by the retry."""
    from jetsched.intake.submit import key_id

    nc = await nats.connect(nats_server.url)
    kv = await nc.jetstream().key_value(subjects.KEYS_BUCKET)
    await kv.create(key_id("a", "k1"), b"01JXRPHANED000000000000000")
    await nc.close()
    reply = await client.submit("a", key="k1")
    assert (reply.id, reply.duplicate) == ("01JXRPHANED000000000000000", False)
    assert (await client.submit("a", key="k1")).duplicate


async def test_sdk_raises_structured_error(stack: Stack, client: Client) -> None:
    """The SDK turns an error reply into JetschedApiError with code and field."""
    with pytest.raises(JetschedApiError) as info:
        await client.submit("a", priority=12)
    assert (info.value.code, info.value.field) == ("invalid_field", "priority")


async def test_batch_submit_stores_each_valid_job(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A batch stores every valid item as its own job; a bad item gets its own error, the rest are stored."""
    replies = await client.submit_many("a", [{"n": n} for n in range(5)], priority=7)
    assert all(not isinstance(r, JetschedApiError) and r.state == "ready" for r in replies)
    ids = [r.id for r in replies if not isinstance(r, JetschedApiError)]
    assert len(set(ids)) == 5
    jobs = [(await client.get(job_id)) for job_id in ids]
    assert [(j.payload, j.priority) for j in jobs] == [({"n": n}, 7) for n in range(5)]

    body = orjson.dumps({"jobs": [{"payload": 1}, {"priority": 99}, {"payload": 3, "delay_ms": 60000}]})
    reply = await bare_request(nats_server.url, "jetsched.batch.b", body)
    jobs_reply: list[dict[str, Any]] = reply["jobs"]  # type: ignore[assignment]
    first, bad, delayed = jobs_reply
    assert (first["state"], delayed["state"]) == ("ready", "scheduled")
    assert bad == {
        "error": {"code": "invalid_field", "message": bad["error"]["message"], "field": "jobs.1.priority"}
    }
    assert len((await client.list(capability="b")).jobs) == 2


async def test_batch_keys_deduplicate_within_and_across_batches(stack: Stack, client: Client) -> None:
    """Keys work per item, as for single submits: a repeat (in the batch or later) names the first job."""
    first = await client.submit_many("a", [1, 2, 3], keys=["k1", "k2", "k1"])
    again = await client.submit_many("a", [4], keys=["k2"])
    replies = [r for r in first + again if not isinstance(r, JetschedApiError)]
    assert len(replies) == 4
    assert replies[2].id == replies[0].id
    assert replies[3].id == replies[1].id
    assert sum(not r.duplicate for r in replies) == 2
    assert len((await client.list(capability="a")).jobs) == 2


async def test_bad_batch_is_refused_whole(stack: Stack, client: Client) -> None:
    with pytest.raises(JetschedApiError) as info:
        await client.request(subjects.batch("a"), {"jobs": []})
    assert (info.value.code, info.value.field) == ("invalid_field", "jobs")
    assert (await client.list()).jobs == []
