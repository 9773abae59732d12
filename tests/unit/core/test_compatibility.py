"""Rolling deploys: what a newer version stored is read, kept and written back by this one; requests stay
strict; messages between peers ignore what they do not know (docs/protocol.md, "Compatibility").

A "newer" value here is one this version wrote, with fields it does not know added at every level — as a
later version that added fields would store it. Each verb of the state machines then runs on it as the
services run it (decoded from the stored bytes, encoded back), and the unknown fields must still be
there, with their values.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from jetsched.bus.records import decode, decoded, encode
from jetsched.core import bounds, schedules, states, steps
from jetsched.core import models as core_models
from jetsched.core import workflows as wf
from jetsched.core.changes import Change, headers_of
from jetsched.core.errors import Fenced, Poisoned
from jetsched.core.ids import new_ulid
from jetsched.core.models import (
    MAX_ATTEMPT,
    Control,
    Heartbeat,
    JobRecord,
    JobRequest,
    JobState,
    Message,
    Model,
    Outcome,
    OutcomeStatus,
    Progress,
    ProgressReport,
    QueueSettings,
    Stored,
    SubmitReply,
    WorkMessage,
    token_hash,
)
from jetsched.core.schedules import ScheduleRecord, ScheduleSpec
from jetsched.core.workflows import StepEvent, StepState, WorkflowRecord, WorkflowState

NOW = 1_800_000_000_000
JOB_ID = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"
#: What the newer version added: a value of some size and shape, and a null (kept as a null).
FUTURE = {"tier": "gold", "weights": [1, 2.5, {"deep": None}]}


def newer(data: dict[str, Any], *paths: str) -> dict[str, Any]:
    """`data` with unknown fields added at its top and at each dotted path (`backoff`, `errors.0`)."""
    data = orjson.loads(orjson.dumps(data))
    data["future"] = FUTURE
    data["future_null"] = None
    for path in paths:
        node: Any = data
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[f"future_{path.replace('.', '_')}"] = path
    return data


def stored(record: JobRecord, *paths: str) -> JobRecord:
    """`record` as a newer version would have stored it, read back the way every service reads it."""
    return decode(orjson.dumps(newer(orjson.loads(encode(record)), *paths)))


def assert_kept(record: JobRecord, *paths: str) -> None:
    """The record, written and read back, still has every unknown field added at these paths."""
    again = orjson.loads(encode(record))
    assert (again["future"], again["future_null"]) == (FUTURE, None)
    for path in paths:
        node: Any = again
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node[f"future_{path.replace('.', '_')}"] == path, path
    assert decode(encode(record)) == record


def accepted(**request: Any) -> JobRecord:
    return states.accept(JobRequest.model_validate(request), JOB_ID, "email", NOW, None)


def outcome(record: JobRecord, status: OutcomeStatus, **fields: Any) -> Outcome:
    assert record.lease is not None
    return Outcome(
        id=record.id,
        attempt=record.lease.attempt,
        token="t1",
        session=record.lease.session,
        status=status,
        finished_at_ms=NOW + 20,
        **fields,
    )


def claimed(record: JobRecord) -> JobRecord:
    return states.claim(record, "host-1", "s1", "t1", NOW + 10)


def failed_once() -> JobRecord:
    """A job ready for its second attempt, with one error entry and the last run of its first."""
    first = claimed(accepted(max_attempts=3))
    retried = states.apply_outcome(first, outcome(first, OutcomeStatus.FAILED), NOW + 20, 0.5)
    return states.due(retried, NOW + 60_000)


def running_again() -> JobRecord:
    """A job running its second attempt, with one error entry from its first."""
    return claimed(failed_once())


#: Every verb of the job state machine, from a stored record with unknown fields to the record written.
RUNNING = ("backoff", "lease", "errors.0", "last_run")
JOB_VERBS: dict[str, tuple[Any, Any, tuple[str, ...]]] = {
    # name: (the record the verb starts from, the verb, the paths whose unknown fields must survive it)
    "due": (lambda: accepted(delay_ms=1000), lambda r: states.due(r, NOW + 1000), ("backoff",)),
    "claim": (failed_once, claimed, ("backoff", "errors.0", "last_run")),
    "succeeded": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.SUCCEEDED, result=7), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "failed": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.FAILED), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "fatal": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.FATAL), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "retry": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.RETRY, retry_delay_ms=5), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "snoozed": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.SNOOZED, retry_delay_ms=5), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "released": (
        running_again,
        lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.RELEASED), NOW + 99, 0.5),
        ("backoff", "errors.0"),
    ),
    "lose": (running_again, lambda r: states.lose(r, NOW + 99, 0.5, "gone"), ("backoff", "errors.0")),
    "time_out": (running_again, lambda r: states.time_out(r, NOW + 99, 0.5), ("backoff", "errors.0")),
    "orphan": (running_again, lambda r: states.orphan(r, NOW + 99), ("backoff", "errors.0")),
    "expire": (
        lambda: accepted(expires_in_ms=10),
        lambda r: states.expire(r, NOW + 11),
        ("backoff",),
    ),
    "cancel running": (running_again, lambda r: states.cancel(r, NOW + 99), ("backoff", "errors.0")),
    "revive": (
        lambda: states.apply_outcome(
            running_again(), outcome(running_again(), OutcomeStatus.FATAL), NOW + 99, 0.5
        ),
        lambda r: states.revive(r, NOW + 200),
        ("backoff", "errors.0", "last_run"),
    ),
}


class TestJobRecord:
    @pytest.mark.parametrize("verb", JOB_VERBS, ids=str)
    def test_every_verb_keeps_unknown_fields(self, verb: str) -> None:
        """Read as stored by a newer version, moved on by this one, written back: nothing it added is lost."""
        start, act, kept = JOB_VERBS[verb]
        before: JobRecord = start()
        paths = [p for p in (*RUNNING, "workflow") if _has(before, p)]
        record = stored(before, *paths)
        after = act(record)
        assert after.state is not record.state or after.updated_at_ms != record.updated_at_ms
        assert_kept(after, *kept)

    def test_a_job_through_its_whole_life_keeps_them(self) -> None:
        """scheduled → ready → running → failed → ready → running → succeeded, each step decoded from and
        encoded to the bytes a CAS writes, as the timer, dispatcher and reaper do."""

        def cas(record: JobRecord, verb: Any) -> JobRecord:
            return decode(encode(verb(decode(encode(record)))))

        record = stored(accepted(delay_ms=1000, max_attempts=3), "backoff")
        record = cas(record, lambda r: states.due(r, NOW + 1000))
        record = cas(record, claimed)
        record = cas(
            record, lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.FAILED), NOW + 20, 0.5)
        )
        record = cas(record, lambda r: states.due(r, NOW + 60_000))
        record = cas(record, claimed)
        record = cas(
            record,
            lambda r: states.apply_outcome(r, outcome(r, OutcomeStatus.SUCCEEDED, result=1), NOW + 1, 0.5),
        )
        assert (record.state, record.result, record.attempt) == (JobState.SUCCEEDED, 1, 2)
        assert_kept(record, "backoff")

    def test_the_feed_and_the_stores_read_them(self) -> None:
        """The record feed's `Change` and `decoded` (every bucket and history read) take such a record:
        it is not poison."""
        record = stored(accepted(), "backoff")
        data = encode(record)
        assert decoded(JobRecord, data, "jobs", JOB_ID, 3) == record
        assert Change.from_message(JOB_ID, 3, data, headers_of(record)).record() == record
        assert Change.from_message(JOB_ID, 3, data, None).state is JobState.READY

    @pytest.mark.parametrize(
        "value",
        [
            b"NaN",
            b"Infinity",
            b"18446744073709551616",
            b"[" * (bounds.MAX_JSON_DEPTH + 1) + b"]" * (bounds.MAX_JSON_DEPTH + 1),
        ],
        ids=["nan", "infinity", "past 64 bits", "too deep"],
    )
    @pytest.mark.parametrize("where", ["top", "backoff"])
    def test_unknown_fields_are_bounded_like_payloads(self, value: bytes, where: str) -> None:
        """An unknown field holding what no component can encode is refused like such a payload: the
        record is poison (quarantined), not carried on to crash a later write."""
        data = encode(accepted())
        if where == "top":
            data = data[:-1] + b',"future":' + value + b"}"
        else:
            data = data.replace(b'"backoff":{', b'"backoff":{"future":' + value + b",")
        with pytest.raises(Poisoned):
            decoded(JobRecord, data, "jobs", JOB_ID, 3)

    def test_unknown_fields_count_in_the_stored_size(self) -> None:
        """Being part of the stored bytes, unknown fields count wherever a record's size is checked."""
        plain = accepted()
        big = decode(orjson.dumps({**orjson.loads(encode(plain)), "future": "x" * 10_000}))
        assert len(encode(big)) >= len(encode(plain)) + 10_000
        assert bounds.json_bytes(big.model_dump(mode="json")) >= len(encode(plain)) + 10_000


def _has(record: JobRecord, path: str) -> bool:
    node: Any = orjson.loads(encode(record))
    for part in path.split("."):
        if isinstance(node, list):
            if int(part) >= len(node):
                return False
            node = node[int(part)]
        elif not isinstance(node, dict) or part not in node or node[part] is None:
            return False
        else:
            node = node[part]
    return True


# --- workflow steps' jobs and workflow records ----------------------------------------------------------


def step_jobs(*specs: dict[str, Any]) -> tuple[WorkflowRecord, list[JobRecord]]:
    request = wf.WorkflowRequest.model_validate({"steps": [{"capability": "cap", **s} for s in specs]})
    record, ordered = wf.new_record(request, new_ulid(NOW), NOW, None)
    return record, [steps.waiting_job(r, record, n, NOW, None) for n, r in enumerate(ordered)]


class TestStepJobs:
    def test_release(self) -> None:
        """A waiting step's job released by this version keeps what a newer one added, in its link too."""
        _, [job] = step_jobs({"name": "a"})
        released = steps.release(stored(job, "backoff", "workflow"), {"p": 1}, NOW + 10)
        assert released.state is JobState.READY
        assert_kept(released, "backoff", "workflow")

    def test_map_expand_instance_collect(self) -> None:
        """A map step's job: expanded, its instances made from it, collected — each keeps them."""
        _, [_, job] = step_jobs({"name": "l"}, {"name": "m", "depends_on": ["l"], "map_over": "l"})
        job = stored(job, "backoff", "workflow")
        expanded = steps.expand(job, {"l": [4, 5]}, NOW)
        assert_kept(expanded, "backoff", "workflow")
        assert_kept(steps.instance(expanded, 1, 5, {"l": [4, 5]}, NOW, 1), "backoff", "workflow")
        collected = steps.collect(expanded, [1, 2], NOW + 5)
        assert collected.state is JobState.SUCCEEDED
        assert_kept(collected, "backoff", "workflow")

    def test_fail_and_rerun(self) -> None:
        """A step failed before it ran, and its job's next run after a workflow retry, keep them."""
        flow, [job] = step_jobs({"name": "a"})
        dead = steps.fail(stored(job, "backoff", "workflow"), "MapFailed", "no", NOW + 1)
        assert_kept(dead, "backoff", "workflow")
        started = wf.start(flow, NOW)
        ended = wf.apply(started, [StepEvent(0, 0, StepState.FAILED)], NOW + 2)
        again = wf.retry(ended, NOW + 3)
        rerun = steps.rerun(dead, again, 0, NOW + 3)
        assert (rerun.state, rerun.workflow and rerun.workflow.run) == (JobState.WAITING, 1)
        assert_kept(rerun, "backoff", "workflow")


def stored_workflow(record: WorkflowRecord) -> WorkflowRecord:
    """A workflow record as a newer version would store it: unknown fields at its top and in each step."""
    data = orjson.loads(record.model_dump_json(exclude_defaults=True))
    data = newer(data, *(f"steps.{n}" for n in range(len(data["steps"]))))
    return WorkflowRecord.model_validate_json(orjson.dumps(data))


def assert_workflow_kept(record: WorkflowRecord) -> None:
    again = orjson.loads(record.model_dump_json(exclude_defaults=True))
    assert again["future"] == FUTURE
    for n, step in enumerate(again["steps"]):
        assert step[f"future_steps_{n}"] == f"steps.{n}"
    assert WorkflowRecord.model_validate_json(record.model_dump_json(exclude_defaults=True)) == record


class TestWorkflowRecord:
    def flow(self) -> WorkflowRecord:
        request = wf.WorkflowRequest.model_validate(
            {
                "steps": [
                    {"name": "a", "capability": "x"},
                    {"name": "b", "capability": "x", "depends_on": ["a"]},
                    {"name": "m", "capability": "x", "depends_on": ["a"], "map_over": "a"},
                ]
            }
        )
        record, _ = wf.new_record(request, new_ulid(NOW), NOW, None)
        return record

    def test_start_apply_finish(self) -> None:
        """creating → running → steps released, map instances counted → succeeded: each record written
        keeps what a newer version added to the workflow and to each step."""
        record = wf.start(stored_workflow(self.flow()), NOW)
        assert_workflow_kept(record)
        record = wf.apply(record, [StepEvent(0, 0, StepState.SUCCEEDED, items=2)], NOW + 1)
        assert record.steps[2].instances == 2
        assert_workflow_kept(record)
        record = wf.apply(
            record,
            [
                StepEvent(2, 0, StepState.SUCCEEDED, instance=0),
                StepEvent(2, 0, StepState.SUCCEEDED, instance=1),
            ],
            NOW + 2,
        )
        record = wf.apply(
            record, [StepEvent(1, 0, StepState.SUCCEEDED), StepEvent(2, 0, StepState.SUCCEEDED)], NOW + 3
        )
        assert record.state is WorkflowState.SUCCEEDED
        assert_workflow_kept(record)

    def test_cancel_and_retry(self) -> None:
        """A cancel, and a retry that starts the unfinished steps anew (new job ids, next run), keep them
        — on the retried steps too."""
        record = wf.start(stored_workflow(self.flow()), NOW)
        record = wf.apply(record, [StepEvent(0, 0, StepState.SUCCEEDED, items=1)], NOW + 1)
        cancelled = wf.apply(
            wf.cancel(record, NOW + 2),
            [StepEvent(1, 0, StepState.CANCELLED), StepEvent(2, 0, StepState.CANCELLED)],
            NOW + 3,
        )
        assert cancelled.state is WorkflowState.CANCELLED
        assert_workflow_kept(cancelled)
        again = wf.retry(cancelled, NOW + 4)
        assert [s.run for s in again.steps] == [0, 1, 1]
        assert_workflow_kept(again)

    def test_a_retry_resets_every_field_of_a_step_s_last_run(self) -> None:
        """A retry copies a step (keeping its unknown fields) with every field of its last run reset: each
        field of a step is its identity, its place in the graph, or its run's (a field added to `Step`
        must be one or the other)."""
        assert set(wf.Step.model_fields) == {"name", "parents", "map_over", "job_id", "run", *wf._NEW_RUN}
        record = wf.start(self.flow(), NOW)
        record = wf.apply(record, [StepEvent(0, 0, StepState.SUCCEEDED, items=300)], NOW + 1)
        record = wf.apply(record, [StepEvent(2, 0, StepState.SUCCEEDED, instance=7)], NOW + 2)
        record = wf.apply(record, [StepEvent(2, 0, StepState.FAILED, instance=8)], NOW + 3)
        failed = wf.apply(
            record, [StepEvent(2, 0, StepState.FAILED), StepEvent(1, 0, StepState.FAILED)], NOW + 4
        )
        assert failed.state is WorkflowState.FAILED
        assert (failed.steps[2].done, failed.steps[2].error) != ("", None)
        again = wf.retry(failed, NOW + 5)
        b, m = again.steps[1], again.steps[2]
        assert (b.state, b.run, b.items, b.job_id) == (
            StepState.RELEASED,
            1,
            None,
            wf.step_job_id(again.id, 1, 1),
        )
        assert (m.state, m.run, m.instances, m.done, m.error) == (StepState.RELEASED, 1, 300, "", None)


# --- schedules, queue settings, progress ----------------------------------------------------------------


class TestScheduleRecord:
    def stored(self, spec: dict[str, Any], *paths: str) -> ScheduleRecord:
        record = schedules.new_record(ScheduleSpec.model_validate(spec), NOW)
        data = newer(orjson.loads(record.model_dump_json()), *paths)
        return decoded(ScheduleRecord, orjson.dumps(data), "schedules", "s1", 1)

    def test_fires_and_updates_keep_them(self) -> None:
        """The timer's ledger writes and intake's pause keep what a newer version added — to the record,
        its spec, its job template and its template's backoff, and to the fire history."""
        spec = {"id": "s1", "every_ms": 60_000, "job": {"capability": "a"}}
        paths = ("spec", "spec.job", "spec.job.backoff")
        record = self.stored(spec, *paths)
        decided = schedules.plan(record, NOW + 60_001, False)
        fired = schedules.record_fires(record, decided, NOW + 60_001)
        assert fired.fired == 1
        data = newer(orjson.loads(fired.model_dump_json()), *paths, "history.0")
        fired = ScheduleRecord.model_validate_json(orjson.dumps(data))
        fired = schedules.record_fires(fired, schedules.plan(fired, NOW + 120_001, False), NOW + 120_001)
        paused = schedules.revise(fired, fired.spec.model_copy(update={"paused": True}), NOW + 130_000)
        written = orjson.loads(paused.model_dump_json())
        assert written["future"] == FUTURE
        assert written["spec"]["paused"] is True
        for path in (*paths, "history.0"):
            node: Any = written
            for part in path.split("."):
                node = node[int(part)] if isinstance(node, list) else node[part]
            assert node[f"future_{path.replace('.', '_')}"] == path
        assert fired.history[0].model_extra == {"future_history_0": "history.0"}
        # What a fire makes is this version's: a job from the template's known fields.
        job = schedules.fire_job(fired, NOW + 180_000, NOW + 180_000)
        assert "future" not in orjson.loads(encode(job))

    def test_a_workflow_template_keeps_them(self) -> None:
        """A workflow template's steps are stored too: they keep unknown fields, and fires still work."""
        spec = {
            "id": "s1",
            "every_ms": 60_000,
            "workflow": {"steps": [{"name": "a", "capability": "x", "backoff": {"base_ms": 5}}]},
        }
        paths = ("spec.workflow", "spec.workflow.steps.0", "spec.workflow.steps.0.backoff")
        record = self.stored(spec, *paths)
        fired = schedules.record_fires(record, schedules.plan(record, NOW + 60_001, False), NOW + 60_001)
        written = orjson.loads(fired.model_dump_json())
        assert written["spec"]["workflow"]["steps"][0]["backoff"]["future_spec_workflow_steps_0_backoff"]
        _, flow, jobs = schedules.fire_workflow(fired, NOW + 60_000, NOW + 60_001, 1)
        assert flow.state is WorkflowState.RUNNING
        assert jobs[0].backoff.base_ms == 5


def test_queue_settings_keep_them_through_a_pause() -> None:
    """`queues.pause` is a read-modify-write of the settings: what a newer version added stays."""
    data = newer({"max_running": 3})
    settings = QueueSettings.model_validate_json(orjson.dumps(data))
    paused = settings.model_copy(update={"paused": True})
    assert orjson.loads(paused.model_dump_json()) == {
        **data,
        **QueueSettings(max_running=3, paused=True).model_dump(),
    }


def test_progress_with_unknown_fields_is_read() -> None:
    """A progress entry a newer intake wrote is read (a newer report replaces it whole)."""
    entry = Progress.model_validate_json(orjson.dumps(newer({"attempt": 1, "seq": 2, "at_ms": NOW})))
    assert (entry.seq, entry.model_extra and entry.model_extra["future"]) == (2, FUTURE)


# --- messages and requests ------------------------------------------------------------------------------


MESSAGES: list[tuple[type[BaseModel], dict[str, Any], dict[str, Any]]] = [
    # (message, a valid body, a known field made invalid)
    (
        Outcome,
        {
            "id": JOB_ID,
            "attempt": 1,
            "token": "t",
            "session": "s",
            "status": "succeeded",
            "finished_at_ms": 0,
        },
        {"attempt": MAX_ATTEMPT + 1},
    ),
    (
        Heartbeat,
        {"worker": "w", "session": "s", "capabilities": ["a"], "concurrency": 1, "interval_ms": 500},
        {"capabilities": ["a.*"]},
    ),
    (
        WorkMessage,
        {
            "id": JOB_ID,
            "capability": "a",
            "attempt": 1,
            "token": "t",
            "priority": 5,
            "timeout_s": 1.0,
            "created_at_ms": 0,
            "run_at_ms": 0,
        },
        {"id": "*"},
    ),
    (ProgressReport, {"id": JOB_ID, "attempt": 1, "token": "t", "seq": 1}, {"seq": 0}),
    (Control, {"op": "cancel", "id": JOB_ID, "attempt": 1}, {"op": "explode"}),
    (SubmitReply, {"id": JOB_ID, "state": "ready"}, {"state": "nope"}),
]


@pytest.mark.parametrize(("model", "body", "bad"), MESSAGES, ids=[m.__name__ for m, _, _ in MESSAGES])
def test_messages_between_peers_ignore_unknown_fields(
    model: type[BaseModel], body: dict[str, Any], bad: dict[str, Any]
) -> None:
    """A report, heartbeat, work message, command or reply from a newer peer is taken; what it added is
    ignored (nothing stores a message back). Known fields are checked as before."""
    message = model.model_validate_json(orjson.dumps(newer(body)))
    assert message.model_extra is None
    assert "future" not in message.model_dump()
    with pytest.raises(ValidationError):
        model.model_validate_json(orjson.dumps({**newer(body), **bad}))


def test_a_forged_report_with_unknown_fields_is_still_fenced() -> None:
    """Ignoring what a report adds lets nothing past the fence: the token still decides."""
    record = claimed(accepted())
    forged = Outcome.model_validate_json(
        orjson.dumps(
            newer(
                {
                    "id": JOB_ID,
                    "attempt": 1,
                    "token": "guess",
                    "session": "s1",
                    "status": "succeeded",
                    "finished_at_ms": 0,
                    "token_hash": token_hash("t1"),
                }
            )
        )
    )
    with pytest.raises(Fenced):
        states.apply_outcome(record, forged, NOW + 1, 0.5)


def _classes(root: type[Model]) -> set[type[Model]]:
    found: set[type[Model]] = set()
    todo = [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _nested_models(annotation: Any) -> set[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type[BaseModel]] = set()
    for arg in typing.get_args(annotation):
        found |= _nested_models(arg)
    if isinstance(annotation, types.UnionType):
        for arg in annotation.__args__:
            found |= _nested_models(arg)
    return found


def test_every_shape_a_stored_one_nests_is_stored_too() -> None:
    """A stored shape whose nested shape refused unknown fields would still quarantine a newer record:
    every model nested in a stored one keeps them too. And each shape is of one kind."""
    import jetsched.intake.doctor_api
    import jetsched.intake.workflows_api  # noqa: F401  (their request models)

    for cls in _classes(Model):
        extra = cls.model_config.get("extra")
        if issubclass(cls, Stored) and extra == "allow":
            for name, info in cls.model_fields.items():
                for nested in _nested_models(info.annotation):
                    assert issubclass(nested, Stored), (
                        f"{cls.__name__}.{name}: {nested.__name__} is not Stored"
                    )
                    assert nested.model_config.get("extra") == "allow", f"{cls.__name__}.{name}"
        else:
            assert extra in ("forbid", "ignore"), cls
            assert (extra == "ignore") == issubclass(cls, Message), cls
    assert {JobRecord, WorkflowRecord, ScheduleRecord, QueueSettings, Progress} <= _classes(Stored)


def test_requests_refuse_unknown_fields_themselves() -> None:
    """A request that is only a request refuses an unknown field however it is read."""
    for cls in _classes(Model):
        if cls.model_config.get("extra") == "forbid":
            with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
                cls.model_validate({"surely_unknown": 1})


def test_kinds_are_what_the_protocol_says() -> None:
    """The shapes services store, the requests clients send, and the peers' messages."""
    assert issubclass(JobRecord, Stored)
    assert issubclass(wf.StepRequest, Stored)
    assert issubclass(wf.StepRequest, JobRequest)
    assert JobRequest.model_config["extra"] == "forbid"
    assert core_models.ConfigureRequest.model_config["extra"] == "forbid"
