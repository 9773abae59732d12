"""A rolling deploy: what a newer version stored — a job, a workflow, a schedule, queue settings, with fields
this version does not know — runs on through this version's services, and what it added is kept in every
record they write (history too). Nothing is quarantined. Requests with unknown fields are still refused.

The newer version is played by writes straight to the buckets: this version's records with fields added at
every level, as a later version that added fields would store them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from jetsched.bus.connect import connect
from jetsched.bus.direct import Connection
from jetsched.bus.records import Records, Store, encode
from jetsched.bus.workflows import Workflows
from jetsched.core import states, subjects
from jetsched.core.changes import headers_of
from jetsched.core.clock import SystemClock
from jetsched.core.ids import new_ulid
from jetsched.core.models import Backoff, JobRecord, JobRequest, QueueSettings
from jetsched.core.schedules import ScheduleRecord
from jetsched.core.workflows import WorkflowRecord
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.dispatcher.service import DispatcherService
from jetsched.sdk import Client, Job, Tasks, chain, step

#: What the newer version added (a null too: kept as a null, not dropped as a default).
FUTURE = {"tier": "gold", "weights": [1, 2.5, {"deep": None}]}


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Connection]:
    connection = await connect(nats_server.url, "test")
    yield connection
    await connection.close()


def newer(data: dict[str, Any], *paths: str) -> dict[str, Any]:
    """`data` (a stored value, as JSON) with unknown fields added at its top and at each dotted path."""
    data = orjson.loads(orjson.dumps(data))
    data["future"] = FUTURE
    data["future_null"] = None
    for path in paths:
        node(data, path)[f"future_{path.replace('.', '_')}"] = path
    return data


def node(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def assert_kept(data: dict[str, Any], *paths: str) -> None:
    assert (data["future"], data["future_null"]) == (FUTURE, None)
    for path in paths:
        assert node(data, path)[f"future_{path.replace('.', '_')}"] == path, path


def nothing_quarantined(stack: Stack) -> None:
    assert {s.name: s.quarantined.count for s in stack.services} == {s.name: 0 for s in stack.services}


def rolling_tasks(gate: asyncio.Event | None = None) -> Tasks:
    tasks = Tasks()
    runs: dict[str, int] = {}

    @tasks.task("roll.flaky")
    async def flaky(job: Job) -> Any:
        runs[job.id] = runs.get(job.id, 0) + 1
        if runs[job.id] == 1:
            raise RuntimeError("the first attempt fails")
        return job.payload

    @tasks.task("roll.echo")
    async def echo(job: Job) -> Any:
        return {"payload": job.payload, "parents": job.parents}

    @tasks.task("roll.block")
    async def block(job: Job) -> str:
        if gate is not None:
            await gate.wait()
        return "unblocked"

    return tasks


async def test_a_job_a_newer_version_stored_runs_to_success_keeping_its_fields(
    stack: Stack, client: Client, nc: Connection
) -> None:
    """A ready record with unknown fields (in it and in its backoff) is claimed, fails, waits out its
    backoff, is claimed again and succeeds — dispatcher, reaper and timer each writing it — and retires
    to history with every unknown field as the newer version wrote it."""
    now = SystemClock().now_ms()
    request = JobRequest(payload={"n": 1}, max_attempts=3, backoff=Backoff(base_ms=200, jitter=0))
    record = states.accept(request, new_ulid(now), "roll.flaky", now, None)
    data = orjson.dumps(newer(orjson.loads(encode(record)), "backoff"))
    assert await Records.open(nc).store_of(record.id).put_if(record.id, data, 0, headers_of(record))

    async with running_worker(rolling_tasks(), client.nats_url):
        done = await client.wait(record.id, timeout=30)
    assert (done.state, done.result, done.attempt) == ("succeeded", {"n": 1}, 2)

    history_only = Records.open(nc)

    async def retired() -> JobRecord | None:
        found, revision = await history_only.get(record.id)
        return found if revision == 0 else None  # revision 0: read from history, not the bucket

    final = await eventually(retired, what="the record retired to history")
    assert final is not None
    written = orjson.loads(encode(final))
    assert_kept(written, "backoff")
    assert [e["kind"] for e in written["errors"]] == ["error"]
    assert history_only.history is not None
    raw, _ = await history_only.history.get(record.id)
    assert_kept(orjson.loads(raw), "backoff")
    # `jobs.get` shows the record as stored, unknown fields included.
    shown = await client.request(subjects.api("jobs.get"), {"id": record.id})
    assert_kept(shown["job"], "backoff")
    nothing_quarantined(stack)
    assert (await client.request(subjects.api("doctor.list"), {}))["quarantined"] == []


async def test_a_workflow_a_newer_version_rewrote_mid_flight_finishes_keeping_its_fields(
    stack: Stack, client: Client, nc: Connection
) -> None:
    """While a workflow's first step runs, a newer version rewrites the workflow record (unknown fields at
    its top and in each step) and the waiting step's job (in it, its backoff and its workflow link). The
    step is released, runs and succeeds, the workflow succeeds: every record written since keeps them."""
    gate = asyncio.Event()
    records = Records.open(nc)
    workflows = Workflows(nc, records)
    async with running_worker(rolling_tasks(gate), client.nats_url):
        reply = await client.submit_workflow(
            chain(step("first", "roll.block"), step("second", "roll.echo", 2))
        )
        second = reply.steps["second"]

        async def running() -> bool:
            return (await client.get(reply.steps["first"])).state == "running"

        await eventually(running, what="the first step running")
        flow, revision = await workflows.get(reply.id)
        steps = [f"steps.{n}" for n in range(len(flow.steps))]
        rewritten = newer(orjson.loads(flow.model_dump_json(exclude_defaults=True)), *steps)
        await workflows.put(WorkflowRecord.model_validate_json(orjson.dumps(rewritten)), revision)
        job, revision = await records.get(second)
        assert job.state == "waiting"
        rewritten = newer(orjson.loads(encode(job)), "backoff", "workflow")
        await records.update(JobRecord.model_validate_json(orjson.dumps(rewritten)), revision)
        gate.set()

        async def finished() -> bool:
            return (await client.workflow(reply.id)).state == "succeeded"

        await eventually(finished, what="the workflow succeeded")
    view = await client.workflow(reply.id)
    assert view.steps["second"].result == {"payload": 2, "parents": {"first": "unblocked"}}
    flow, _ = await workflows.get(reply.id)
    assert_kept(orjson.loads(flow.model_dump_json(exclude_defaults=True)), *steps)
    final, _ = await records.get(second)
    assert final.state == "succeeded"
    assert_kept(orjson.loads(encode(final)), "backoff", "workflow")
    nothing_quarantined(stack)


async def test_a_schedule_a_newer_version_stored_fires_keeping_its_fields(
    stack: Stack, client: Client, nc: Connection
) -> None:
    """A schedule record rewritten with unknown fields (in it, its spec, its job template and that
    template's backoff) goes on firing; the timer's ledger writes and a pause keep them."""
    store = Store(nc, subjects.SCHEDULES_BUCKET)
    async with running_worker(rolling_tasks(), client.nats_url):
        await client.create_schedule("rolling", "roll.echo", {"tick": True}, every=1.0)
        data, revision = await store.get("rolling")
        paths = ("spec", "spec.job", "spec.job.backoff")
        await store.put_if("rolling", orjson.dumps(newer(orjson.loads(data), *paths)), revision)

        async def fired_twice() -> bool:
            return (await client.schedule("rolling")).fired >= 2

        await eventually(fired_twice, timeout=20, what="two fires")
        await client.schedule("rolling", "pause")
        fired = (await client.schedule("rolling")).history[-1].job_id
        assert fired is not None
        assert (await client.wait(fired, timeout=20)).state == "succeeded"
    data, _ = await store.get("rolling")
    stored = orjson.loads(data)
    assert stored["spec"]["paused"] is True
    assert_kept(stored, *paths)
    assert ScheduleRecord.model_validate_json(data).fired >= 2
    nothing_quarantined(stack)


async def test_queue_settings_a_newer_version_stored_apply_and_survive_a_pause(
    stack: Stack, client: Client, nc: Connection
) -> None:
    """Settings with an unknown field are applied by the dispatcher (not quarantined: the last good ones
    would stay), and a pause and resume — read-modify-writes — keep the field."""
    store = Store(nc, subjects.QUEUES_BUCKET)
    await store.put("roll.echo", orjson.dumps(newer({"max_running": 7})))
    (dispatcher,) = stack.of(DispatcherService)
    assert isinstance(dispatcher, DispatcherService)

    def applied() -> bool:
        settings = dispatcher.board.limits.settings.get("roll.echo")
        return settings is not None and settings.max_running == 7

    await eventually(applied, what="the settings applied")
    assert (await client.pause("roll.echo")).paused
    assert not (await client.pause("roll.echo", paused=False)).paused
    data, _ = await store.get("roll.echo")
    assert_kept(orjson.loads(data))
    assert QueueSettings.model_validate_json(data).max_running == 7
    async with running_worker(rolling_tasks(), client.nats_url):
        reply = await client.submit("roll.echo", 3)
        assert (await client.wait(reply.id, timeout=20)).state == "succeeded"
    nothing_quarantined(stack)


@pytest.mark.parametrize(
    ("subject", "body", "field"),
    [
        (subjects.submit("roll.echo"), {"payload": 1, "future": 1}, "future"),
        (subjects.submit("roll.echo"), {"backoff": {"base_ms": 10, "future": 1}}, "backoff.future"),
        (subjects.batch("roll.echo"), {"jobs": [{"backoff": {"future": 1}}]}, "jobs.0.backoff.future"),
        (
            subjects.WORKFLOW_SUBMIT,
            {"steps": [{"name": "a", "capability": "roll.echo", "future": 1}]},
            "steps.0.future",
        ),
        (
            subjects.api("schedules.create"),
            {"id": "typo", "every_ms": 60_000, "job": {"capability": "roll.echo", "backoff": {"future": 1}}},
            "job.backoff.future",
        ),
        (
            subjects.api("schedules.create"),
            {
                "id": "typo",
                "every_ms": 60_000,
                "workflow": {"steps": [{"name": "a", "capability": "roll.echo", "future": 1}]},
            },
            "workflow.steps.0.future",
        ),
        (subjects.api("queues.configure"), {"capability": "roll.echo", "future": 1}, "future"),
    ],
)
async def test_requests_with_unknown_fields_are_still_refused(
    stack: Stack, client: Client, nc: Connection, subject: str, body: dict[str, Any], field: str
) -> None:
    """What a client sends is read strictly, at every depth — also the shapes it shares with stored
    records, which keep unknown fields there: a typo is a structured error, and nothing is stored."""
    answer, _ = await nc.request_raw(subject, orjson.dumps(body), 5)
    reply = orjson.loads(answer)
    error = reply["error"] if "error" in reply else reply["jobs"][0]["error"]
    assert error["code"] == "invalid_field"
    assert error["field"] == field
    assert "unknown field" in error["message"]
    assert (await client.list()).jobs == []
    assert await client.schedules() == []
    assert (await client.request(subjects.api("queues.list"), {}))["queues"] == {}
