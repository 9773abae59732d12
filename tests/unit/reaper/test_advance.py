"""How long the reaper gathers a workflow's outcomes before advancing it again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

from jetsched.bus.workflows import STATE_HEADER
from jetsched.core import states, steps
from jetsched.core import workflows as wf
from jetsched.core.changes import Change
from jetsched.core.clock import FakeClock
from jetsched.core.ids import new_ulid
from jetsched.reaper.advance import MAX_COALESCE_MS, Advancer, coalesce_ms

if TYPE_CHECKING:
    from jetsched.bus.workflows import Workflows

NOW = 1_800_000_000_000


def test_small_workflows_are_advanced_at_once() -> None:
    """A chain's record (a kilobyte or two) is advanced as soon as its outcome arrives."""
    assert coalesce_ms(0) == 0
    assert coalesce_ms(2_000) == 0


def test_big_workflows_gather_outcomes_for_a_bounded_while() -> None:
    """A 1,000-step record (~90 KB) waits ~90 ms between advances; nothing waits more than the cap."""
    assert 60 <= coalesce_ms(90_000) <= MAX_COALESCE_MS
    assert coalesce_ms(10_000_000) == MAX_COALESCE_MS


def test_outcomes_another_replica_took_in_are_dropped_in_bulk() -> None:
    """A replica that does not advance a workflow keeps its outcomes until it sees their jobs retired;
    they are then dropped — all of them, without a rescan of the list per retirement."""
    request = wf.WorkflowRequest.model_validate(
        {"steps": [{"name": f"s{n}", "capability": "c"} for n in range(6)]}
    )
    record, ordered = wf.new_record(request, new_ulid(NOW), NOW, None)
    advancer = Advancer(cast("Workflows", SimpleNamespace(nc=None)), FakeClock())
    advancer.owns = lambda _: False
    jobs = [steps.waiting_job(s, record, n, NOW, None) for n, s in enumerate(ordered)]
    for n, job in enumerate(jobs):
        ready = steps.release(job, {}, NOW)
        advancer.observe_job(Change.of(states.cancel(ready, NOW), n + 1))
    assert len(advancer.pending[record.id]) == 6
    for n, job in enumerate(jobs[:4]):
        advancer.observe_job(Change.deleted(job.id, 100 + n))
    left = [c.id for c in advancer.ended[record.id]]
    assert left[-2:] == [j.id for j in jobs[4:]]
    assert len(left) <= 3  # pruned once half were seen retired; the rest wait for the next prune
    assert len(advancer.pending[record.id]) == len(left)
    for n, job in enumerate(jobs[4:]):
        advancer.observe_job(Change.deleted(job.id, 200 + n))
    assert record.id not in advancer.pending
    assert not advancer.ended_in


def _ended_steps(advancer: Advancer, count: int) -> tuple[wf.WorkflowRecord, list[Change]]:
    """A workflow of `count` steps, each ended (cancelled: a final state the retirer moves) as the
    record feed shows it to `advancer`."""
    request = wf.WorkflowRequest.model_validate(
        {"steps": [{"name": f"s{n}", "capability": "c"} for n in range(count)]}
    )
    record, ordered = wf.new_record(request, new_ulid(NOW), NOW, None)
    changes = []
    for n, step in enumerate(ordered):
        job = steps.release(steps.waiting_job(step, record, n, NOW, None), {}, NOW)
        changes.append(Change.of(states.cancel(job, NOW), n + 1))
        advancer.observe_job(changes[-1])
    return record, changes


def test_a_final_workflow_of_another_replica_leaves_its_jobs_to_the_retirers() -> None:
    """A replica that does not advance a workflow, seeing it final, hands its step jobs not yet seen
    retired to its retirer (which retires them if the shard comes here): its owner may die before
    retiring them. Nor does it keep a check for it."""
    workflows = SimpleNamespace(nc=None, forget=lambda key, revision: None)
    advancer = Advancer(cast("Workflows", workflows), FakeClock())
    advancer.owns = lambda _: False
    retired: list[str] = []
    advancer.retire = lambda change: retired.append(change.id)
    record, changes = _ended_steps(advancer, 3)
    advancer.observe_workflow(record.id, 1, b"{}", {STATE_HEADER: "running"})
    assert record.id in advancer.checks
    advancer.observe_job(Change.deleted(changes[0].id, 10))  # its owner retired one already
    advancer.observe_workflow(record.id, 2, b"{}", {STATE_HEADER: "succeeded"})
    assert retired == [c.id for c in changes[1:]]
    assert (advancer.pending, advancer.ended, advancer.ended_in, advancer.taken) == ({}, {}, {}, {})
    assert not advancer.checks
