"""Workflows through the four services and a worker: DAGs, parents' results, failure policies, maps,
cancel and retry, idempotent submits."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from jetsched.core.workflows import MAX_MAP_BYTES, step_job_id
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import (
    Client,
    Fatal,
    JetschedApiError,
    Job,
    Tasks,
    WorkflowInfo,
    chain,
    chord,
    group,
    step,
    workflow_body,
)

from .test_cli import jetsched


def tasks_for(runs: Counter[str], gate: asyncio.Event | None = None) -> Tasks:
    tasks = Tasks()

    @tasks.task("wf.echo")
    async def echo(job: Job) -> dict[str, Any]:
        runs[job.id] += 1
        return {"payload": job.payload, "parents": job.parents, "item": job.item}

    @tasks.task("wf.add")
    async def add(job: Job) -> int:
        runs[job.id] += 1
        return int(job.payload or 0) + sum(int(v) for v in job.parents.values())

    @tasks.task("wf.list")
    async def make_list(job: Job) -> list[int]:
        runs[job.id] += 1
        return list(range(int(job.payload)))

    @tasks.task("wf.double")
    async def double(job: Job) -> int:
        runs[job.id] += 1
        return 2 * int(job.item)

    @tasks.task("wf.fail")
    async def fail(job: Job) -> None:
        runs[job.id] += 1
        runs["wf.fail"] += 1
        if job.payload == "once" and runs["wf.fail"] > 1:
            return
        raise Fatal("this step fails")

    @tasks.task("wf.big")
    async def big(job: Job) -> str:
        runs[job.id] += 1
        return "x" * 60_000

    @tasks.task("wf.block")
    async def block(job: Job) -> None:
        runs[job.id] += 1
        if gate is not None:
            await gate.wait()

    return tasks


async def finished(client: Client, workflow_id: str, timeout: float = 30) -> WorkflowInfo:
    async def final() -> WorkflowInfo | None:
        view = await client.workflow(workflow_id)
        return view if view.finished else None

    view = await eventually(final, timeout=timeout, what=f"workflow {workflow_id} final")
    assert view is not None  # eventually returns only what is truthy
    return view


async def test_chain_hands_results_on(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Each step of a chain starts after its parent, once, with its parent's result in `job.parents`."""
    runs: Counter[str] = Counter()
    flow = chain(step("one", "wf.add", 1), step("two", "wf.add", 10), step("three", "wf.echo", "x"))
    async with running_worker(tasks_for(runs), nats_server.url):
        reply = await client.submit_workflow(flow)
        assert (reply.state, reply.duplicate, set(reply.steps)) == (
            "running",
            False,
            {"one", "two", "three"},
        )
        view = await finished(client, reply.id)
    assert view.state == "succeeded"
    steps = view.steps
    assert [steps[n].result for n in ("one", "two")] == [1, 11]
    assert steps["three"].result == {"payload": "x", "parents": {"two": 11}, "item": None}
    assert set(runs.values()) == {1}
    first, second = steps["one"].finished_at, steps["two"].started_at
    assert first is not None
    assert second is not None
    assert first <= second


async def test_fan_out_fan_in(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A chord's callback runs once, after every member, with all their results."""
    runs: Counter[str] = Counter()
    flow = chain(
        step("start", "wf.add", 1),
        chord([step(f"m{n}", "wf.add", n) for n in range(8)], step("sum", "wf.add", 0)),
    )
    async with running_worker(tasks_for(runs), nats_server.url, concurrency=8):
        reply = await client.submit_workflow(flow)
        view = await finished(client, reply.id)
    assert view.state == "succeeded"
    assert view.steps["sum"].result == sum(n + 1 for n in range(8))
    assert len(runs) == 10
    assert set(runs.values()) == {1}


async def test_waiting_step_is_visible(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A step waiting for its parents shows as `waiting` in jobs.get, with the reason."""
    gate = asyncio.Event()
    flow = chain(step("first", "wf.block"), step("second", "wf.echo"))
    async with running_worker(tasks_for(Counter(), gate), nats_server.url):
        reply = await client.submit_workflow(flow)
        got = await client.get(reply.steps["second"])
        assert got.state == "waiting"
        assert "waiting for its parents" in (got.waiting or "")
        gate.set()
        assert (await finished(client, reply.id)).state == "succeeded"


async def test_fail_fast(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """fail_fast: a dead step cancels the steps not started; the workflow fails."""
    runs: Counter[str] = Counter()
    flow = group(
        chain(step("bad", "wf.fail"), step("after_bad", "wf.echo")),
        chain(step("slow", "wf.echo", delay_ms=60_000), step("after_slow", "wf.echo")),
    )
    async with running_worker(tasks_for(runs), nats_server.url):
        reply = await client.submit_workflow(flow)
        view = await finished(client, reply.id)
    assert view.state == "failed"
    states = {name: s.state for name, s in view.steps.items()}
    assert states == {"bad": "dead", "after_bad": "cancelled", "slow": "cancelled", "after_slow": "cancelled"}


async def test_continue(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """continue: the failed step's descendants are cancelled; the other branch finishes."""
    flow = group(
        chain(step("bad", "wf.fail"), step("after_bad", "wf.echo")),
        chain(step("good", "wf.add", 2), step("after_good", "wf.add", 3)),
    )
    async with running_worker(tasks_for(Counter()), nats_server.url):
        reply = await client.submit_workflow(flow, on_failure="continue")
        view = await finished(client, reply.id)
    assert view.state == "failed"
    assert view.steps["after_bad"].state == "cancelled"
    assert view.steps["after_good"].result == 5


async def test_map_over(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A map step runs once per element, each with its `item`; its result is their results in order."""
    runs: Counter[str] = Counter()
    flow = chain(
        step("numbers", "wf.list", 5),
        step("doubled", "wf.double", map_over="numbers"),
        step("total", "wf.echo"),
    )
    async with running_worker(tasks_for(runs), nats_server.url, concurrency=5):
        reply = await client.submit_workflow(flow)
        view = await finished(client, reply.id)
    assert view.state == "succeeded", view.steps
    assert view.steps["doubled"].result == [0, 2, 4, 6, 8]
    assert view.steps["doubled"].instances == 5
    assert view.steps["total"].result["parents"] == {"doubled": [0, 2, 4, 6, 8]}
    link = (await client.get(view.steps["doubled"].job_id)).workflow
    assert link is not None
    last = await client.get(step_job_id(reply.id, link["index"], link["run"], 4))
    assert last.item == 4
    assert "numbers" not in (last.parents or {})  # its element, not the whole list again
    assert len(runs) == 1 + 5 + 1
    assert set(runs.values()) == {1}


async def test_map_over_empty_list(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A map over an empty list succeeds at once with an empty result."""
    flow = chain(step("numbers", "wf.list", 0), step("each", "wf.double", map_over="numbers"))
    async with running_worker(tasks_for(Counter()), nats_server.url):
        view = await finished(client, (await client.submit_workflow(flow)).id)
    assert (view.state, view.steps["each"].result) == ("succeeded", [])


async def test_map_parents_too_large(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A map step whose other parents' results are too large to hand over ends dead, `ParentsTooLarge`,
    as a plain step with the same parents does, and the workflow fails — no instance ever runs. (The
    map step used to be expanded regardless: storage refused every instance and the job itself, past
    NATS's max_payload, and the reaper retried that forever, the workflow `running` for good.)"""
    runs: Counter[str] = Counter()
    bigs = [step(f"big{n}", "wf.big") for n in range(20)]
    parents = ["numbers", *(f"big{n}" for n in range(20))]
    flow = [
        step("numbers", "wf.list", 3),
        *bigs,
        step("each", "wf.double", depends_on=parents, map_over="numbers"),
        step("plain", "wf.echo", depends_on=parents),
    ]
    async with running_worker(tasks_for(runs), nats_server.url, concurrency=8):
        reply = await client.submit_workflow(flow, on_failure="continue")
        view = await finished(client, reply.id)
    assert view.state == "failed"
    for name in ("each", "plain"):
        info = view.steps[name]
        assert (info.state, info.last_error and info.last_error.type) == ("dead", "ParentsTooLarge"), name
    assert view.steps["each"].instances == 3
    link = (await client.get(view.steps["each"].job_id)).workflow
    assert link is not None
    for n in range(3):
        with pytest.raises(JetschedApiError):
            await client.get(step_job_id(reply.id, link["index"], link["run"], n))
    assert len(runs) == 21  # neither the instances nor the plain step ran


async def test_map_too_large(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A map step whose instances' records would together pass `MAX_MAP_BYTES` — its 120 KB payload
    copied into each of 600 instances, 72 MB — ends dead, `MapTooLarge`, before any instance exists, and
    the workflow fails, `workflows.get` saying why. (It used to be expanded regardless: one submit and a
    list made the instances write their payload's size times the list's length.)"""
    runs: Counter[str] = Counter()
    count = 600
    payload = "p" * 120_000
    assert count * len(payload) > MAX_MAP_BYTES
    flow = chain(step("numbers", "wf.list", count), step("each", "wf.double", payload, map_over="numbers"))
    async with running_worker(tasks_for(runs), nats_server.url, concurrency=8):
        reply = await client.submit_workflow(flow)
        view = await finished(client, reply.id)
    assert view.state == "failed"
    info = view.steps["each"]
    assert (info.state, info.step_state) == ("dead", "failed")
    assert info.last_error is not None
    assert info.last_error.type == "MapTooLarge"
    assert f"its {count} instances" in info.last_error.message
    link = (await client.get(info.job_id)).workflow
    assert link is not None
    with pytest.raises(JetschedApiError):
        await client.get(step_job_id(reply.id, link["index"], link["run"], 0))
    assert len(runs) == 1  # only the list's step ran


async def test_keyed_resubmit(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A workflow submitted twice with one key is one workflow."""
    flow = chain(step("a", "wf.add", 1), step("b", "wf.add", 1))
    first = await client.submit_workflow(flow, key="nightly-1")
    again = await client.submit_workflow(flow, key="nightly-1")
    assert (again.id, again.steps, again.duplicate) == (first.id, first.steps, True)
    listed = (await client.workflows()).workflows
    assert [w.id for w in listed] == [first.id]


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"name": "a", "capability": "c", "depends_on": ["a"]}], "steps.0.depends_on"),
        ([{"name": "a", "capability": "c", "depends_on": ["nope"]}], "steps.0.depends_on"),
        ([{"name": "a", "capability": "c"}, {"name": "a", "capability": "c"}], "steps.1.name"),
        ([{"name": "a", "capability": "c*"}], "steps.0.capability"),
    ],
)
async def test_refused(stack: Stack, client: Client, steps: list[dict[str, Any]], field: str) -> None:
    """A malformed workflow is refused with a structured error; nothing is stored."""
    with pytest.raises(JetschedApiError) as caught:
        await client.request("jetsched.workflow.submit", {"steps": steps})
    assert (caught.value.code, caught.value.field) == ("invalid_field", field)
    assert (await client.workflows()).workflows == []
    assert (await client.list()).jobs == []


async def test_cancel_then_retry(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Cancelling stops the running step and cancels the rest; retry re-runs what did not succeed and
    keeps what did."""
    runs: Counter[str] = Counter()
    gate = asyncio.Event()
    flow = chain(step("a", "wf.add", 1), step("b", "wf.block"), step("c", "wf.echo"))
    async with running_worker(tasks_for(runs, gate), nats_server.url):
        reply = await client.submit_workflow(flow)
        b = reply.steps["b"]
        await eventually(lambda: runs[b] == 1, timeout=10, what="b running")
        cancelled = await client.cancel_workflow(reply.id)
        assert cancelled.cancel_requested is True
        view = await finished(client, reply.id)
        assert view.state == "cancelled"
        assert [view.steps[n].state for n in "abc"] == ["succeeded", "cancelled", "cancelled"]
        gate.set()
        retried = await client.retry_workflow(reply.id)
        assert retried.retried == ("b", "c")
        view = await finished(client, reply.id)
    assert view.state == "succeeded"
    assert view.steps["c"].result["parents"] == {"b": None}
    assert runs[reply.steps["a"]] == 1
    assert view.steps["b"].job_id != b


async def test_retry_failed_step(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A workflow failed by a step is retried from that step: the succeeded parent does not run again."""
    runs: Counter[str] = Counter()
    flow = chain(step("a", "wf.add", 1), step("flaky", "wf.fail", "once"), step("c", "wf.echo"))
    async with running_worker(tasks_for(runs), nats_server.url):
        reply = await client.submit_workflow(flow)
        assert (await finished(client, reply.id)).state == "failed"
        with pytest.raises(JetschedApiError):
            await client.cancel_workflow(reply.id)
        await client.retry_workflow(reply.id)
        view = await finished(client, reply.id)
    assert view.state == "succeeded"
    assert runs[reply.steps["a"]] == 1
    assert view.steps["c"].result["parents"] == {"flaky": None}


async def test_unknown_workflow(stack: Stack, client: Client) -> None:
    """Asking for a workflow that does not exist is `not_found`."""
    with pytest.raises(JetschedApiError) as caught:
        await client.workflow("01KBZ3R6X9T2M0Q7D5W8C4N1HE")
    assert caught.value.code == "not_found"


async def test_cli(stack: Stack, client: Client, nats_server: NatsServer, tmp_path: Path) -> None:
    """`jetsched workflows submit/list/show/cancel` from the command line; `show` draws the graph."""
    spec = tmp_path / "flow.json"
    flow = chain(step("fetch", "wf.block"), group(step("left", "wf.echo"), step("right", "wf.echo")))
    spec.write_bytes(orjson.dumps(workflow_body(flow, key="cli-1")))
    url = ("--nats", nats_server.url)
    code, out, _ = await jetsched(*url, "--json", "workflows", "submit", str(spec))
    assert code == 0
    workflow_id = orjson.loads(out)["id"]
    code, out, _ = await jetsched(*url, "workflows", "list")
    assert workflow_id in out
    code, out, _ = await jetsched(*url, "workflows", "show", workflow_id)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"workflow {workflow_id}  running"
    assert lines[1].startswith("└─ fetch  [ready]")
    assert any(line.startswith("   ├─ left  [waiting]") for line in lines)
    code, out, _ = await jetsched(*url, "workflows", "cancel", workflow_id)
    assert "cancel_requested" in out
    view = await finished(client, workflow_id)
    assert view.state == "cancelled"
