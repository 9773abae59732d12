"""The workflow DAG: validation of submits, the advancement decider, and the intents it implies."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from jetsched.core import workflows as wf
from jetsched.core.errors import FieldError, TransitionError
from jetsched.core.ids import ULID_RE, new_ulid, timestamp_ms
from jetsched.core.shards import shard_of
from jetsched.core.workflows import (
    Cancel,
    Collect,
    Fail,
    OnFailure,
    Release,
    StepEvent,
    StepState,
    WorkflowRecord,
    WorkflowRequest,
    WorkflowState,
)

NOW = 1_800_000_000_000
S, F, C = StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED


def request(steps: list[dict[str, Any]], **extra: Any) -> WorkflowRequest:
    return WorkflowRequest.model_validate({"steps": [{"capability": "cap", **s} for s in steps], **extra})


def started(steps: list[dict[str, Any]], **extra: Any) -> WorkflowRecord:
    record, _ = wf.new_record(request(steps, **extra), new_ulid(NOW), NOW, None)
    return wf.start(record, NOW)


def states(record: WorkflowRecord) -> dict[str, str]:
    return {s.name: s.state.value for s in record.steps}


def index(record: WorkflowRecord, name: str) -> int:
    return next(n for n, s in enumerate(record.steps) if s.name == name)


def done(
    record: WorkflowRecord, name: str, outcome: StepState = S, items: int | None = None
) -> WorkflowRecord:
    n = index(record, name)
    return wf.apply(record, [StepEvent(n, record.steps[n].run, outcome, items=items)], NOW + 1)


def problem(steps: list[dict[str, Any]]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        request(steps)
    error = caught.value.errors()[0]
    cause = error.get("ctx", {}).get("error")
    field = ".".join(str(p) for p in error["loc"])
    if isinstance(cause, FieldError):
        field = f"{field}.{cause.field}" if field else cause.field
    return field, str(cause or error["msg"])


class TestValidation:
    @pytest.mark.parametrize(
        ("steps", "field", "words"),
        [
            ([{"name": "a"}, {"name": "a"}], "steps.1.name", "second step named"),
            ([{"name": "a", "depends_on": ["a"]}], "steps.0.depends_on", "depends on itself"),
            ([{"name": "a", "depends_on": ["x"]}], "steps.0.depends_on", "no step named 'x'"),
            ([{"name": "a"}, {"name": "b", "depends_on": ["a", "a"]}], "steps.1.depends_on", "named twice"),
            (
                [{"name": "a", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}],
                "steps.0.depends_on",
                "cycle",
            ),
            ([{"name": "a"}, {"name": "b", "map_over": "a"}], "steps.1.map_over", "depends_on"),
            ([{"name": "a b"}], "steps.0.name", "a step name"),
            ([{"name": "a", "key": "k"}], "steps.0.key", "takes no key"),
        ],
    )
    def test_refused(self, steps: list[dict[str, Any]], field: str, words: str) -> None:
        """A malformed graph is refused, naming the field to blame."""
        got_field, message = problem(steps)
        assert got_field == field
        assert words in message

    def test_too_many_steps(self) -> None:
        """A graph over the step limit is refused."""
        with pytest.raises(ValidationError):
            request([{"name": f"s{n}"} for n in range(wf.MAX_STEPS + 1)])

    def test_unknown_field(self) -> None:
        """A typo in a step is an error, like in a submit, as intake reads a request (`extra="forbid"`:
        a step is stored too, in a schedule's template, where it keeps unknown fields)."""
        body = {"steps": [{"name": "a", "capability": "cap", "prority": 3}]}
        with pytest.raises(ValidationError, match=r"steps\.0\.prority"):
            WorkflowRequest.model_validate(body, extra="forbid")
        with pytest.raises(ValidationError, match="prority"):
            WorkflowRequest.model_validate({**body, "prority": 3})  # the request itself: strict anyway

    def test_a_late_cycle_costs_no_more_than_the_graph(self) -> None:
        """A cycle among the last of 2,000 steps is found in about the time the graph's check takes anyway.
        (Finding the first step left out rebuilt the set of placed steps once per step looked at: ~80 ms of
        quadratic work for each such request a client cared to send.) Measured in CPU time, the better of
        three runs each, against the same graph without the cycle."""
        size = wf.MAX_STEPS
        plain = [wf.StepRequest(name=f"s{n}", capability="cap") for n in range(size)]
        cycle = [wf.StepRequest(name=f"s{size - 2}", capability="cap", depends_on=[f"s{size - 1}"])]
        cycle.append(wf.StepRequest(name=f"s{size - 1}", capability="cap", depends_on=[f"s{size - 2}"]))
        cyclic = plain[:-2] + cycle

        def cost(steps: list[wf.StepRequest]) -> float:
            best = float("inf")
            for _ in range(3):
                started = time.process_time()
                with contextlib.suppress(FieldError):
                    wf.check_graph(steps)
                best = min(best, time.process_time() - started)
            return best

        with pytest.raises(FieldError, match="on a cycle"):
            wf.check_graph(cyclic)
        slow, fast = cost(cyclic), cost(plain)
        assert slow < 3 * fast + 0.002, f"{slow * 1000:.1f} ms with the cycle, {fast * 1000:.1f} ms without"

    def test_topological_order(self) -> None:
        """The record stores steps parents first, whatever the submitted order."""
        record, ordered = wf.new_record(
            request([{"name": "c", "depends_on": ["b"]}, {"name": "b", "depends_on": ["a"]}, {"name": "a"}]),
            new_ulid(NOW),
            NOW,
            None,
        )
        assert [s.name for s in record.steps] == ["a", "b", "c"] == [s.name for s in ordered]
        assert record.steps[2].parents == (1,)
        assert record.state is WorkflowState.CREATING

    def test_job_ids_are_deterministic(self) -> None:
        """A step's job id depends only on (workflow, step, run, instance), and is a ULID of the workflow's time."""
        workflow_id = new_ulid(NOW)
        first = wf.step_job_id(workflow_id, 3, 0)
        assert first == wf.step_job_id(workflow_id, 3, 0)
        assert len({first, wf.step_job_id(workflow_id, 3, 1), wf.step_job_id(workflow_id, 3, 0, 0)}) == 3
        assert first[:10] == workflow_id[:10]


class TestAdvance:
    def test_roots_released_on_start(self) -> None:
        """Steps without parents are released when the workflow starts; the others wait."""
        record = started([{"name": "a"}, {"name": "b"}, {"name": "c", "depends_on": ["a", "b"]}])
        assert states(record) == {"a": "released", "b": "released", "c": "waiting"}
        assert record.state is WorkflowState.RUNNING

    def test_fan_in_waits_for_every_parent(self) -> None:
        """A step with two parents is released only by the second success, once."""
        record = started([{"name": "a"}, {"name": "b"}, {"name": "c", "depends_on": ["a", "b"]}])
        after_a = done(record, "a")
        assert wf.intents(record, after_a) == []
        after_b = done(after_a, "b")
        assert wf.intents(after_a, after_b) == [Release(index(record, "c"))]
        assert done(after_b, "b") is after_b  # a replayed outcome changes nothing

    def test_chain_succeeds(self) -> None:
        """A chain ends succeeded once its last step does."""
        record = started([{"name": "a"}, {"name": "b", "depends_on": ["a"]}])
        record = done(done(record, "a"), "b")
        assert record.state is WorkflowState.SUCCEEDED
        assert record.finished_at_ms == NOW + 1

    def test_fail_fast_cancels_what_has_not_started(self) -> None:
        """fail_fast: a dead step cancels waiting steps and released ones not running; fails when all final."""
        record = started([{"name": "a"}, {"name": "b"}, {"name": "c", "depends_on": ["b"]}])
        after = done(record, "a", F)
        assert states(after) == {"a": "failed", "b": "released", "c": "cancelled"}
        assert set(wf.intents(record, after)) == {Cancel(index(record, "b")), Cancel(index(record, "c"))}
        assert after.state is WorkflowState.RUNNING
        assert done(after, "b").state is WorkflowState.FAILED

    def test_continue_cancels_only_descendants(self) -> None:
        """continue: the failed step's descendants are cancelled; an independent branch goes on."""
        steps: list[dict[str, Any]] = [
            {"name": "a"},
            {"name": "a2", "depends_on": ["a"]},
            {"name": "b"},
            {"name": "b2", "depends_on": ["b"]},
        ]
        record = started(steps, on_failure="continue")
        after = done(record, "a", F)
        assert states(after) == {"a": "failed", "a2": "cancelled", "b": "released", "b2": "waiting"}
        after = done(done(after, "b"), "b2")
        assert after.state is WorkflowState.FAILED
        assert states(after)["b2"] == "succeeded"

    def test_cancel(self) -> None:
        """Cancelling cancels waiting steps, tells released (even running) ones, ends cancelled."""
        record = started([{"name": "a"}, {"name": "b", "depends_on": ["a"]}])
        after = wf.cancel(record, NOW + 1)
        assert wf.intents(record, after) == [Cancel(0, running=True), Cancel(1, running=True)]
        assert wf.cancel(after, NOW + 2) is after
        final = done(after, "a", C)
        assert final.state is WorkflowState.CANCELLED
        with pytest.raises(TransitionError):
            wf.cancel(final, NOW)

    def test_retry_keeps_successes(self) -> None:
        """A retried workflow re-runs its failed and cancelled steps under new job ids, keeping successes."""
        record = started(
            [{"name": "a"}, {"name": "b", "depends_on": ["a"]}, {"name": "c", "depends_on": ["b"]}]
        )
        failed = done(done(record, "a"), "b", F)
        assert failed.state is WorkflowState.FAILED
        again = wf.retry(failed, NOW + 5)
        assert states(again) == {"a": "succeeded", "b": "released", "c": "waiting"}
        assert wf.retried_steps(failed, again) == [1, 2]
        assert again.steps[1].job_id != failed.steps[1].job_id
        # An outcome of the old run is ignored.
        assert wf.apply(again, [StepEvent(1, 0, F)], NOW + 6) is again
        assert done(done(again, "b"), "c").state is WorkflowState.SUCCEEDED
        with pytest.raises(TransitionError):
            wf.retry(again, NOW)

    def test_start_only_once(self) -> None:
        """Only a creating workflow starts."""
        with pytest.raises(TransitionError):
            wf.start(started([{"name": "a"}]), NOW)


class TestMap:
    STEPS: list[dict[str, Any]] = [  # noqa: RUF012 - a table
        {"name": "list"},
        {"name": "each", "depends_on": ["list"], "map_over": "list"},
        {"name": "sum", "depends_on": ["each"]},
    ]

    def test_instances_then_collect(self) -> None:
        """A map step releases one instance per element and is collected once all have succeeded."""
        record = done(started(self.STEPS), "list", items=3)
        each = record.steps[1]
        assert (each.state, each.instances) == (StepState.RELEASED, 3)
        for n in (2, 0, 0):
            previous, record = record, wf.apply(record, [StepEvent(1, 0, S, instance=n)], NOW + 2)
            assert wf.intents(previous, record) == []
        previous, record = record, wf.apply(record, [StepEvent(1, 0, S, instance=1)], NOW + 3)
        assert wf.intents(previous, record) == [Collect(1)]
        record = done(record, "each", items=3)
        assert states(record)["sum"] == "released"

    def test_empty_list_collects_at_once(self) -> None:
        """A map over an empty list is released complete: collected with no instances."""
        before = started(self.STEPS)
        after = done(before, "list", items=0)
        assert wf.intents(before, after) == [Release(1), Collect(1)]

    @pytest.mark.parametrize(
        ("items", "words"), [(None, "not a list"), (wf.MAX_MAP_ITEMS + 1, "a map takes")]
    )
    def test_unusable_list(self, items: int | None, words: str) -> None:
        """A result that is no list, or too long, fails the map step."""
        before = started(self.STEPS)
        after = done(before, "list", items=items)
        [intent] = wf.intents(before, after)
        assert isinstance(intent, Fail)
        assert words in intent.reason

    def test_instance_failure_fails_the_map(self) -> None:
        """An instance that ends dead fails its map step (once)."""
        record = done(started(self.STEPS), "list", items=2)
        failed = wf.apply(record, [StepEvent(1, 0, F, instance=1)], NOW + 2)
        assert wf.intents(record, failed) == [Fail(1, "instance 1 ended failed")]
        again = wf.apply(failed, [StepEvent(1, 0, F, instance=0)], NOW + 3)
        assert wf.intents(failed, again) == []

    def test_map_job_dead_fails_the_workflow(self) -> None:
        """A released map step whose own job ends dead without instances having run (its parents were
        too large to hand over) fails the step, and the workflow settles: failed, the rest cancelled."""
        record = done(started(self.STEPS), "list", items=3)
        failed = wf.apply(record, [StepEvent(1, 0, F)], NOW + 2)
        assert failed.state is WorkflowState.FAILED
        assert states(failed) == {"list": "succeeded", "each": "failed", "sum": "cancelled"}


class TestRepair:
    def test_blank_baseline_rederives_every_intent(self) -> None:
        """From a blank baseline, a record's intents include every release it decided."""
        record = done(started([{"name": "a"}, {"name": "b", "depends_on": ["a"]}, {"name": "c"}]), "a")
        assert set(wf.intents(wf.blank(record), record)) == {Release(1), Release(2)}


# --- property: random DAGs run to the end, each step released once, never before its parents -----------


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str]:
    size = draw(st.integers(1, 12))
    steps = []
    for n in range(size):
        parents = draw(st.sets(st.integers(0, n - 1), max_size=3)) if n else set()
        steps.append({"name": f"s{n}", "depends_on": [f"s{p}" for p in sorted(parents)]})
    return steps, draw(st.sampled_from(["fail_fast", "continue"]))


@settings(max_examples=400, deadline=None)
@given(dags(), st.integers(0, 2**32), st.floats(0.0, 0.4), st.booleans())
def test_random_dags(
    graph: tuple[list[dict[str, Any]], str], seed: int, failure_rate: float, shortcut: bool
) -> None:
    """Whatever order steps finish in (outcomes replayed at random), each step is released at most once,
    only after all its parents' jobs succeeded, and the workflow ends final with every step final,
    agreeing with its jobs. With `shortcut`, as the reaper does: a success whose children
    `direct_children` allows releases them at once (each job's CAS `waiting → ready` guarding it) and is
    taken in by the record only later, with some outcome that needs it."""
    steps, policy = graph
    rng = random.Random(seed)
    record = started(steps, on_failure=policy)
    jobs = {n: "ready" if s.state is StepState.RELEASED else "waiting" for n, s in enumerate(record.steps)}
    released = [n for n, s in enumerate(record.steps) if s.state is StepState.RELEASED]
    applied: list[StepEvent] = []
    deferred: list[StepEvent] = []

    def release(target: int) -> None:
        if jobs[target] != "waiting":
            assert shortcut, "the record released a step twice"
            return  # released directly before: its CAS fails, nothing happens
        assert all(jobs[p] == "succeeded" for p in record.steps[target].parents)
        released.append(target)
        jobs[target] = "ready"

    def take_in(events: list[StepEvent]) -> None:
        nonlocal record
        before, record = record, wf.apply(record, events, NOW)
        for intent in wf.intents(before, record):
            if isinstance(intent, Release):
                release(intent.index)
            elif isinstance(intent, Cancel) and jobs[intent.index] in ("waiting", "ready"):
                jobs[intent.index] = "cancelled"
                take_in([StepEvent(intent.index, 0, C)])
        if record.state in wf.WORKFLOW_TERMINAL:
            # Final only once every step's job is: none left to run (or running) behind a final record.
            assert not [n for n, job in jobs.items() if job in ("ready", "running")], (states(record), jobs)

    for _ in range(10 * len(steps) + 10):
        runnable = [n for n, state in jobs.items() if state in ("ready", "running")]
        if not runnable:
            break
        n = rng.choice(runnable)
        if jobs[n] == "ready" and rng.random() < 0.5:
            jobs[n] = "running"
            continue
        outcome = F if rng.random() < failure_rate else S
        jobs[n] = outcome.value
        event = StepEvent(n, 0, outcome)
        children = wf.direct_children(record, event) if shortcut else None
        if children is not None and rng.random() < 0.8:
            for child in children:
                release(child)
            deferred.append(event)
            continue
        applied.append(event)
        replay = rng.sample(applied, min(len(applied), 2))
        events, deferred = [*deferred, event, *replay], []
        take_in(events)
    take_in(deferred)  # the catch-up after CATCH_UP_MS
    assert len(released) == len(set(released))
    assert record.state in wf.WORKFLOW_TERMINAL, (states(record), jobs)
    for n, s in enumerate(record.steps):
        assert s.state in wf.STEP_TERMINAL
        if s.state is S:
            assert jobs[n] == "succeeded"
        if s.state is C:  # a step recorded cancelled never ran: a retry of the workflow runs it again
            assert jobs[n] in ("cancelled", "waiting"), (n, states(record), jobs)
    if record.state is WorkflowState.SUCCEEDED:
        assert all(state == "succeeded" for state in jobs.values())
    if policy == "continue":
        failed = {n for n, s in enumerate(record.steps) if s.state is F}
        for n, s in enumerate(record.steps):
            if s.state is C:
                assert _has_ancestor_in(record, n, failed)


def _has_ancestor_in(record: WorkflowRecord, n: int, ancestors: set[int]) -> bool:
    stack = list(record.steps[n].parents)
    while stack:
        p = stack.pop()
        if p in ancestors:
            return True
        stack.extend(record.steps[p].parents)
    return False


def test_on_failure_default() -> None:
    """fail_fast is the default policy."""
    assert request([{"name": "a"}]).on_failure is OnFailure.FAIL_FAST


# --- releasing a step's only-children directly, the record catching up later ---------------------------


def test_a_chain_link_releases_its_child_directly() -> None:
    """In a → b → c, a's success releases b without the record; so does b's, for c, while the record still
    has not taken a in. c's success has no children: the record must take it in."""
    record = started([{"name": "a"}, {"name": "b", "depends_on": ["a"]}, {"name": "c", "depends_on": ["b"]}])
    a, b, c = (index(record, n) for n in "abc")
    assert wf.direct_children(record, StepEvent(a, 0, S)) == (b,)
    assert wf.direct_children(record, StepEvent(b, 0, S)) == (c,)
    assert wf.direct_children(record, StepEvent(c, 0, S)) is None


def test_what_the_record_must_decide_is_not_released_directly() -> None:
    """A fan-in child, a map, a failure, an older run, a map instance, a stopping workflow: the record
    decides."""
    record = started(
        [
            {"name": "a"},
            {"name": "b", "depends_on": ["a"]},
            {"name": "c", "depends_on": ["a"]},
            {"name": "d", "depends_on": ["b", "c"]},
            {"name": "m", "depends_on": ["d"], "map_over": "d"},
        ]
    )
    a, b, d = index(record, "a"), index(record, "b"), index(record, "d")
    assert wf.direct_children(record, StepEvent(a, 0, S)) == (b, index(record, "c"))
    assert wf.direct_children(record, StepEvent(b, 0, S)) is None  # d waits for c too
    assert wf.direct_children(record, StepEvent(d, 0, S)) is None  # m maps over d's list
    assert wf.direct_children(record, StepEvent(a, 0, F)) is None
    assert wf.direct_children(record, StepEvent(a, 1, S)) is None
    assert wf.direct_children(record, StepEvent(a, 0, S, instance=0)) is None
    assert wf.direct_children(wf.cancel(record, NOW), StepEvent(a, 0, S)) is None
    failing = done(done(record, "a"), "c", F)
    assert wf.direct_children(failing, StepEvent(b, 0, S)) is None


def test_a_failure_taken_in_with_a_success_it_follows_leaves_running_siblings_alone() -> None:
    """r → {x, y}, failing fast: r's success released x and y directly; y runs; x fails before the record
    took r in, so r's success and x's failure are taken in together. The record must learn that y was
    released (successes first) — not cancel y as still waiting, which would end the workflow while y
    runs and make a retry run y again."""
    record = started(
        [{"name": "r"}, {"name": "x", "depends_on": ["r"]}, {"name": "y", "depends_on": ["r"]}],
        on_failure="fail_fast",
    )
    r, x, y = (index(record, n) for n in "rxy")
    assert wf.direct_children(record, StepEvent(r, 0, S)) == (x, y)
    for events in ([StepEvent(r, 0, S), StepEvent(x, 0, F)], [StepEvent(x, 0, F), StepEvent(r, 0, S)]):
        after = wf.apply(record, events, NOW)
        assert after.state is WorkflowState.RUNNING, states(after)
        assert states(after) == {"r": "succeeded", "x": "failed", "y": "released"}
        # y's job is asked to cancel only if it has not started (fail fast lets running steps finish).
        assert [(type(i), i.index) for i in wf.intents(record, after)] == [(Cancel, y)]
        assert not next(i for i in wf.intents(record, after) if isinstance(i, Cancel)).running
        assert wf.apply(after, [StepEvent(y, 0, S)], NOW).state is WorkflowState.FAILED


class TestStepPlacement:
    """Step jobs live in their workflow's record partition (so the reaper replica owning it sees them)."""

    @given(
        st.integers(min_value=NOW - 10**9, max_value=NOW + 10**9),
        st.integers(min_value=1, max_value=32),
        st.integers(min_value=0, max_value=1999),
        st.integers(min_value=0, max_value=5),
        st.none() | st.integers(min_value=0, max_value=9999),
    )
    def test_a_step_job_shares_its_workflows_partition(
        self, at: int, partitions: int, index: int, run: int, instance: int | None
    ) -> None:
        workflow_id = new_ulid(at)
        job_id = wf.step_job_id(workflow_id, index, run, instance, partitions=partitions)
        assert shard_of(job_id, partitions) == shard_of(workflow_id, partitions)
        assert ULID_RE.match(job_id)
        assert timestamp_ms(job_id) == timestamp_ms(workflow_id)  # a ULID of the workflow's time
        assert wf.step_job_id(workflow_id, index, run, instance, partitions=partitions) == job_id

    def test_one_partition_keeps_the_ids_steps_always_had(self) -> None:
        workflow_id = "01KB0000000000000000000000"
        assert wf.step_job_id(workflow_id, 3, 1, 7) == wf.step_job_id(workflow_id, 3, 1, 7, partitions=1)
        assert wf.step_job_id(workflow_id, 3, 1, 7) == "01KB000000VJ7W7NBR5RP3NSZ0"  # as before partitions

    def test_reruns_and_new_records_place_their_steps_too(self) -> None:
        record, _ = wf.new_record(
            request([{"name": "a"}, {"name": "b"}]), new_ulid(NOW), NOW, None, partitions=7
        )
        failed = record.model_copy(update={"state": WorkflowState.FAILED})
        for rec in (record, wf.retry(failed, NOW + 1)):
            assert rec.partitions == 7
            assert {shard_of(s.job_id, 7) for s in rec.steps} == {shard_of(rec.id, 7)}
