"""Workflows: a DAG of steps, each step a job, advanced exactly once per step by compare-and-set. Pure.

A workflow is one record (the `workflows` bucket) holding the graph and where each step stands; each step
is a job (the `jobs` bucket) that starts in `waiting` and is *released* — CAS `waiting → ready` — once its
parents have all succeeded. Two records per step, and no multi-key transaction, so who decides what:

- **The workflow record decides.** It is the one key every step outcome of a workflow passes through
  (`apply`): the step's new state, which waiting steps are released, which are cancelled, and whether the
  workflow is over. Two parents finishing at once both CAS the same key, so exactly one of those writes
  sees the second parent succeed and releases the child: no child is released before all its parents
  succeeded, and the decision is written once.
- **The jobs obey, idempotently.** What the record decided is carried out on the step jobs by CAS
  (`intents`): release a step whose job is still `waiting` (its CAS `waiting → ready` can succeed once, so
  a step runs once however often the release is replayed), cancel a step that must not start, collect a
  map step's results. An intent whose job has moved on is a no-op.
- **What if the process dies here?** Between the workflow CAS and its intents the record already says
  what must happen; re-deriving the intents from the record (`intents(blank(record), record)`) and
  carrying them out again is safe, because each is guarded by its job's state. Between a step job's final
  CAS and the workflow CAS, the job record says the step ended: the step outcome is read again from the
  job records' change feed (replayed on every start), and applying an outcome twice changes nothing
  (`apply` ignores an outcome for a step already final, or for an older run of it).

Steps are stored in a topological order, so one pass settles the graph. A *map* step runs one instance
job per element of a parent's result list (`map_over`); its own job never runs: it waits, and once every
instance succeeded it succeeds with their results in order — the chord that cannot lose its callback,
since the callback is a record, not a message. Instances that succeed are counted in a bitmap, so counting
the same outcome twice is harmless.

Failure policy: `fail_fast` (default) — a step that ends dead or cancelled cancels every step not started
and the workflow fails once nothing runs any more; `continue` — only the failed step's descendants are
cancelled and independent branches finish. A workflow is final only when every step is.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import Field, PrivateAttr, field_validator, model_validator

from .errors import FieldError, TransitionError
from .ids import ALPHABET, encode, timestamp_ms
from .models import CapabilityName, JobRecord, JobRequest, JobState, Model, Stored
from .shards import shard_of
from .subjects import MAX_RECORD_PARTITIONS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .types import JSON

#: Steps in one workflow, and dependency edges across them.
MAX_STEPS = 2000
MAX_EDGES = 20_000
#: Elements a map step may run over (instances of it).
MAX_MAP_ITEMS = 10_000
#: Bytes of job records a map step's instances may take together, as created: each copies the step's
#: job (its payload) and its other parents' results, so without this one submit and a list of 10,000
#: elements could write gigabytes (10,000 × a record of up to ~1 MiB).
MAX_MAP_BYTES = 64 * 1024 * 1024
#: Bytes of JSON a released step's parents' results may take (step name → result), as handed to it.
MAX_PARENTS_BYTES = 128 * 1024
#: A workflow submit, body and headers (and never more than the server's max_payload).
MAX_WORKFLOW_REQUEST_BYTES = 768 * 1024
#: Bytes a workflow record may take: it is rewritten on every step outcome, so it stays compact.
MAX_WORKFLOW_RECORD_BYTES = 512 * 1024
#: The most a workflow record can grow after creation per step (state, run, counts) and per map step
#: (its bitmap of finished instances, in hex, and an error line).
STEP_GROWTH_BYTES = 96
MAP_GROWTH_BYTES = MAX_MAP_ITEMS // 4 + 512

STEP_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class OnFailure(StrEnum):
    """What a step that ends dead (or cancelled) does to the rest of its workflow."""

    #: Cancel every step not started yet; the workflow fails.
    FAIL_FAST = "fail_fast"
    #: Cancel only the failed step's descendants; independent branches finish.
    CONTINUE = "continue"


class StepRequest(JobRequest, Stored):
    """One step as submitted: a job (every submit option) with a name and its parents.

    Also stored, in a schedule's workflow template: so it keeps unknown fields (`Stored`) where a plain
    submit's `JobRequest` refuses them; as a request it is read at intake's door, which refuses them."""

    name: str
    capability: CapabilityName
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_STEPS)
    #: Run once per element of this parent's result (a list), each instance given its element as `item`.
    map_over: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STEP_NAME_RE.match(value):
            raise ValueError("a step name is 1-64 characters of letters, digits, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _no_key(self) -> StepRequest:
        if self.key is not None:
            raise FieldError("key", "a step takes no key: the workflow's key makes its submit idempotent")
        return self


class WorkflowRequest(Model):
    """The body of `jetsched.workflow.submit`."""

    key: str | None = Field(None, min_length=1, max_length=256)
    on_failure: OnFailure = OnFailure.FAIL_FAST
    steps: list[StepRequest] = Field(min_length=1, max_length=MAX_STEPS)

    _order: list[int] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _graph(self) -> WorkflowRequest:
        self._order = check_graph(self.steps)
        return self

    @property
    def order(self) -> list[int]:
        """The steps' indices in a topological order, as the graph check found them (not worked out again:
        on 2,000 steps and 20,000 edges a pass costs milliseconds of a service's loop)."""
        return self._order


def check_graph(steps: Sequence[StepRequest]) -> list[int]:
    """The steps' indices in a topological order; `FieldError` naming the first problem found."""
    index: dict[str, int] = {}
    for n, step in enumerate(steps):
        if step.name in index:
            raise FieldError(f"steps.{n}.name", f"a second step named '{step.name}'")
        index[step.name] = n
    edges = 0
    for n, step in enumerate(steps):
        seen: set[str] = set()
        for parent in step.depends_on:
            if parent == step.name:
                raise FieldError(f"steps.{n}.depends_on", f"step '{step.name}' depends on itself")
            if parent not in index:
                raise FieldError(f"steps.{n}.depends_on", f"no step named '{parent}'")
            if parent in seen:
                raise FieldError(f"steps.{n}.depends_on", f"'{parent}' is named twice")
            seen.add(parent)
        edges += len(step.depends_on)
        if step.map_over is not None and step.map_over not in seen:
            raise FieldError(f"steps.{n}.map_over", "map_over must name one of the step's depends_on")
    if edges > MAX_EDGES:
        raise FieldError("steps", f"{edges} dependencies; at most {MAX_EDGES}")
    order = _topological(steps, index)
    if len(order) < len(steps):
        placed = set(order)
        stuck = next(n for n in range(len(steps)) if n not in placed)
        raise FieldError(f"steps.{stuck}.depends_on", f"step '{steps[stuck].name}' is on a cycle")
    return order


def _topological(steps: Sequence[StepRequest], index: dict[str, int]) -> list[int]:
    """Kahn's algorithm, taking ready steps in submission order; cycles leave steps out."""
    pending = [len(step.depends_on) for step in steps]
    children: list[list[int]] = [[] for _ in steps]
    for n, step in enumerate(steps):
        for parent in step.depends_on:
            children[index[parent]].append(n)
    order = [n for n, count in enumerate(pending) if count == 0]
    for n in order:  # grows while iterating
        for child in children[n]:
            pending[child] -= 1
            if pending[child] == 0:
                order.append(child)
    return order


class WorkflowState(StrEnum):
    """Where a workflow is. `succeeded`, `failed` and `cancelled` are final."""

    #: Being stored (its step jobs are being created): not visible through the API yet.
    CREATING = "creating"
    #: Some step is not final yet.
    RUNNING = "running"
    #: Every step succeeded.
    SUCCEEDED = "succeeded"
    #: Every step is final and some did not succeed.
    FAILED = "failed"
    #: Cancelled through `workflows.cancel`; every step is final.
    CANCELLED = "cancelled"


WORKFLOW_TERMINAL = frozenset({WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED})


class StepState(StrEnum):
    """Where one step is, as its workflow record says."""

    #: Some parent has not succeeded yet.
    WAITING = "waiting"
    #: Its parents succeeded: its job is released to run (a map step: its instances are).
    RELEASED = "released"
    SUCCEEDED = "succeeded"
    #: Its job ended dead (or a map instance did, or its list could not be mapped over).
    FAILED = "failed"
    #: Cancelled before it started (or its job was cancelled).
    CANCELLED = "cancelled"


STEP_TERMINAL = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED})
_NOT_SUCCEEDED = frozenset({StepState.FAILED, StepState.CANCELLED})


class Step(Stored):
    name: str
    job_id: str
    #: Indices of its parents in the workflow's step list (which is in topological order).
    parents: tuple[int, ...] = ()
    map_over: int | None = None
    state: StepState = StepState.WAITING
    #: Runs started (a `workflows.retry` starts another, with new job ids).
    run: int = 0
    #: A succeeded step's result length when it is a list and some step maps over it.
    items: int | None = None
    #: A released map step's instance count.
    instances: int | None = None
    #: A map step's succeeded instances: a bitmap in hex (bit i: instance i).
    done: str = ""
    #: Why a released map step cannot succeed (an instance ended, or its list is unusable).
    error: str | None = None

    @property
    def finished_instances(self) -> int:
        return int(self.done, 16).bit_count() if self.done else 0


class WorkflowRecord(Stored):
    """One workflow: the value under its id in the `workflows` bucket."""

    id: str
    state: WorkflowState
    on_failure: OnFailure = OnFailure.FAIL_FAST
    key: str | None = None
    steps: tuple[Step, ...]
    cancel_requested: bool = False
    created_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None = None
    trace: dict[str, str] | None = None
    #: The schedule whose fire started it, and the fire's nominal time.
    schedule_id: str | None = None
    fire_at_ms: int | None = None
    #: The record partitions its step jobs' ids were chosen for (`step_job_id`): 1 in a record written
    #: before partitions existed, whose steps keep the ids it gave them.
    partitions: int = Field(default=1, ge=1, le=MAX_RECORD_PARTITIONS)

    #: Each step's children, worked out once for a record and the copies made of it (no change of a
    #: workflow touches its graph).
    _children: tuple[tuple[int, ...], ...] | None = PrivateAttr(default=None)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def children(self, index: int) -> tuple[int, ...]:
        """The steps that have step `index` among their parents, in order."""
        if self._children is None:
            found: list[list[int]] = [[] for _ in self.steps]
            for n, step in enumerate(self.steps):
                for parent in step.parents:
                    found[parent].append(n)
            self._children = tuple(tuple(c) for c in found)
        return self._children[index]


def step_job_id(
    workflow_id: str, index: int, run: int, instance: int | None = None, *, partitions: int = 1
) -> str:
    """A step job's id: a ULID with the workflow's time and a hash of (workflow, step, run, instance) —
    the same on every replay, so re-creating it is a CAS that finds it there — placed in its workflow's
    record partition (`place`), so that the reaper replica owning that partition sees all its steps."""
    digest = hashlib.sha256(f"{workflow_id}:{index}:{run}:{instance}".encode()).digest()[:10]
    return place((timestamp_ms(workflow_id) << 80) | int.from_bytes(digest, "big"), workflow_id, partitions)


#: The low bits of a step job's id varied to place it: 2^15 candidates, where the odds that none of them
#: lands in a given one of `MAX_RECORD_PARTITIONS` (32) partitions are (31/32)^32768 — never.
_PLACING_BITS = 15


def place(value: int, anchor: str, partitions: int) -> str:
    """The ULID `value`, its low bits changed as little as it takes for it to share `anchor`'s record
    partition (`shard_of(·, partitions)`). With one partition it is `value` unchanged — the ids steps had
    before partitions existed. Deterministic: every replica and replay places an id the same way."""
    job_id = encode(value)
    target = shard_of(anchor, partitions)
    if partitions == 1 or shard_of(job_id, partitions) == target:
        return job_id
    # Only the last three characters change (15 bits, 5 a character): the CRC of the rest is taken once
    # and continued over each candidate's tail (`shard_of` is the CRC-32 of the whole id) — about P tries
    # of a few hundred nanoseconds each, not P encodes and hashes of the whole id.
    head = job_id[:-3]
    crc_head = zlib.crc32(head.encode())
    low = value & ((1 << _PLACING_BITS) - 1)
    for flip in range(1, 1 << _PLACING_BITS):
        bits = low ^ flip
        tail = ALPHABET[bits >> 10] + ALPHABET[(bits >> 5) & 31] + ALPHABET[bits & 31]
        if zlib.crc32(tail.encode(), crc_head) % partitions == target:
            return head + tail
    raise AssertionError(f"no id among 2^{_PLACING_BITS} lands in partition {target} of {partitions}")


def placed(record: WorkflowRecord, partitions: int) -> bool:
    """Whether every step job the record names, and every map instance it will make, lives in the
    workflow's record partition: false for a record written before partitions existed, or by a version
    that did not place its steps (the reapers then follow every partition while it runs)."""
    if record.partitions != partitions:
        return False
    home = shard_of(record.id, partitions)
    return all(shard_of(step.job_id, partitions) == home for step in record.steps)


def new_record(
    request: WorkflowRequest,
    workflow_id: str,
    now_ms: int,
    trace: dict[str, str] | None,
    *,
    partitions: int = 1,
) -> tuple[WorkflowRecord, list[StepRequest]]:
    """The `creating` record of a valid request, and the step requests in the record's (topological)
    order; its step jobs' ids placed for `partitions` record partitions."""
    order = request.order
    position = {request.steps[n].name: at for at, n in enumerate(order)}
    ordered = [request.steps[n] for n in order]
    steps = tuple(
        Step(
            name=step.name,
            job_id=step_job_id(workflow_id, at, 0, partitions=partitions),
            parents=tuple(sorted(position[p] for p in step.depends_on)),
            map_over=None if step.map_over is None else position[step.map_over],
        )
        for at, step in enumerate(ordered)
    )
    record = WorkflowRecord(
        id=workflow_id,
        state=WorkflowState.CREATING,
        on_failure=request.on_failure,
        key=request.key,
        steps=steps,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
        trace=trace,
        partitions=partitions,
    )
    return record, ordered


def growth_bytes(record: WorkflowRecord) -> int:
    """The most `record` can grow over its life (see `MAX_WORKFLOW_RECORD_BYTES`)."""
    maps = sum(1 for s in record.steps if s.map_over is not None)
    return len(record.steps) * STEP_GROWTH_BYTES + maps * MAP_GROWTH_BYTES


# --- outcomes and the decider ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepEvent:
    """A step job's final state, as the workflow learns it."""

    index: int
    run: int
    outcome: StepState
    #: A map instance's position (None: the step's own job).
    instance: int | None = None
    #: A succeeded step's result length, when its result is a list.
    items: int | None = None
    #: A succeeded step's result, as its job holds it: carried so releasing its children needs no read of
    #: the job. The decider never looks at it.
    result: JSON = field(default=None, compare=False)


_OUTCOMES = {
    JobState.SUCCEEDED: StepState.SUCCEEDED,
    JobState.DEAD: StepState.FAILED,
    JobState.CANCELLED: StepState.CANCELLED,
}


def event_of(record: JobRecord) -> StepEvent | None:
    """The step outcome a final step job means; None for a job that is no step or not final."""
    link = record.workflow
    outcome = _OUTCOMES.get(record.state)
    if link is None or outcome is None:
        return None
    items = len(record.result) if isinstance(record.result, list) else None
    return StepEvent(link.index, link.run, outcome, link.instance, items, record.result)


def stopping(record: WorkflowRecord) -> bool:
    """Whether nothing more may start: cancelled, or failing fast."""
    return record.cancel_requested or (
        record.on_failure is OnFailure.FAIL_FAST and any(s.state in _NOT_SUCCEEDED for s in record.steps)
    )


def apply(record: WorkflowRecord, events: Iterable[StepEvent], now_ms: int) -> WorkflowRecord:
    """The record after these step outcomes: steps released or cancelled, the workflow final or not.

    Idempotent: an outcome already applied, for an older run, or for a final workflow changes nothing —
    and `apply(r, [], now)` of a settled record is `r` itself.

    Successes are taken in first, each releasing what it may, then the rest. Outcomes taken in together
    may have happened in any order, and a success's children may have been released already, without
    the record (`direct_children`): a failure settled first would cancel them as still waiting — ending
    a fail-fast workflow while one of them runs, and recording as cancelled a step a retry then runs
    again. Settled after the successes, the failure finds them released, and the workflow waits for
    them (their jobs are cancelled if they have not started).
    """
    if record.state is not WorkflowState.RUNNING:
        return record
    events = list(events)
    successes = [e for e in events if e.outcome is StepState.SUCCEEDED]
    if successes and len(successes) < len(events):
        others = [e for e in events if e.outcome is not StepState.SUCCEEDED]
        return apply(apply(record, successes, now_ms), others, now_ms)
    steps = list(record.steps)
    for event in events:
        if not 0 <= event.index < len(steps):
            continue
        step = steps[event.index]
        if event.run != step.run or step.state in STEP_TERMINAL:
            continue
        if event.instance is None:
            steps[event.index] = step.model_copy(update={"state": event.outcome, "items": event.items})
        elif step.state is StepState.RELEASED and 0 <= event.instance < (step.instances or 0):
            steps[event.index] = _instance_finished(step, event)
    return _settle(record, steps, now_ms)


def direct_children(record: WorkflowRecord, event: StepEvent) -> tuple[int, ...] | None:
    """The children a step's success releases with no change to the workflow record first, or None when
    the record must decide (`apply`) before anything moves.

    A child whose only parent is this step needs no other outcome to be released: the parent's success
    is the whole of its condition, and its job's own CAS `waiting → ready` makes the release happen once,
    however often it is tried. So the success of a step all of whose children are plain single-parent
    steps still waiting releases them directly, and the record takes the outcome in later, together with
    the next ones (`reaper/advance.py`): a chain writes its record once per burst of outcomes instead of
    once per step. `record` may be behind the stored one (by writes not seen yet): a child released from
    it by mistake — the workflow just stopped — is cancelled by the stop's own intents, which cancel
    released steps alike.

    None when: the workflow is not running or is stopping; the outcome is not a success of the step's
    current run (a map instance's included); the step has no children; or some child has other parents,
    maps over a list, or is no longer waiting.
    """
    if record.state is not WorkflowState.RUNNING:
        return None
    if event.outcome is not StepState.SUCCEEDED or event.instance is not None:
        return None
    if not 0 <= event.index < len(record.steps):
        return None
    step = record.steps[event.index]
    if event.run != step.run or step.state in _NOT_SUCCEEDED:
        return None
    children = record.children(event.index)
    if not children:
        return None
    for n in children:
        child = record.steps[n]
        if (
            child.parents != (event.index,)
            or child.map_over is not None
            or child.state is not StepState.WAITING
        ):
            return None
    if stopping(record):  # last: it looks at every step
        return None
    return children


def _instance_finished(step: Step, event: StepEvent) -> Step:
    assert event.instance is not None
    if event.outcome is StepState.SUCCEEDED:
        bits = (int(step.done, 16) if step.done else 0) | (1 << event.instance)
        return step.model_copy(update={"done": format(bits, "x")})
    if step.error is not None:
        return step
    return step.model_copy(update={"error": f"instance {event.instance} ended {event.outcome.value}"})


def _settle(record: WorkflowRecord, steps: list[Step], now_ms: int) -> WorkflowRecord:
    """Release or cancel waiting steps (one pass: the steps are in topological order); finish if done."""
    draft = record.model_copy(update={"steps": tuple(steps)})
    halt = stopping(draft)
    for n, step in enumerate(steps):
        if step.state is not StepState.WAITING:
            continue
        parents = [steps[p].state for p in step.parents]
        if halt or any(state in _NOT_SUCCEEDED for state in parents):
            steps[n] = step.model_copy(update={"state": StepState.CANCELLED})
        elif all(state is StepState.SUCCEEDED for state in parents):
            steps[n] = _released(step, steps)
    update: dict[str, object] = {"steps": tuple(steps)}
    if all(s.state in STEP_TERMINAL for s in steps):
        if record.cancel_requested:
            update["state"] = WorkflowState.CANCELLED
        elif all(s.state is StepState.SUCCEEDED for s in steps):
            update["state"] = WorkflowState.SUCCEEDED
        else:
            update["state"] = WorkflowState.FAILED
        update["finished_at_ms"] = now_ms
    if update["steps"] == record.steps and "state" not in update:
        return record
    return record.model_copy(update={**update, "updated_at_ms": now_ms})


def _released(step: Step, steps: list[Step]) -> Step:
    if step.map_over is None:
        return step.model_copy(update={"state": StepState.RELEASED})
    source = steps[step.map_over]
    if source.items is None:
        error = f"the result of '{source.name}' is not a list"
        return step.model_copy(update={"state": StepState.RELEASED, "error": error})
    if source.items > MAX_MAP_ITEMS:
        error = f"the result of '{source.name}' has {source.items} elements; a map takes {MAX_MAP_ITEMS}"
        return step.model_copy(update={"state": StepState.RELEASED, "error": error})
    return step.model_copy(update={"state": StepState.RELEASED, "instances": source.items})


def start(record: WorkflowRecord, now_ms: int) -> WorkflowRecord:
    """creating → running, releasing the steps without parents."""
    if record.state is not WorkflowState.CREATING:
        raise TransitionError(f"workflow {record.id} is {record.state}, not creating")
    running = record.model_copy(update={"state": WorkflowState.RUNNING})
    return _settle(running, list(running.steps), now_ms)


def cancel(record: WorkflowRecord, now_ms: int) -> WorkflowRecord:
    """running → cancelling: no step starts any more; running ones are told to stop."""
    if record.state is not WorkflowState.RUNNING:
        raise TransitionError(f"workflow {record.id} is {record.state}, not running")
    if record.cancel_requested:
        return record
    requested = record.model_copy(update={"cancel_requested": True, "updated_at_ms": now_ms})
    return _settle(requested, list(requested.steps), now_ms)


#: What a step's new run starts from: everything its last run decided, undone. (A copy, not a new `Step`,
#: so the fields of the step that this version does not know are kept, as `Stored` promises.)
_NEW_RUN: dict[str, object] = {
    "state": StepState.WAITING,
    "items": None,
    "instances": None,
    "done": "",
    "error": None,
}


def retry(record: WorkflowRecord, now_ms: int) -> WorkflowRecord:
    """failed (or cancelled) → running again from the steps that did not succeed, each in a new run
    (new job ids, `_NEW_RUN`); the steps that succeeded keep their results."""
    if record.state not in (WorkflowState.FAILED, WorkflowState.CANCELLED):
        raise TransitionError(
            f"workflow {record.id} is {record.state}: only a failed or cancelled one retries"
        )
    steps = [
        step
        if step.state is StepState.SUCCEEDED
        else step.model_copy(
            update={
                **_NEW_RUN,
                "job_id": step_job_id(record.id, n, step.run + 1, partitions=record.partitions),
                "run": step.run + 1,
            }
        )
        for n, step in enumerate(record.steps)
    ]
    again = record.model_copy(
        update={
            "state": WorkflowState.RUNNING,
            "cancel_requested": False,
            "finished_at_ms": None,
            "steps": tuple(steps),
        }
    )
    return _settle(again, steps, now_ms)


def retried_steps(before: WorkflowRecord, after: WorkflowRecord) -> list[int]:
    """The steps a retry starts anew (their new runs' jobs must exist before the retry is stored)."""
    return [
        n for n, (old, new) in enumerate(zip(before.steps, after.steps, strict=True)) if old.run != new.run
    ]


# --- intents: what the jobs must be made to match --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """Queue the step's job with its parents' results (a map step: create its instances)."""

    index: int


@dataclass(frozen=True, slots=True)
class Collect:
    """Every instance of a map step succeeded: its job succeeds with their results in order."""

    index: int


@dataclass(frozen=True, slots=True)
class Fail:
    """A map step cannot succeed: its job ends dead (and its unstarted instances are cancelled)."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the step's job (and a map step's instances) unless it is running — or even then, when the
    workflow itself was cancelled (`running`: the worker is told to stop)."""

    index: int
    running: bool = False


Intent = Release | Collect | Fail | Cancel


def blank(record: WorkflowRecord) -> WorkflowRecord:
    """A baseline where nothing was decided yet: `intents(blank(r), r)` is everything `r` implies."""
    steps = tuple(Step(name=s.name, job_id=s.job_id, parents=s.parents, run=s.run) for s in record.steps)
    return record.model_copy(
        update={"steps": steps, "cancel_requested": False, "state": WorkflowState.RUNNING}
    )


def intents(before: WorkflowRecord, after: WorkflowRecord) -> list[Intent]:
    """What the step jobs must be made to do now that the record went from `before` to `after`."""
    found: list[Intent] = []
    halt = stopping(after)
    newly_halted = halt and not stopping(before)
    for n, (old, new) in enumerate(zip(before.steps, after.steps, strict=True)):
        if new.state is StepState.CANCELLED and old.state is StepState.WAITING:
            # Cancelled before release: its job still waits. (A released step is cancelled by its job.)
            found.append(Cancel(n, running=after.cancel_requested))
        elif new.state is StepState.RELEASED:
            if halt:
                if newly_halted or old.state is not StepState.RELEASED:
                    found.append(Cancel(n, running=after.cancel_requested))
                continue
            if new.error is not None:
                if old.error is None:
                    found.append(Fail(n, new.error))
                continue
            if old.state is not StepState.RELEASED:
                found.append(Release(n))
            if (
                new.instances is not None
                and _complete(new)
                and not (old.instances is not None and _complete(old))
            ):
                found.append(Collect(n))
    return found


def _complete(step: Step) -> bool:
    return step.finished_instances == step.instances
