"""Hostile input from a plain NATS client with no rights: every request answered, no service silenced,
nothing stored that a later step could not handle, and unreadable stored data quarantined.

Each test here is one defect class that took a service down or wedged a job before it was fixed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient

from jetsched.bus.records import encode
from jetsched.core import bounds, states, subjects
from jetsched.core.changes import headers_of
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobRequest
from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.dispatcher.service import DispatcherService
from jetsched.sdk import Client, JetschedApiError, Job, Tasks

JOB_ID = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"
#: A well-formed report for JOB_ID from someone who does not hold its lease.
FORGED_REPORT = orjson.dumps(
    {"id": JOB_ID, "attempt": 1, "token": "t", "session": "s", "status": "succeeded", "finished_at_ms": 0}
)


def echo_tasks() -> Tasks:
    tasks = Tasks()

    @tasks.task("echo")
    async def echo(job: Job) -> Any:
        return job.payload

    return tasks


async def ask(nc: NatsClient, subject: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return orjson.loads((await nc.request(subject, body, timeout=5, headers=headers)).data)


async def still_works(client: Client) -> None:
    """Intake answers and a fresh job runs end to end."""
    async with running_worker(echo_tasks(), client.nats_url):
        reply = await client.submit("echo", {"ok": True})
        record = await client.wait(reply.id, timeout=20)
    assert (record.state, record.result) == ("succeeded", {"ok": True})


async def test_a_padded_request_does_not_disconnect_intake(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A request with one header padded to just under the server's limit gets an answer, and intake stays
    connected (replies used to echo the request's headers, which took them over the limit)."""
    nc = await nats.connect(nats_server.url)
    try:
        body = orjson.dumps({"id": JOB_ID})
        room = nc.max_payload - len(body) - 200
        for subject in (subjects.api("jobs.get"), subjects.submit("echo"), subjects.api("stats")):
            answer = await ask(nc, subject, body if "get" in subject else b"{}", {"X-Pad": "p" * room})
            assert "error" in answer or "id" in answer or "jobs" in answer, answer
    finally:
        await nc.close()
    await still_works(client)


async def test_wildcard_ids_touch_nothing(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """`*` and `>` as ids are refused before they reach a subject; an unrelated job stays as it was."""
    victim = await client.submit("nobody.runs.this")
    nc = await nats.connect(nats_server.url)
    try:
        for api, body in (
            ("jobs.cancel", {"id": "*"}),
            ("dead.purge", {"id": ">"}),
            ("jobs.get", {"id": "*"}),
        ):
            answer = await ask(nc, subjects.api(api), orjson.dumps(body))
            assert answer["error"]["code"] == "invalid_field", answer
    finally:
        await nc.close()
    assert (await client.get(victim.id)).state == "ready"


async def test_oversized_trace_headers_are_dropped(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A 70 KB baggage is not stored with the job, so its reports still fit and it finishes once."""
    nc = await nats.connect(nats_server.url)
    headers = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "baggage": "k=" + "v" * 70_000}
    try:
        reply = await ask(nc, subjects.submit("echo"), b'{"payload": 1}', headers)
    finally:
        await nc.close()
    record = await client.get(reply["id"])
    assert record.trace == {"traceparent": headers["traceparent"]}
    async with running_worker(echo_tasks(), nats_server.url):
        done = await client.wait(reply["id"], timeout=20)
    assert (done.state, done.attempt) == ("succeeded", 1)


async def test_a_workflow_step_too_large_to_grow_is_refused(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A step whose job record would leave no room for its parents' results, errors and result is refused
    with the workflow, naming the step's payload — numbers written short included, which the record
    stores long (the request is well under its own limit)."""
    nc = await nats.connect(nats_server.url)
    try:
        payload = b"[" + b",".join([b"9e15"] * 60_000) + b"]"
        body = b'{"steps": [{"name": "a", "capability": "echo", "payload": ' + payload + b"}]}"
        assert len(body) < 400_000
        answer = await ask(nc, subjects.WORKFLOW_SUBMIT, body)
    finally:
        await nc.close()
    assert answer["error"]["code"] == "payload_too_large"
    assert answer["error"]["field"] == "steps.payload"
    assert (await client.workflows()).workflows == []


async def test_a_record_too_large_to_grow_is_refused(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A payload whose stored form leaves no room for a lease, errors and a result is refused at the door,
    naming the payload (floats written short grow when stored)."""
    nc = await nats.connect(nats_server.url)
    try:
        body = b'{"payload": [' + b",".join([b"9e15"] * 50_000) + b"]}"
        answer = await ask(nc, subjects.submit("echo"), body)
    finally:
        await nc.close()
    assert answer["error"]["code"] == "payload_too_large"
    assert answer["error"]["field"] == "payload"


async def test_list_pages_are_bounded_in_bytes(stack: Stack, client: Client) -> None:
    """Pages stop at the byte bound and continue by cursor; every job is listed once."""
    ids = {(await client.submit("big.list", "x" * 200_000)).id for _ in range(6)}
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        body = {"capability": "big.list", "limit": 1000, **({"after": after} if after else {})}
        page = await client.request(subjects.api("jobs.list"), body)
        assert len(orjson.dumps(page)) < 1024 * 1024
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == sorted(ids)
    assert pages > 1


async def test_parameterless_apis_refuse_bodies_they_cannot_parse(
    stack: Stack, nats_server: NatsServer
) -> None:
    """`stats`, `queues.list`, `workers.list`, `schedules.list` and `doctor.list` take `{}` or nothing."""
    nc = await nats.connect(nats_server.url)
    try:
        for api in ("stats", "queues.list", "workers.list", "schedules.list", "doctor.list"):
            assert "error" not in await ask(nc, subjects.api(api), b"")
            assert (await ask(nc, subjects.api(api), b"[1]"))["error"]["code"] == "invalid_json"
            assert (await ask(nc, subjects.api(api), b'{"x": 1}'))["error"]["field"] == "x"
    finally:
        await nc.close()


async def write_raw(
    nc: NatsClient, bucket: str, key: str, data: bytes, headers: dict[str, str] | None = None
) -> None:
    """Store bytes the way a compromised or older writer could, past every check of ours."""
    ack = orjson.loads((await nc.request(f"$KV.{bucket}.{key}", data, timeout=5, headers=headers)).data)
    assert "error" not in ack, ack


@pytest.mark.parametrize(
    "poison",
    [
        b"{not json",
        b'{"id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE", "capability": "echo", "payload": 99999999999999999999}',
    ],
)
async def test_an_unreadable_record_is_quarantined(
    stack: Stack, client: Client, nats_server: NatsServer, poison: bytes
) -> None:
    """A record nobody can read is set aside: `jobs.get` says so, lists skip it, `doctor` shows and purges it,
    and every service keeps working."""
    healthy = await client.submit("echo", 1)
    nc = await nats.connect(nats_server.url)
    try:
        headers = {"Jetsched-State": "ready", "Jetsched-Capability": "echo"}
        await write_raw(nc, subjects.JOBS_BUCKET, JOB_ID, poison, headers)
        answer = await ask(nc, subjects.api("jobs.get"), orjson.dumps({"id": JOB_ID}))
        assert answer["error"]["code"] == "quarantined"
        page = await client.list(capability="echo")
        assert [job.id for job in page.jobs] == [healthy.id]

        async def listed() -> bool:
            found = (await client.request(subjects.api("doctor.list"), {}))["quarantined"]
            return any(item["key"] == JOB_ID for item in found)

        await eventually(listed, what="the poison record quarantined")
        purged = await client.request(subjects.api("doctor.purge"), {"bucket": "jobs", "key": JOB_ID})
        assert purged["purged"] is True
        assert not await listed()
    finally:
        await nc.close()
    await still_works(client)


async def test_a_poisoned_queue_setting_does_not_stop_dispatch(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A setting no version writes (a rate of 1e-310) is quarantined; the dispatcher keeps dispatching."""
    nc = await nats.connect(nats_server.url)
    try:
        await write_raw(nc, subjects.QUEUES_BUCKET, "echo", b'{"rate_per_s": 1e-310}')
        answer = await ask(
            nc, subjects.api("queues.configure"), b'{"capability": "echo", "rate_per_s": 1e-310}'
        )
        assert answer["error"]["field"] == "rate_per_s"
    finally:
        await nc.close()
    dispatcher = stack.of(DispatcherService)[0]
    await eventually(lambda: dispatcher.quarantined.count >= 1, what="the setting quarantined")
    await still_works(client)


async def test_a_record_that_no_claim_fits_is_set_aside(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A ready record stored too large to take a lease (past intake's bounds) is quarantined by the
    dispatcher, which goes on dispatching everything else."""
    nc = await nats.connect(nats_server.url)
    try:
        job_id = new_ulid(0)
        base = states.accept(JobRequest(), job_id, "echo", 0, None)
        room = nc.max_payload - len(encode(base)) - 150  # fits; with a lease it would not
        record = base.model_copy(update={"payload": "x" * room})
        headers = {"Jetsched-State": "ready", "Jetsched-Capability": "echo"}
        await write_raw(nc, subjects.JOBS_BUCKET, job_id, encode(record), headers)
    finally:
        await nc.close()
    dispatcher = stack.of(DispatcherService)[0]
    async with running_worker(echo_tasks(), client.nats_url):
        await eventually(lambda: dispatcher.quarantined.count >= 1, what="the record quarantined")
        reply = await client.submit("echo", 2)
        assert (await client.wait(reply.id, timeout=20)).state == "succeeded"
    with pytest.raises(JetschedApiError, match="reply_too_large"):
        await client.get(job_id)  # answered, though the record cannot travel whole


async def test_junk_under_a_reports_id_cannot_preempt_it(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """Junk published in advance under `<id>:<attempt>:outcome` for every attempt does not make JetStream
    drop the real reports: their ids carry the token, which only the lease holder has."""
    tasks = Tasks()
    runs: list[int] = []

    @tasks.task("flaky")
    async def flaky(job: Job) -> int:
        runs.append(job.attempt)
        if job.attempt < 3:
            raise RuntimeError("not yet")
        return job.attempt

    reply = await client.submit(
        "flaky", backoff={"base_ms": 10, "factor": 1.0, "jitter": 0.0}, max_attempts=5
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        for attempt in range(1, 6):
            await js.publish(
                subjects.outcome("flaky", reply.id),
                b"junk",
                headers={"Nats-Msg-Id": f"{reply.id}:{attempt}:outcome"},
            )
    finally:
        await nc.close()
    async with running_worker(tasks, nats_server.url):
        record = await client.wait(reply.id, timeout=20)
    assert (record.state, record.result, runs) == ("succeeded", 3, [1, 2, 3])


async def test_a_report_on_another_jobs_subject_is_set_aside(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """The reaper takes a report only on its own job's subject, and keeps working."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await js.publish(subjects.outcome("echo", new_ulid(0)), FORGED_REPORT)
        await asyncio.sleep(0)
    finally:
        await nc.close()
    await still_works(client)


def test_headers_of_a_record_fit_the_claim() -> None:
    """The headers a record write carries are small next to the growth margin they are counted in."""
    record = states.claim(states.accept(JobRequest(), JOB_ID, "c" * 128, 0, None), "w", "s" * 64, "t", 0)
    assert len(orjson.dumps(headers_of(record))) < bounds.SLACK_BYTES // 4


async def test_undecodable_headers_and_subjects_are_answered(stack: Stack, nats_server: NatsServer) -> None:
    """Bytes no client library would send — a header value and a subject token that are not UTF-8 — still
    get a structured answer, over a raw connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", nats_server.port)
    try:
        await reader.readline()  # INFO
        block = b"NATS/1.0\r\nX-Odd: \xff\xfe\r\n\r\n"
        writer.write(
            b'CONNECT {"verbose": false, "headers": true, "no_responders": true}\r\nSUB _INBOX.raw.* 1\r\n'
        )
        for n, subject in enumerate((b"jetsched.api.stats", b"jetsched.api.jobs.\xff")):
            writer.write(
                b"HPUB %s _INBOX.raw.%d %d %d\r\n%s{}\r\n" % (subject, n, len(block), len(block) + 2, block)
            )
        writer.write(b"PING\r\n")
        await writer.drain()
        answers: dict[bytes, Any] = {}
        async with asyncio.timeout(10):
            while len(answers) < 2:
                line = await reader.readline()
                if line.startswith(b"MSG"):
                    parts = line.split()
                    answers[parts[1]] = orjson.loads((await reader.readexactly(int(parts[-1]) + 2))[:-2])
                elif line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
    finally:
        writer.close()
    assert "jobs" in answers[b"_INBOX.raw.0"]
    assert answers[b"_INBOX.raw.1"]["error"]["code"] == "unknown_api"


async def test_a_report_for_an_unknown_job_is_retried_before_it_is_dropped(
    stack: Stack, nats_server: NatsServer
) -> None:
    """A leader that just changed may not know a record yet: a report for a job nobody can find is
    redelivered a few times (about a second apart) before it is dropped, not dropped at once."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await js.publish(subjects.outcome("echo", JOB_ID), FORGED_REPORT)

        async def deliveries() -> int:
            info = await js.consumer_info(subjects.OUTCOMES_STREAM, subjects.OUTCOMES_CONSUMER)
            return int(info.num_redelivered) + int(info.num_ack_pending)

        await eventually(deliveries, what="the report redelivered")

        async def gone() -> bool:
            return (await js.stream_info(subjects.OUTCOMES_STREAM)).state.messages == 0

        await eventually(gone, timeout=15, what="the report dropped after its deliveries")
    finally:
        await nc.close()


@pytest.mark.slow
@pytest.mark.serial
async def test_a_burst_of_large_list_requests_keeps_intake_small(fleet: Fleet) -> None:
    """A hundred concurrent 1,000-record list requests over large records are all answered, and intake
    assembles only a few pages at once (it used to build them all together: 70 MB → 700 MB, kept)."""
    intake = fleet.service("intake")
    async with Client(fleet.url, timeout=30) as client:
        for _ in range(40):  # each page reads its records 32 at a time: ~6 MB before it is cut at 512 KiB
            await client.submit("big.burst", "x" * 200_000)
        before = _peak_rss(intake)
        pages = await asyncio.gather(*(client.list(capability="big.burst", limit=1000) for _ in range(100)))
        grown = _peak_rss(intake) - before
    assert all(page.jobs and page.next for page in pages)
    # A hundred pages read at once would hold ~600 MB of records.
    assert grown < 100 * 1024 * 1024, f"intake's peak memory grew {grown / 2**20:.0f} MiB"


def _peak_rss(proc: procs.Proc) -> int:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
