"""Schedule planning: misfire and overlap policies, deterministic ids, the ledger."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from jetsched.core import cron, steps
from jetsched.core.ids import timestamp_ms
from jetsched.core.models import JobState
from jetsched.core.schedules import (
    MISFIRE_GRACE_MS,
    ScheduleRecord,
    ScheduleSpec,
    fire_job_id,
    fire_workflow,
    jitter_ms,
    may_still_fire,
    new_record,
    next_fire,
    plan,
    record_fires,
    revise,
)

T0 = 1_800_000_000_000  # a whole second


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def spec(**fields: Any) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"id": "s1", "every_ms": 60_000, "job": {"capability": "a"}, **fields})


def record(**fields: Any) -> ScheduleRecord:
    return new_record(spec(**fields), T0)


class TestOnTime:
    def test_fires_after_creation_only(self) -> None:
        """A new schedule owes nothing for the past; its first fire is one interval later."""
        rec = record()
        assert rec.next_fire_ms == T0 + 60_000
        assert plan(rec, T0 + 59_999, False).empty

    def test_due_fire_created_then_recorded(self) -> None:
        """A fire at its time creates its job; the ledger moves on and names the job."""
        rec = record()
        decided = plan(rec, T0 + 60_010, False)
        assert decided.create == [T0 + 60_000]
        after = record_fires(rec, decided, T0 + 60_010)
        assert (after.last_fire_ms, after.next_fire_ms, after.fired) == (T0 + 60_000, T0 + 120_000, 1)
        assert after.last_job_id == fire_job_id("s1", T0 + 60_000)
        assert plan(after, T0 + 60_020, False).empty

    def test_paused_fires_nothing(self) -> None:
        """A paused schedule plans nothing."""
        assert plan(record(paused=True), T0 + 10 * 60_000, False).empty


class TestMisfire:
    """The timer was down from T0 to T0 + 6.5 min: fires at 1..6 min are past, the last one by 30 s."""

    NOW = T0 + 390_000
    MISSED: ClassVar[list[int]] = [T0 + k * 60_000 for k in range(1, 6)]

    def test_skip(self) -> None:
        """skip: every fire missed beyond the grace is recorded and none runs; the on-time one runs."""
        decided = plan(record(misfire="skip"), self.NOW, False)
        assert [t for t, _ in decided.missed] == self.MISSED
        assert decided.create == [T0 + 360_000]
        assert decided.last_fire_ms == T0 + 360_000

    def test_skip_resumes_from_now(self) -> None:
        """skip with every fire missed (a 5-minute schedule, down 16.5 minutes): nothing runs at all."""
        decided = plan(record(misfire="skip", every_ms=300_000), T0 + 990_000, False)
        assert (decided.create, len(decided.missed)) == ([], 3)

    def test_once(self) -> None:
        """once: all missed fires become one job (the latest), the others recorded as coalesced."""
        decided = plan(record(misfire="once", every_ms=300_000), T0 + 990_000, False)
        assert decided.create == [T0 + 900_000]
        assert [t for t, _ in decided.missed] == [T0 + 300_000, T0 + 600_000]
        assert all("coalesced" in why for _, why in decided.missed)

    def test_all_within_window(self) -> None:
        """all: each missed fire inside the catch-up window runs; older ones are recorded as missed."""
        decided = plan(record(misfire="all", catchup_window_ms=150_000), self.NOW, False)
        assert decided.create == [T0 + 240_000, T0 + 300_000, T0 + 360_000]
        assert [t for t, _ in decided.missed] == [T0 + 60_000, T0 + 120_000, T0 + 180_000]

    def test_slightly_late_is_on_time(self) -> None:
        """A fire within the grace is simply run, whatever the misfire policy."""
        decided = plan(record(misfire="skip"), T0 + 60_000 + MISFIRE_GRACE_MS - 1_000, False)
        assert (decided.create, decided.missed) == ([T0 + 60_000], [])


class TestOverlap:
    NOW = T0 + 60_001

    def test_allow(self) -> None:
        """allow: runs while the previous job still runs."""
        assert plan(record(overlap="allow"), self.NOW, True).create == [T0 + 60_000]

    def test_skip(self) -> None:
        """skip: the fire is recorded as missed."""
        decided = plan(record(overlap="skip"), self.NOW, True)
        assert (decided.create, decided.missed[0][0]) == ([], T0 + 60_000)
        assert "overlap=skip" in decided.missed[0][1]

    def test_buffer_one_keeps_latest_and_runs_it_later(self) -> None:
        """buffer_one: the fire waits; a later one replaces it; it runs once the previous job is done."""
        rec = record(overlap="buffer_one")
        first = plan(rec, self.NOW, True)
        assert (first.create, first.buffered_ms) == ([], T0 + 60_000)
        rec = record_fires(rec, first, self.NOW)
        second = plan(rec, T0 + 120_001, True)
        assert second.buffered_ms == T0 + 120_000
        assert [t for t, _ in second.missed] == [T0 + 60_000]
        rec = record_fires(rec, second, T0 + 120_001)
        third = plan(rec, T0 + 130_000, False)
        assert (third.create, third.buffered_ms) == ([T0 + 120_000], None)

    def test_buffered_runs_alone_when_a_new_fire_is_due_too(self) -> None:
        """buffer_one: when the previous job ends as another fire comes, the buffered one runs, the new waits."""
        rec = record_fires(
            record(overlap="buffer_one"), plan(record(overlap="buffer_one"), self.NOW, True), self.NOW
        )
        decided = plan(rec, T0 + 120_001, False)
        assert (decided.create, decided.buffered_ms) == ([T0 + 60_000], T0 + 120_000)

    def test_one_run_at_a_time_even_when_catching_up(self) -> None:
        """With an overlap policy other than allow, a catch-up of several fires still starts one job."""
        decided = plan(record(overlap="skip", misfire="all"), T0 + 390_000, False)
        assert decided.create == [T0 + 360_000]
        assert len(decided.missed) == 5

    def test_cancel_previous(self) -> None:
        """cancel_previous: the previous job is cancelled and the new fire runs."""
        decided = plan(record(overlap="cancel_previous"), self.NOW, True)
        assert decided.cancel_previous
        assert decided.create == [T0 + 60_000]


class TestMayStillFire:
    def test_a_fire_the_ledger_has_not_passed(self) -> None:
        """A fire after the ledger's last is the timer's to (re)execute; one it recorded is not."""
        rec = record()
        nominal = T0 + 60_000
        assert may_still_fire(rec, nominal)
        decided = plan(rec, nominal + 1, False)
        assert not may_still_fire(record_fires(rec, decided, nominal + 1), nominal)

    def test_a_buffered_fire_still_fires(self) -> None:
        """A fire held in the buffer (overlap=buffer_one) is passed in the ledger, but still to run."""
        rec = record(overlap="buffer_one")
        nominal = T0 + 60_000
        held = record_fires(rec, plan(rec, nominal + 1, True), nominal + 1)
        assert held.buffered_ms == nominal
        assert may_still_fire(held, nominal)

    def test_paused_or_revised_never(self) -> None:
        """Pausing, or changing the schedule (which re-anchors it at the change), ends a pending fire."""
        rec = record()
        nominal = T0 + 60_000
        assert not may_still_fire(revise(rec, spec(paused=True), T0 + 1), nominal)
        assert not may_still_fire(revise(rec, spec(every_ms=30_000), nominal + 5), nominal)


class TestIdentity:
    def test_fire_ids_deterministic_unique_and_sortable(self) -> None:
        """A fire's job id depends only on (schedule, nominal time) and sorts by that time."""
        a = fire_job_id("s1", T0)
        assert a == fire_job_id("s1", T0)
        assert a != fire_job_id("s2", T0)
        assert fire_job_id("s1", T0 + 1) > a
        assert timestamp_ms(a) == T0

    def test_jitter_deterministic_and_bounded(self) -> None:
        """Jitter is the same on every replica and replay, within [0, jitter]."""
        values = {jitter_ms("s1", T0 + k, 500) for k in range(200)}
        assert values <= set(range(501))
        assert len(values) > 50
        assert jitter_ms("s1", T0, 500) == jitter_ms("s1", T0, 500)
        assert jitter_ms("s1", T0, 0) == 0


class TestSpec:
    @pytest.mark.parametrize(
        "fields",
        [
            {"cron": "* * * * *", "every_ms": 1000},
            {"every_ms": None},
            {"every_ms": None, "cron": "99 * * * *"},
            {"timezone": "Mars/Olympus"},
            {"id": "has space"},
            {"id": "a.b"},
            {"every_ms": 10},
            {"start_at": "2030-01-01T00:00:00"},
            {"misfire": "sometimes"},
            {"job": None},
            {"workflow": {"steps": [{"name": "a", "capability": "a"}]}},
        ],
    )
    def test_rejects(self, fields: dict[str, Any]) -> None:
        """Contradictory, malformed or unknown settings are refused."""
        with pytest.raises(ValidationError):
            spec(**fields)

    def test_window_bounds_fires(self) -> None:
        """No fire before start_at or after end_at."""
        start = T0 + 600_000
        rec = new_record(spec(start_at=iso(start), end_at=iso(start + 180_000)), T0)
        assert rec.next_fire_ms == start
        decided = plan(rec, start + 200_000, False)
        assert decided.create == [start + 180_000]
        assert [t for t, _ in decided.missed][:1] == [start]
        assert plan(record_fires(rec, decided, start + 200_000), start + 3_600_000, False).empty

    def test_revise_applies_from_now(self) -> None:
        """After an update or resume nothing from before is owed."""
        rec = revise(record(), spec(every_ms=120_000), T0 + 1_000_000)
        assert rec.next_fire_ms == T0 + 1_000_000 + 120_000
        assert plan(rec, T0 + 1_000_001, False).empty


FLOW = {
    "steps": [
        {"name": "b", "capability": "x", "depends_on": ["a"]},
        {"name": "a", "capability": "x", "payload": 1},
    ]
}


def flow_spec(**fields: Any) -> ScheduleSpec:
    return spec(job=None, workflow=FLOW, **fields)


class TestWorkflowTemplate:
    @pytest.mark.parametrize(
        "workflow",
        [
            {"steps": []},
            {"steps": [{"name": "a", "capability": "x", "depends_on": ["a"]}]},
            {"steps": [{"name": "a", "capability": "x", "depends_on": ["zz"]}]},
            {"steps": [{"name": "a", "capability": "x"}], "key": "k"},
        ],
    )
    def test_rejects_bad_graphs(self, workflow: dict[str, Any]) -> None:
        """A workflow template is checked as a submit is: no empty, cyclic or dangling graphs, no key
        (an unknown field, as intake reads a spec: `extra="forbid"`)."""
        body = {"id": "s1", "every_ms": 60_000, "workflow": workflow}
        with pytest.raises(ValidationError):
            ScheduleSpec.model_validate(body, extra="forbid")

    def test_jitter_delays_the_whole_workflow(self) -> None:
        """With jitter, a fire's first steps are scheduled at its jittered time — the same on every
        replay — and no step job may start before it."""
        rec = new_record(flow_spec(jitter_ms=30_000), T0)
        nominal = T0 + 60_000
        _, _, jobs = fire_workflow(rec, nominal, nominal + 5, 1)
        at = nominal + jitter_ms("s1", nominal, 30_000)
        assert {j.run_at_ms for j in jobs} == {at}
        assert at > nominal + 5  # (this fire's jitter is not 0, so the release below is a delay)
        released = steps.release(jobs[0], {}, nominal + 5)
        assert (released.state, released.run_at_ms) == (JobState.SCHEDULED, at)
        assert [j.run_at_ms for j in fire_workflow(rec, nominal, nominal + 900, 1)[2]] == [at, at]

    def test_fire_starts_one_workflow_under_the_fire_id(self) -> None:
        """A fire's workflow has the fire's deterministic id, starts running with its roots released,
        and its step jobs wait, marked with the schedule and nominal time — the same on every replay."""
        rec = new_record(flow_spec(), T0)
        nominal = T0 + 60_000
        created, running, jobs = fire_workflow(rec, nominal, nominal + 5, 1)
        assert created.id == running.id == fire_job_id("s1", nominal)
        assert created.state == "creating"
        assert running.state == "running"
        assert (running.schedule_id, running.fire_at_ms) == ("s1", nominal)
        assert [(s.name, s.state.value) for s in running.steps] == [("a", "released"), ("b", "waiting")]
        assert [j.state.value for j in jobs] == ["waiting", "waiting"]
        assert {(j.schedule_id, j.fire_at_ms) for j in jobs} == {("s1", nominal)}
        assert [j.id for j in jobs] == [s.job_id for s in running.steps]
        again = fire_workflow(rec, nominal, nominal + 900, 1)
        assert [j.id for j in again[2]] == [j.id for j in jobs]

    def test_fire_is_one_trace(self) -> None:
        """A fire's workflow and every step job carry one trace context, the same on every replay and
        different for every fire."""
        rec = new_record(flow_spec(), T0)
        _, running, jobs = fire_workflow(rec, T0 + 60_000, T0 + 60_001, 1)
        assert running.trace is not None
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", running.trace["traceparent"])
        assert {j.trace["traceparent"] for j in jobs if j.trace} == {running.trace["traceparent"]}
        assert fire_workflow(rec, T0 + 60_000, T0 + 70_000, 1)[1].trace == running.trace
        assert fire_workflow(rec, T0 + 120_000, T0 + 120_001, 1)[1].trace != running.trace

    def test_job_schedule_serialises_as_before(self) -> None:
        """A job schedule's record carries no `workflow` key, so replicas of the previous version read it."""
        assert "workflow" not in record().model_dump(mode="json")["spec"]
        assert "workflow" not in record().model_dump_json()
        assert "workflow" in new_record(flow_spec(), T0).model_dump(mode="json")["spec"]


def test_next_fire_past_the_step_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A next fire that cannot be found within the cron step cap is none, or, asked strictly (the timer
    asks so, to set the schedule aside), `TooManySteps`."""
    rec = record(every_ms=None, cron="0 0 1 1 *")
    assert next_fire(rec) is not None
    monkeypatch.setattr(cron, "MAX_STEPS", 0)
    assert next_fire(rec) is None
    with pytest.raises(cron.TooManySteps):
        next_fire(rec, strict=True)
