"""Which half-made workflow submits the reaper clears, and when."""

from __future__ import annotations

from jetsched.core.workflows import WorkflowState
from jetsched.reaper.abandoned import RETRY_MS, Kind, Unstarted

GRACE = 10_000
CREATING = WorkflowState.CREATING
RUNNING = WorkflowState.RUNNING


class TestCreating:
    def test_cleared_after_the_grace(self) -> None:
        """A record seen `creating` is due once the grace has passed since it was first seen so."""
        view = Unstarted(GRACE)
        view.observe("w1", CREATING, 0)
        view.observe("w1", CREATING, 5_000)  # a later sighting does not restart the grace
        assert view.due({}, GRACE - 1) == []
        assert view.due({}, GRACE) == [("w1", Kind.CREATING)]
        assert view.due({}, GRACE + 1) == []  # taken out of the view

    def test_started_in_time_is_left_alone(self) -> None:
        """A record that moves on to running within the grace is never due."""
        view = Unstarted(GRACE)
        view.observe("w1", CREATING, 0)
        view.observe("w1", RUNNING, 1_000)
        assert view.due({"w1": {"j"}}, 10 * GRACE) == []

    def test_again_retries_soon(self) -> None:
        """A clearing that could not decide is tried again `RETRY_MS` later, not a whole grace."""
        view = Unstarted(GRACE)
        view.observe("w1", CREATING, 0)
        assert view.due({}, GRACE) == [("w1", Kind.CREATING)]
        view.again("w1", Kind.CREATING, GRACE)
        assert view.due({}, GRACE + RETRY_MS - 1) == []
        assert view.due({}, GRACE + RETRY_MS) == [("w1", Kind.CREATING)]


class TestGone:
    def test_waiting_jobs_of_a_removed_record_are_cleared(self) -> None:
        """Step jobs still waiting for a workflow whose record is gone are cleared shortly after."""
        view = Unstarted(GRACE)
        view.observe("w1", CREATING, 0)
        view.observe("w1", None, 100)
        assert view.due({"w1": {"j"}}, 100 + RETRY_MS - 1) == []
        assert view.due({"w1": {"j"}}, 100 + RETRY_MS) == [("w1", Kind.GONE)]

    def test_gone_without_waiting_jobs_is_forgotten(self) -> None:
        """A removed record with no waiting jobs (an expired workflow) is dropped from the view after the
        grace, so the view stays bounded."""
        view = Unstarted(GRACE)
        view.observe("w1", None, 0)
        assert view.due({}, GRACE) == []
        assert view.gone == {}
        assert view.due({"w1": {"j"}}, 2 * GRACE) == []

    def test_recreated_record_is_not_gone(self) -> None:
        """A record that reappears (a sighting after its removal) is judged by its new state."""
        view = Unstarted(GRACE)
        view.observe("w1", None, 0)
        view.observe("w1", RUNNING, 10)
        assert view.due({"w1": {"j"}}, GRACE) == []
        view.observe("w2", None, 0)
        view.observe("w2", CREATING, 10)
        assert view.due({"w2": {"j"}}, 10 + GRACE) == [("w2", Kind.CREATING)]

    def test_again_when_gone(self) -> None:
        """A failed clearing of a gone workflow's jobs is tried again."""
        view = Unstarted(GRACE)
        view.observe("w1", None, 0)
        assert view.due({"w1": {"j"}}, RETRY_MS) == [("w1", Kind.GONE)]
        view.again("w1", Kind.GONE, RETRY_MS)
        assert view.due({"w1": {"j"}}, 2 * RETRY_MS) == [("w1", Kind.GONE)]

    def test_short_grace_keeps_gone_with_waiting_jobs(self) -> None:
        """A grace shorter than `RETRY_MS` does not forget a gone workflow whose jobs still wait."""
        view = Unstarted(RETRY_MS // 2)
        view.observe("w1", None, 0)
        assert view.due({"w1": {"j"}}, RETRY_MS - 1) == []
        assert view.due({"w1": {"j"}}, RETRY_MS) == [("w1", Kind.GONE)]


class TestUnrecorded:
    def test_waiting_jobs_without_a_record_are_due_after_the_grace(self) -> None:
        """Step jobs waiting for a record never seen (a timer died between a fire's jobs and its record)
        are looked at after the grace, and again soon if that was too early to decide."""
        view = Unstarted(GRACE)
        view.waiting("w1", False, 0)
        view.waiting("w1", False, 5_000)  # another of its jobs does not restart the grace
        assert view.due({"w1": {"j"}}, GRACE - 1) == []
        assert view.due({"w1": {"j"}}, GRACE) == [("w1", Kind.UNRECORDED)]
        view.again("w1", Kind.UNRECORDED, GRACE)
        assert view.due({"w1": {"j"}}, GRACE + RETRY_MS) == [("w1", Kind.UNRECORDED)]

    def test_a_record_seen_later_takes_it_out(self) -> None:
        """The feeds are not ordered with each other: a record that shows up after its jobs is fine."""
        view = Unstarted(GRACE)
        view.waiting("w1", False, 0)
        view.observe("w1", RUNNING, 10)
        assert view.due({"w1": {"j"}}, 10 * GRACE) == []

    def test_known_records_and_moved_on_jobs_are_never_due(self) -> None:
        """A workflow with a live record, or whose jobs stopped waiting, is not judged unrecorded."""
        view = Unstarted(GRACE)
        view.waiting("w1", True, 0)
        view.observe("w2", CREATING, 0)
        view.waiting("w2", False, 0)
        view.waiting("w3", False, 0)
        assert view.due({"w1": {"j"}, "w3": {"j"}}, GRACE - 1) == []
        # w2 is judged as a `creating` submit; w3's jobs moved on: forgotten.
        assert view.due({"w1": {"j"}}, GRACE) == [("w2", Kind.CREATING)]
        assert view.unrecorded == {}
