"""The job-record verbs of workflow steps."""

from __future__ import annotations

import pytest

from jetsched.core import bounds, steps
from jetsched.core import workflows as wf
from jetsched.core.errors import TransitionError
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobRecord, JobState
from jetsched.core.types import JSON
from jetsched.core.workflows import WorkflowRequest

NOW = 1_800_000_000_000


def jobs(*specs: dict[str, object]) -> tuple[wf.WorkflowRecord, list[JobRecord]]:
    request = WorkflowRequest.model_validate({"steps": [{"capability": "cap", **s} for s in specs]})
    record, ordered = wf.new_record(request, new_ulid(NOW), NOW, None)
    return record, [steps.waiting_job(r, record, n, NOW, None) for n, r in enumerate(ordered)]


class TestRelease:
    def test_waiting_then_ready_with_parents(self) -> None:
        """A step's job waits, then is released once, queued with its parents' results."""
        _, [job] = jobs({"name": "a", "priority": 7})
        assert (job.state, job.priority, job.workflow and job.workflow.step) == (JobState.WAITING, 7, "a")
        ready = steps.release(job, {"p": 1}, NOW + 10)
        assert (ready.state, ready.parents, ready.ready_since_ms) == (JobState.READY, {"p": 1}, NOW + 10)
        with pytest.raises(TransitionError):
            steps.release(ready, {}, NOW + 11)

    def test_delay_counts_from_release(self) -> None:
        """A step's delay and start deadline count from its release."""
        _, [job] = jobs({"name": "a", "delay_ms": 500, "expires_in_ms": 100})
        released = steps.release(job, {}, NOW + 1000)
        assert (released.state, released.run_at_ms) == (JobState.SCHEDULED, NOW + 1500)
        assert released.expires_at_ms == NOW + 1600

    def test_parents_too_large(self) -> None:
        """Parents' results over the budget fail the step instead of queueing it."""
        _, [job] = jobs({"name": "a"})
        dead = steps.release(job, {"p": "x" * (wf.MAX_PARENTS_BYTES + 1)}, NOW)
        assert dead.state is JobState.DEAD
        assert dead.errors[-1].type == "ParentsTooLarge"


class TestMap:
    def test_expand_instances_collect(self) -> None:
        """A map step's job is expanded once, its instances are queued with their items, and it collects."""
        _, [_, job] = jobs({"name": "l"}, {"name": "m", "depends_on": ["l"], "map_over": "l"})
        with pytest.raises(TransitionError):
            steps.release(job, {}, NOW)
        expanded = steps.expand(job, {"l": [4, 5]}, NOW)
        with pytest.raises(TransitionError):
            steps.expand(expanded, {}, NOW)
        one = steps.instance(expanded, 1, 5, {"l": [4, 5]}, NOW, 1)
        assert one.workflow is not None
        assert (one.state, one.item, one.workflow.instance, one.workflow.map) == (JobState.READY, 5, 1, False)
        assert one.id == wf.step_job_id(one.workflow.id, 1, 0, 1)
        done = steps.collect(expanded, [8, 10], NOW)
        assert (done.state, done.result) == (JobState.SUCCEEDED, [8, 10])

    def test_parents_too_large(self) -> None:
        """A map step whose other parents' results are over the budget is refused before any instance
        exists, and its job ends dead like a plain step's (it used to be expanded regardless: every
        instance and the job itself were refused by storage, and the workflow hung `running`)."""
        _, [_, _, job] = jobs(
            {"name": "l"},
            {"name": "big"},
            {"name": "m", "depends_on": ["l", "big"], "map_over": "l"},
        )
        parents: dict[str, JSON] = {"l": [1, 2, 3], "big": "x" * wf.MAX_PARENTS_BYTES}
        problem = steps.map_problem(job, parents, "l", NOW)
        assert problem is not None
        dead = steps.fail(job, *problem, NOW)
        assert (dead.state, dead.errors[-1].type) == (JobState.DEAD, "ParentsTooLarge")

    def test_instance_share_within_the_bound(self) -> None:
        """Parents that pass the check fit in the map step's job and in every instance: an instance's
        share (the other parents and one element) is never larger than them all."""
        _, [_, _, job] = jobs(
            {"name": "l"},
            {"name": "other"},
            {"name": "m", "depends_on": ["l", "other"], "map_over": "l"},
        )
        element = "y" * 1000
        other = "x" * (wf.MAX_PARENTS_BYTES - 2 * len(element) - 100)
        parents: dict[str, JSON] = {"l": [element, element], "other": other}
        assert steps.map_problem(job, parents, "l", NOW) is None
        one = steps.instance(steps.expand(job, parents, NOW), 0, element, {"other": other}, NOW, 1)
        share = bounds.json_bytes(one.parents) + bounds.json_bytes(one.item)
        assert share <= bounds.json_bytes(parents) <= wf.MAX_PARENTS_BYTES

    def test_map_too_large(self) -> None:
        """A map whose instances' records would take more than the budget together is refused before any
        instance exists: each instance copies the step's payload and its other parents' results, so a
        modest payload times 10,000 elements would write gigabytes (they used to be written regardless)."""
        _, [_, job] = jobs(
            {"name": "l"}, {"name": "m", "depends_on": ["l"], "map_over": "l", "payload": "p" * 8000}
        )
        fits: dict[str, JSON] = {"l": list(range(wf.MAX_MAP_BYTES // 10_000))}
        assert steps.map_problem(job, fits, "l", NOW) is None
        problem = steps.map_problem(job, {"l": list(range(wf.MAX_MAP_ITEMS))}, "l", NOW)
        assert problem is not None
        assert problem[0] == "MapTooLarge"
        assert f"its {wf.MAX_MAP_ITEMS} instances" in problem[1]
        assert str(wf.MAX_MAP_BYTES) in problem[1]

    def test_map_bytes_bounds_what_is_written(self) -> None:
        """The estimate is never below the instances' records as created, and close to them."""
        _, [_, _, job] = jobs(
            {"name": "l"},
            {"name": "o"},
            {"name": "m", "depends_on": ["l", "o"], "map_over": "l", "payload": {"k": "v" * 500}},
        )
        items: list[JSON] = [n * "z" for n in range(120)]
        parents: dict[str, JSON] = {"l": items, "o": {"shared": "s" * 300}}
        shared = steps.instance_parents(parents, "l")
        assert shared == {"o": {"shared": "s" * 300}}
        written = sum(
            len(steps.instance(job, n, item, shared, NOW, 1).model_dump_json(exclude_defaults=True))
            for n, item in enumerate(items)
        )
        estimate = steps.map_bytes(job, parents, "l", NOW)
        assert written <= estimate <= written * 1.02
        assert steps.map_bytes(job, {"l": [], "o": 1}, "l", NOW) == 0

    def test_collect_too_large(self) -> None:
        """Collected results over the result limit fail the map step."""
        _, [_, job] = jobs({"name": "l"}, {"name": "m", "depends_on": ["l"], "map_over": "l"})
        dead = steps.collect(job, ["x" * bounds.MAX_RESULT_BYTES], NOW)
        assert (dead.state, dead.errors[-1].type) == (JobState.DEAD, "ResultRejected")


def test_rerun_is_a_fresh_waiting_job() -> None:
    """A retried step's new job keeps the options and forgets the previous run's attempts."""
    record, [job] = jobs({"name": "a", "max_attempts": 2})
    dead = steps.fail(job, "X", "boom", NOW)
    again = wf.retry(wf.apply(wf.start(record, NOW), [wf.StepEvent(0, 0, wf.StepState.FAILED)], NOW), NOW)
    fresh = steps.rerun(dead, again, 0, NOW + 1)
    assert fresh.id == again.steps[0].job_id != job.id
    assert (fresh.state, fresh.errors, fresh.max_attempts, fresh.workflow and fresh.workflow.run) == (
        JobState.WAITING,
        (),
        2,
        1,
    )
