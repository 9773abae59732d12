"""Workflows in the chaos soak: a load of chains, fan-ins and maps, and a checker of every workflow's
invariants from outside — the probe workers' execution log and the records — after the chaos:

- every accepted workflow ends (succeeded, failed or cancelled);
- no step (nor map instance) started before each of its parents had ended a run that the workflow took
  as its success (the log's `end` lines: a parent's success is recorded only after its handler returned);
- no step ran twice unless its record names a worker fault (lost, timeout, released claim);
- results pass along: a step's `parents` are its parents' results, a map's result is its instances'
  results in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jetsched.core import subjects
from jetsched.core.workflows import step_job_id
from jetsched.sdk import chain, chord, step

if TYPE_CHECKING:
    import random

    from jetsched.devkit.fleet import Run
    from jetsched.sdk import Client, Steps

SHAPES = ("chain", "fan_in", "map")
RETRIES: dict[str, Any] = {"max_attempts": 10, "backoff": {"base_ms": 100}}


def shape(name: str, rng: random.Random) -> Steps:
    """A workflow of the given shape, its steps echoing their parents' results (`probe.pass`)."""

    def passing(step_name: str, **options: Any) -> Steps:
        return step(step_name, "probe.pass", rng.choice([0, 0.01, 0.05, 0.2]), **options, **RETRIES)

    if name == "chain":
        return chain(passing("a"), passing("b"), passing("c"))
    if name == "fan_in":
        return chord([passing("a"), passing("b"), passing("c")], passing("d"))
    count = rng.randint(3, 12)
    return chain(
        step("list", "probe.list", count, **RETRIES),
        step("each", "probe.item", rng.choice([0, 0.01, 0.05]), map_over="list", **RETRIES),
        passing("sum"),
    )


@dataclass
class WorkflowReport:
    accepted: int = 0
    states: Counter[str] = field(default_factory=Counter)
    unfinished: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: Step (or instance) jobs that started twice, with the cause their records give.
    twice: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        unexplained = "unexplained" in self.twice.values()
        return self.accepted > 0 and not self.unfinished and not self.violations and not unexplained

    def line(self) -> str:
        causes = dict(Counter(self.twice.values()))
        return (
            f"workflows           {self.accepted} accepted: {dict(self.states)}; unfinished "
            f"{len(self.unfinished)}; violations {len(self.violations)}; steps run twice {len(self.twice)}"
            + (f" ({causes})" if causes else "")
        )


class WorkflowLoad:
    """Submits workflows during the chaos (each keyed, resent until answered) and checks them after."""

    def __init__(self, rng: random.Random, per_second: float) -> None:
        self.rng = rng
        self.per_second = per_second
        #: Workflow id → its shape.
        self.accepted: dict[str, str] = {}
        self.report = WorkflowReport()

    async def run(self, client: Client, stop: asyncio.Event) -> None:
        submits: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set():
            task = asyncio.create_task(self.submit(client, f"soak-wf-{n}", self.rng.choice(SHAPES)))
            submits.add(task)
            task.add_done_callback(submits.discard)
            n += 1
            await asyncio.sleep(self.rng.expovariate(self.per_second))
        await asyncio.gather(*submits)

    async def submit(self, client: Client, key: str, name: str) -> None:
        flow = shape(name, self.rng)
        for _ in range(60):
            try:
                reply = await client.submit_workflow(flow, key=key)
            except Exception:
                await asyncio.sleep(0.5)
                continue
            self.accepted[reply.id] = name
            return

    async def check(self, client: Client, runs: list[Run], timeout: float = 120) -> WorkflowReport:
        report = self.report
        report.accepted = len(self.accepted)
        views = await self._finished(client, timeout)
        report.unfinished = sorted(set(self.accepted) - set(views))
        starts: dict[str, list[float]] = defaultdict(list)
        ends: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            (starts if run.event == "start" else ends)[run.job_id].append(run.at)
        for workflow_id, view in views.items():
            report.states[view["state"]] += 1
            jobs = await self._jobs(client, workflow_id, view)
            self._order(workflow_id, view, jobs, starts, ends)
            await self._twice(client, workflow_id, jobs, starts)
            if view["state"] == "succeeded":
                self._results(workflow_id, view)
        return report

    async def _finished(self, client: Client, timeout: float) -> dict[str, dict[str, Any]]:
        views: dict[str, dict[str, Any]] = {}
        pending = set(self.accepted)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for workflow_id in list(pending):
                try:
                    view = (await client.request(subjects.api("workflows.get"), {"id": workflow_id}))[
                        "workflow"
                    ]
                except Exception:
                    continue
                if view["state"] in ("succeeded", "failed", "cancelled"):
                    views[workflow_id] = view
                    pending.discard(workflow_id)
            if pending:
                await asyncio.sleep(0.5)
        return views

    @staticmethod
    async def _jobs(client: Client, workflow_id: str, view: dict[str, Any]) -> dict[str, list[str]]:
        """Step name → the jobs that run it: its own, or a map step's instances."""
        jobs: dict[str, list[str]] = {}
        for name, s in view["steps"].items():
            if s.get("map_over") is None:
                jobs[name] = [s["job_id"]]
                continue
            link = (await client.request(subjects.api("jobs.get"), {"id": s["job_id"]}))["job"]["workflow"]
            count = s.get("instances") or 0
            jobs[name] = [step_job_id(workflow_id, link["index"], link["run"], n) for n in range(count)]
        return jobs

    def _order(
        self,
        workflow_id: str,
        view: dict[str, Any],
        jobs: dict[str, list[str]],
        starts: dict[str, list[float]],
        ends: dict[str, list[float]],
    ) -> None:
        for name, s in view["steps"].items():
            for job_id in jobs[name]:
                if not starts[job_id]:
                    continue
                first = min(starts[job_id])
                for parent in s.get("depends_on", []):
                    unfinished = [j for j in jobs[parent] if not any(at < first for at in ends[j])]
                    if unfinished:
                        self.report.violations.append(
                            f"{workflow_id}: '{name}' ({job_id}) started before '{parent}' ended"
                            f" ({unfinished[0]})"
                        )

    async def _twice(
        self, client: Client, workflow_id: str, jobs: dict[str, list[str]], starts: dict[str, list[float]]
    ) -> None:
        for job_id in (j for ids in jobs.values() for j in ids):
            if len(starts[job_id]) < 2:
                continue
            record = (await client.request(subjects.api("jobs.get"), {"id": job_id}))["job"]
            kinds = {e["kind"] for e in record.get("errors", [])}
            cause = "+".join(sorted(kinds)) or ("released" if record.get("releases") else "unexplained")
            self.report.twice[f"{workflow_id}/{job_id}"] = cause

    def _results(self, workflow_id: str, view: dict[str, Any]) -> None:
        steps = view["steps"]
        for name, s in steps.items():
            result = s.get("result")
            if s.get("map_over") is not None:
                source = steps[s["map_over"]].get("result")
                if result != source:  # probe.item returns its element: the map's result is the list
                    self.report.violations.append(f"{workflow_id}: map '{name}' collected {result!r}")
            elif s.get("depends_on"):
                expected = {p: steps[p].get("result") for p in s["depends_on"]}
                if not isinstance(result, dict) or result.get("parents") != expected:
                    self.report.violations.append(f"{workflow_id}: '{name}' was not handed its parents")
