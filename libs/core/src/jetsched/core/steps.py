"""The job-record verbs of workflow steps: waiting, released, expanded into map instances, collected. Pure.

A step's job is created `waiting` (nothing dispatches it) and is *released* by one CAS `waiting → ready`
(or `scheduled`, when it has a start delay, counted from its release), carrying its parents' results.
That CAS can win once, so a step is queued once however often its workflow's intents are replayed
(`workflows.py`). A map step's own job never runs: it is marked expanded once its instances exist, and
ends `succeeded` with their results (collected in order) or `dead`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import bounds, states
from .errors import TransitionError
from .models import ErrorKind, JobRecord, JobState, WorkflowLink
from .workflows import MAX_MAP_BYTES, MAX_PARENTS_BYTES, step_job_id

if TYPE_CHECKING:
    from .types import JSON
    from .workflows import StepRequest, WorkflowRecord

#: What a step's record must leave room for beyond a plain job's growth: its parents' results and, for a
#: map instance, its element (an element of a result, so at most a result's size).
STEP_GROWTH_BYTES = MAX_PARENTS_BYTES + bounds.MAX_RESULT_BYTES


def waiting_job(
    request: StepRequest, workflow: WorkflowRecord, index: int, now_ms: int, trace: dict[str, str] | None
) -> JobRecord:
    """The `waiting` job of step `index` (in the record's order) of a new workflow's first run."""
    step = workflow.steps[index]
    plain = request.model_copy(update={"delay_ms": None, "expires_in_ms": None})
    accepted = states.accept(plain, step.job_id, request.capability, now_ms, trace)
    link = WorkflowLink(
        id=workflow.id,
        step=step.name,
        index=index,
        run=step.run,
        map=step.map_over is not None,
        delay_ms=request.delay_ms,
        expires_in_ms=request.expires_in_ms,
    )
    return accepted.model_copy(
        update={"state": JobState.WAITING, "ready_since_ms": None, "expires_at_ms": None, "workflow": link}
    )


def rerun(previous: JobRecord, workflow: WorkflowRecord, index: int, now_ms: int) -> JobRecord:
    """The `waiting` job of a retried step's new run, with the options of its previous run's job."""
    step = workflow.steps[index]
    assert previous.workflow is not None
    link = previous.workflow.model_copy(update={"run": step.run})
    return previous.model_copy(
        update={
            "id": step.job_id,
            "state": JobState.WAITING,
            "attempt": 0,
            "releases": 0,
            "ready_since_ms": None,
            "expires_at_ms": None,
            "lease": None,
            "last_run": None,
            "errors": (),
            "result": None,
            "parents": None,
            "created_at_ms": now_ms,
            "updated_at_ms": now_ms,
            "started_at_ms": None,
            "finished_at_ms": None,
            "workflow": link,
        }
    )


def _require_waiting(rec: JobRecord, verb: str) -> WorkflowLink:
    if rec.state is not JobState.WAITING or rec.workflow is None:
        raise TransitionError(f"cannot {verb} {rec.id}: it is {rec.state}, not a waiting step")
    return rec.workflow


def parents_problem(parents: dict[str, JSON]) -> str | None:
    size = bounds.json_bytes(parents)
    if size > MAX_PARENTS_BYTES:
        return f"its parents' results take {size} bytes of JSON; a step may be handed {MAX_PARENTS_BYTES}"
    return None


def instance_parents(parents: dict[str, JSON], source: str) -> dict[str, JSON]:
    """What each instance of a map step over `source` is handed as `parents`: the other parents' results.

    Its element comes as `item`, not the whole list again: repeated in every instance, the list would
    make a map's records (and every feed reading them) grow with its size squared."""
    return {name: result for name, result in parents.items() if name != source}


def map_bytes(rec: JobRecord, parents: dict[str, JSON], source: str, now_ms: int) -> int:
    """Bytes the job records of a map step's instances take together, as created (an upper bound).

    Each is a copy of the step's job with the other parents' results and one element, so they take the
    count times one such record without its element, plus the elements: the list, at most a result."""
    items = parents[source]
    if not isinstance(items, list) or not items:
        return 0
    # The last instance's record: its number has the most digits. `"item":` and a comma per element.
    # (Its id placed for one partition: ids are as long whatever partition they are placed in.)
    last = instance(rec, len(items) - 1, None, instance_parents(parents, source), now_ms, 1)
    one = len(last.model_dump_json(exclude_defaults=True)) + len(',"item":')
    return len(items) * one + bounds.json_bytes(items)


def map_problem(rec: JobRecord, parents: dict[str, JSON], source: str, now_ms: int) -> tuple[str, str] | None:
    """Why a map step's job cannot be expanded — (error type, message) to `fail` it with — or None.

    Checked before any of its instances exists, as `release` checks a plain step's parents:
    - `ParentsTooLarge`: its own job keeps every parent's result (`expand`); an instance is handed all
      but the list it maps over, plus one element of it (`instance`) — never more than them all, so the
      one bound covers both.
    - `MapTooLarge`: its instances' records would take more than `MAX_MAP_BYTES` (`map_bytes`).
    """
    problem = parents_problem(parents)
    if problem is not None:
        return "ParentsTooLarge", problem
    size = map_bytes(rec, parents, source, now_ms)
    if size > MAX_MAP_BYTES:
        count = len(parents[source])  # a list: only a list has a size over 0
        return "MapTooLarge", (
            f"its {count} instances' job records would take {size} bytes (each a copy of its job, payload "
            f"and other parents' results included); a map step may write {MAX_MAP_BYTES}"
        )
    return None


def _queued(rec: JobRecord, link: WorkflowLink, now_ms: int, **changes: object) -> JobRecord:
    run_at_ms = max(rec.run_at_ms, now_ms + (link.delay_ms or 0))
    ready = run_at_ms <= now_ms
    return rec.model_copy(
        update={
            "state": JobState.READY if ready else JobState.SCHEDULED,
            "run_at_ms": run_at_ms,
            "ready_since_ms": run_at_ms if ready else None,
            "expires_at_ms": None if link.expires_in_ms is None else run_at_ms + link.expires_in_ms,
            "updated_at_ms": now_ms,
            **changes,
        }
    )


def release(rec: JobRecord, parents: dict[str, JSON], now_ms: int) -> JobRecord:
    """waiting → ready (or scheduled, after its delay) with its parents' results; dead if they are too
    large to hand over."""
    link = _require_waiting(rec, "release")
    if link.map:
        raise TransitionError(f"{rec.id} is a map step's job: it is expanded, not released")
    problem = parents_problem(parents)
    if problem is not None:
        return fail(rec, "ParentsTooLarge", problem, now_ms)
    return _queued(rec, link, now_ms, parents=parents)


def expand(rec: JobRecord, parents: dict[str, JSON], now_ms: int) -> JobRecord:
    """A map step's job, once every instance exists: still waiting, now holding its parents' results."""
    link = _require_waiting(rec, "expand")
    if not link.map or rec.parents is not None:
        raise TransitionError(f"{rec.id} is not an unexpanded map step")
    return rec.model_copy(update={"parents": parents, "updated_at_ms": now_ms})


def instance(
    rec: JobRecord, number: int, item: JSON, parents: dict[str, JSON], now_ms: int, partitions: int
) -> JobRecord:
    """Map instance `number` of a map step's job: a new job, queued at once, handed `item`, its id
    placed for its workflow record's `partitions`."""
    link = rec.workflow
    assert link is not None
    sub = link.model_copy(update={"instance": number, "map": False})
    fresh = rec.model_copy(
        update={
            "id": step_job_id(link.id, link.index, link.run, number, partitions=partitions),
            "created_at_ms": now_ms,
            "workflow": sub,
            "item": item,
        }
    )
    return _queued(fresh, sub, now_ms, parents=parents)


def collect(rec: JobRecord, results: list[JSON], now_ms: int) -> JobRecord:
    """A map step's job: waiting → succeeded with its instances' results in order (dead if too large)."""
    _require_waiting(rec, "collect")
    problem = states.result_problem(results)
    if problem is not None:
        return fail(rec, "ResultRejected", problem, now_ms)
    return rec.model_copy(
        update={
            "state": JobState.SUCCEEDED,
            "result": results,
            "finished_at_ms": now_ms,
            "updated_at_ms": now_ms,
        }
    )


def fail(rec: JobRecord, type: str, message: str, now_ms: int) -> JobRecord:
    """A waiting step's job: → dead without running (its parents cannot be handed over, a map failed)."""
    _require_waiting(rec, "fail")
    info = states.error_info(rec.attempt, now_ms, ErrorKind.ERROR, type, message)
    return rec.model_copy(
        update={
            "state": JobState.DEAD,
            "errors": (*rec.errors, info)[-bounds.MAX_ERRORS :],
            "finished_at_ms": now_ms,
            "updated_at_ms": now_ms,
        }
    )
