"""The SDK's typed views of wire records: instants become datetimes, unknown fields are tolerated."""

from __future__ import annotations

from datetime import UTC, datetime

from jetsched.core.models import JobState
from jetsched.sdk import JobInfo, JobPage

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
