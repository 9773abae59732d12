"""The SDK's typed views of wire records: instants become datetimes, unknown fields are tolerated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from jetsched.core.models import ErrorInfo, JobRecord, JobState, Lease, Run
from jetsched.core.workflows import OnFailure, StepState, WorkflowState
from jetsched.sdk import (
    JobError,
    JobInfo,
    JobLease,
    JobPage,
    ScheduleInfo,
    SchedulePreview,
    Stats,
    WorkerInfo,
    WorkflowChange,
    WorkflowInfo,
    WorkflowPage,
    WorkflowReply,
)
from jetsched.sdk._models import View

RECORD = {
    "id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE",
    "capability": "email.send",
    "payload": {"to": "a@example.com"},
    "priority": 7,
    "state": "running",
    "attempt": 2,
    "max_attempts": 5,
    "timeout_s": 300.0,
    "backoff": {"base_ms": 1000, "factor": 2.0, "max_ms": 600000, "jitter": 0.2},
    "run_at_ms": 1795820101000,
    "ready_since_ms": 1795820101000,
    "lease": {
        "worker": "host-a",
        "session": "01kbz",
        "attempt": 2,
        "token_hash": "5e88",
        "claimed_at_ms": 1795820102000,
    },
    "errors": [{"attempt": 1, "at_ms": 1795820101500, "kind": "error", "type": "SMTPError", "message": "no"}],
    "created_at_ms": 1795820100000,
    "updated_at_ms": 1795820102000,
    "started_at_ms": 1795820102000,
    "finished_at_ms": None,
    "a_field_from_a_newer_server": 1,
}


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class TestJobInfo:
    def test_instants_are_aware_datetimes(self) -> None:
        """Every `*_at_ms` (and `ready_since_ms`, `at_ms`) field becomes a UTC datetime without the suffix."""
        job = JobInfo.from_reply({"job": RECORD, "last_error": RECORD["errors"][0], "waiting": None})  # type: ignore[index]
        assert (job.run_at, job.ready_since, job.created_at) == (
            at(1795820101000),
            at(1795820101000),
            at(1795820100000),
        )
        assert job.started_at == at(1795820102000)
        assert job.finished_at is None
        assert job.lease is not None
        assert job.lease.claimed_at == at(1795820102000)
        assert job.errors[0].at == at(1795820101500)
        assert job.last_error == job.errors[0]
        assert job.run_at.tzinfo is UTC

    def test_states_and_unknown_fields(self) -> None:
        """The state is the enum; fields a newer server adds are ignored, not errors."""
        job = JobInfo.model_validate(RECORD)
        assert job.state is JobState.RUNNING
        assert not job.finished
        assert not hasattr(job, "a_field_from_a_newer_server")

    def test_a_page(self) -> None:
        """A list page holds views and the cursor."""
        page = JobPage.model_validate({"jobs": [RECORD], "next": "01KBZ3R6X9T2M0Q7D5W8C4N1HE"})
        assert page.jobs[0].id == RECORD["id"]
        assert page.next == RECORD["id"]


WORKFLOW = {
    "id": "01KBZ3R6X9T2M0Q7D5W8C4N1HF",
    "state": "running",
    "on_failure": "fail_fast",
    "cancel_requested": False,
    "created_at_ms": 1795820100000,
    "updated_at_ms": 1795820102000,
    "finished_at_ms": None,
    "steps": {
        "fetch": {
            "job_id": "01KBZ3R6X9T2M0Q7D5W8C4N1HG",
            "step_state": "succeeded",
            "depends_on": [],
            "state": "succeeded",
            "attempt": 1,
            "started_at_ms": 1795820101000,
            "finished_at_ms": 1795820101500,
            "result": [1, 2],
        },
        "each": {
            "job_id": "01KBZ3R6X9T2M0Q7D5W8C4N1HH",
            "step_state": "released",
            "depends_on": ["fetch"],
            "map_over": "fetch",
            "instances": 2,
            "instances_done": 1,
            "state": "missing",
            "a_field_from_a_newer_server": 1,
        },
    },
    "a_field_from_a_newer_server": 1,
}


class TestWorkflowInfo:
    def test_instants_are_aware_datetimes(self) -> None:
        """The workflow's and each step's `*_at_ms` become UTC datetimes; a missing instant is None."""
        flow = WorkflowInfo.from_reply({"workflow": WORKFLOW})
        assert (flow.created_at, flow.updated_at, flow.finished_at) == (
            at(1795820100000),
            at(1795820102000),
            None,
        )
        fetch = flow.steps["fetch"]
        assert (fetch.started_at, fetch.finished_at) == (at(1795820101000), at(1795820101500))
        assert flow.steps["each"].started_at is None

    def test_states_steps_and_unknown_fields(self) -> None:
        """States are enums (a step whose job expired is `missing`); unknown fields are ignored."""
        flow = WorkflowInfo.from_reply({"workflow": WORKFLOW})
        assert (flow.state, flow.on_failure, flow.finished) == (
            WorkflowState.RUNNING,
            OnFailure.FAIL_FAST,
            False,
        )
        assert list(flow.steps) == ["fetch", "each"]
        each = flow.steps["each"]
        assert (each.state, each.step_state, each.depends_on) == ("missing", StepState.RELEASED, ("fetch",))
        assert (each.map_over, each.instances, each.instances_done) == ("fetch", 2, 1)
        assert flow.steps["fetch"].state is JobState.SUCCEEDED
        assert flow.steps["fetch"].result == [1, 2]
        assert not hasattr(flow, "a_field_from_a_newer_server")
        assert not hasattr(each, "a_field_from_a_newer_server")

    def test_submit_list_and_change_replies(self) -> None:
        """The submit reply maps step names to job ids; a page holds summaries; cancel and retry say what
        they did."""
        reply = WorkflowReply.model_validate(
            {
                "id": WORKFLOW["id"],
                "state": "running",
                "steps": {"fetch": "j1", "each": "j2"},
                "duplicate": True,
            }
        )
        assert (reply.steps, reply.duplicate) == ({"fetch": "j1", "each": "j2"}, True)
        page = WorkflowPage.model_validate({"workflows": [{"id": "w1", "state": "failed"}], "next": None})
        assert (page.workflows[0].id, page.workflows[0].finished, page.next) == ("w1", True, None)
        retried = WorkflowChange.model_validate({"id": "w1", "state": "running", "retried": ["b", "c"]})
        assert (retried.retried, retried.cancel_requested) == (("b", "c"), False)


class TestStatsAndWorkers:
    def test_stats(self) -> None:
        """Counts stay by state; durations become timedeltas; parts an older server omits default."""
        stats = Stats.model_validate(
            {
                "jobs": {"ready": 3, "running": 1},
                "capabilities": {"a": {"ready": 3, "running": 1}},
                "workers": {"sessions": 1, "slots": 4, "busy": 1, "a_field_from_a_newer_server": 1},
                "queues": {"a": {"ready": 3, "running": 1, "oldest_ready_age_ms": 1500, "paused": True}},
                "a_field_from_a_newer_server": 1,
            }
        )
        assert (stats.jobs["ready"], stats.capabilities["a"]["running"], stats.workers.slots) == (3, 1, 4)
        assert stats.queues["a"].oldest_ready_age == timedelta(seconds=1.5)
        assert (stats.queues["a"].paused, stats.queues["a"].free_worker_slots) == (True, 0)
        assert stats.history.jobs is None

    def test_worker(self) -> None:
        """A worker session's heartbeat age is a timedelta; unknown fields are ignored."""
        worker = WorkerInfo.model_validate(
            {
                "worker": "host-a",
                "session": "01kbz",
                "capabilities": ["a", "b"],
                "labels": {"gpu": "yes"},
                "concurrency": 4,
                "running": 2,
                "draining": False,
                "seen_ms_ago": 250,
                "a_field_from_a_newer_server": 1,
            }
        )
        assert (worker.capabilities, worker.labels, worker.running) == (("a", "b"), {"gpu": "yes"}, 2)
        assert worker.seen_ago == timedelta(milliseconds=250)
        assert not hasattr(worker, "a_field_from_a_newer_server")


SCHEDULE = {
    "schedule": {
        "spec": {
            "id": "nightly",
            "cron": "30 2 * * *",
            "every_ms": None,
            "timezone": "Europe/Berlin",
            "job": {"capability": "report.render", "payload": None, "priority": 5},
            "start_at": "2026-01-01T00:00:00Z",
            "end_at": None,
            "jitter_ms": 1500,
            "misfire": "once",
            "misfire_grace_ms": 60000,
            "catchup_window_ms": 86400000,
            "overlap": "skip",
            "dst_gap": "shift",
            "dst_fold": "first",
            "paused": False,
            "a_field_from_a_newer_server": 1,
        },
        "created_at_ms": 1795820100000,
        "updated_at_ms": 1795820100000,
        "anchor_ms": 1795820100000,
        "last_fire_ms": 1795820101000,
        "next_fire_ms": 1795820102000,
        "last_job_id": "sch-nightly-1795820101000",
        "buffered_ms": None,
        "fired": 1,
        "missed": 1,
        "history": [
            {"nominal_ms": 1795820100000, "job_id": None, "at_ms": 1795820100400, "missed": "overlap=skip"},
            {"nominal_ms": 1795820101000, "job_id": "sch-nightly-1795820101000", "at_ms": 1795820101000},
        ],
    },
    "next_fires": [{"utc": "2026-11-30T01:30:00Z", "local": "2026-11-30T02:30:00+01:00"}],
}


class TestSchedules:
    def test_instants_and_durations(self) -> None:
        """The ledger's `*_ms` instants become datetimes and the spec's durations timedeltas."""
        schedule = ScheduleInfo.from_reply(SCHEDULE)
        assert (schedule.anchor, schedule.last_fire, schedule.next_fire, schedule.buffered) == (
            at(1795820100000),
            at(1795820101000),
            at(1795820102000),
            None,
        )
        assert (schedule.history[0].nominal, schedule.history[0].at) == (at(1795820100000), at(1795820100400))
        spec = schedule.spec
        assert (spec.every, spec.jitter, spec.misfire_grace) == (
            None,
            timedelta(seconds=1.5),
            timedelta(minutes=1),
        )
        assert spec.start_at == datetime(2026, 1, 1, tzinfo=UTC)

    def test_ledger_fires_and_unknown_fields(self) -> None:
        """The id, counts and next fires read as given; a newer server's fields are ignored."""
        schedule = ScheduleInfo.from_reply(SCHEDULE)
        assert (schedule.id, schedule.fired, schedule.missed) == ("nightly", 1, 1)
        assert [e.missed for e in schedule.history] == ["overlap=skip", None]
        fire = schedule.next_fires[0]
        assert fire.utc == fire.local == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
        assert fire.local.utcoffset() == timedelta(hours=1)
        assert not hasattr(schedule.spec, "a_field_from_a_newer_server")

    def test_preview(self) -> None:
        """A preview lists fires in UTC and the schedule's zone."""
        preview = SchedulePreview.model_validate(
            {"timezone": "Europe/Berlin", "fires": SCHEDULE["next_fires"]}
        )
        assert preview.fires[0].utc == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)


def test_control_replies() -> None:
    """The control API's remaining replies read as views: a purged job has no state, a queue's aging is a
    duration, unknown fields are ignored."""
    from jetsched.sdk import Draining, JobChange, QueueConfig

    assert JobChange.model_validate({"id": "01J", "purged": True}).state is None
    retried = JobChange.model_validate({"id": "01J", "state": "ready", "max_attempts": 3, "new": 1})
    assert (retried.state, retried.max_attempts) == ("ready", 3)
    config = QueueConfig.model_validate({"paused": True, "aging_ms": 1500, "burst": 2})
    assert (config.paused, config.aging, config.burst) == (True, timedelta(milliseconds=1500), 2)
    assert Draining.model_validate({"session": "s1", "draining": True}).draining


class TestViewsFollowTheRecords:
    """The views are written by hand; these fail when a stored record grows a field its view lacks."""

    #: Fields kept from the views on purpose: the lease's proof of ownership is the services' business.
    HIDDEN = frozenset({"token_hash", "incarnation"})

    @staticmethod
    def view_names(view: type[View], wire: type[BaseModel]) -> set[str]:
        """The names the wire's fields take in the view (`View._converted`'s renaming)."""
        names = set()
        for name in wire.model_fields:
            if name in view._durations:
                names.add(view._durations[name])
            elif name in view._instants or name.endswith("_at_ms"):
                names.add(view._instants.get(name, name.removesuffix("_ms")))
            else:
                names.add(name)
        return names - TestViewsFollowTheRecords.HIDDEN

    def test_every_stored_field_has_a_place_in_its_view(self) -> None:
        for view, wire in ((JobInfo, JobRecord), (JobLease, Lease), (JobLease, Run), (JobError, ErrorInfo)):
            missing = self.view_names(view, wire) - set(view.model_fields)
            assert not missing, f"{view.__name__} lacks {sorted(missing)} of {wire.__name__}"

    def test_who_ran_it(self) -> None:
        run = {"attempt": 2, "worker": "host-b", "session": "01kbx", "claimed_at_ms": 1795820102000}
        failed = {
            "attempt": 1,
            "at_ms": 1795820101500,
            "kind": "error",
            "worker": "host-a",
            "session": "01kbw",
            "claimed_at_ms": 1795820101000,
        }
        job = JobInfo.model_validate(
            RECORD | {"state": "succeeded", "lease": None, "last_run": run, "errors": [failed]}
        )
        assert job.last_run == JobLease(
            worker="host-b", session="01kbx", attempt=2, claimed_at=at(1795820102000)
        )
        assert (job.errors[0].worker, job.errors[0].claimed_at) == ("host-a", at(1795820101000))
