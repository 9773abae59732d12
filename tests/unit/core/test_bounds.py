"""Bounds: what every input and record must fit, whatever a client or worker sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jetsched.bus.records import encode
from jetsched.core import bounds, states
from jetsched.core.models import (
    ErrorKind,
    Heartbeat,
    JobRecord,
    JobRequest,
    Outcome,
    OutcomeError,
    OutcomeStatus,
    max_listed,
    token_hash,
)
from jetsched.core.schedules import ScheduleSpec

NOW = 1_700_000_000_000
JOB = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"


class TestCheckJson:
    @pytest.mark.parametrize(
        "value",
        [None, 1, -(2**63), 2**63 - 1, 1.5, "x", [1, {"a": [True]}], {"a": None}, [[[]]]],
    )
    def test_accepts_what_every_component_encodes(self, value: object) -> None:
        """Ordinary JSON passes unchanged."""
        assert bounds.check_json(value) == value

    @pytest.mark.parametrize(
        "value",
        [2**63, -(2**63) - 1, 10**400, float("inf"), float("nan"), {"a": [float("-inf")]}],
    )
    def test_refuses_what_some_component_cannot(self, value: object) -> None:
        """Integers past 64 bits and non-finite numbers are refused, at any depth."""
        with pytest.raises(ValueError, match=r"64-bit|finite"):
            bounds.check_json(value)

    def test_depth(self) -> None:
        """64 levels pass; 65 do not; a hostile depth costs no recursion."""
        deep: object = []
        for _ in range(bounds.MAX_JSON_DEPTH - 1):
            deep = [deep]
        assert bounds.check_json(deep) is deep
        with pytest.raises(ValueError, match="nested"):
            bounds.check_json([deep])
        hostile: object = {}
        for _ in range(100_000):
            hostile = {"a": hostile}
        with pytest.raises(ValueError, match="nested"):
            bounds.check_json(hostile)


class TestClip:
    @given(st.text(max_size=3000), st.integers(2, 4000), st.booleans())
    def test_fits_and_keeps_what_it_can(self, text: str, limit: int, keep_end: bool) -> None:
        """A clipped text takes at most its bytes as JSON, and is a prefix (or suffix) of the cleaned text."""
        clipped = bounds.clip(text, limit, keep_end)
        assert bounds.json_bytes(clipped) <= limit
        cleaned = bounds.clip(text, 10**9)
        assert cleaned.endswith(clipped) if keep_end else cleaned.startswith(clipped)

    def test_control_characters_do_not_escape_to_six_bytes(self) -> None:
        """A message of control characters is stored as replacement characters, not \\u0001 escapes."""
        assert bounds.clip("\x01\x02\n", 100) == "\ufffd\ufffd\n"


#: The longest worker name a heartbeat may announce, in the characters that take most bytes as JSON.
WORST_WORKER = "\x01" * 128


def worst_case_record(payload_bytes: int) -> JobRecord:
    """A record whose payload takes `payload_bytes` and that has gained everything it can gain."""
    request = JobRequest(payload="x" * (payload_bytes - 2))
    trace = {
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        "tracestate": "a" * bounds.MAX_TRACESTATE_BYTES,
        "baggage": "b" * bounds.MAX_BAGGAGE_BYTES,
    }
    record = states.accept(request, JOB, "c" * 128, NOW, trace)
    hostile = '"\\' * 100_000
    for attempt in range(1, bounds.MAX_ERRORS + 2):
        record = states.claim(record, WORST_WORKER, "s" * 64, "t", NOW)
        error = OutcomeError(type=hostile, message=hostile, traceback=hostile)
        report = Outcome(
            id=JOB,
            attempt=attempt,
            token="t",
            session="s",
            status=OutcomeStatus.RETRY,
            error=error,
            retry_delay_ms=0,
            finished_at_ms=NOW,
        )
        record = states.apply_outcome(record.model_copy(update={"max_attempts": 1000}), report, NOW, 0.5)
        record = states.due(record, NOW) if record.state.value == "scheduled" else record
    record = states.claim(record, WORST_WORKER, "s" * 64, "t", NOW)
    result = "r" * (bounds.MAX_RESULT_BYTES - 2)
    done = Outcome(
        id=JOB,
        attempt=record.attempt,
        token="t",
        session="s",
        status=OutcomeStatus.SUCCEEDED,
        result=result,
        finished_at_ms=NOW,
    )
    return states.apply_outcome(record, done, NOW, 0.5)


def test_a_record_never_outgrows_its_margin() -> None:
    """Created within the budget, a record with a full error history and the largest result still fits
    the server's message limit: no later transition can be refused for its size."""
    max_payload = 1024 * 1024
    created = states.accept(JobRequest(payload="x" * 1000), JOB, "c" * 128, NOW, None)
    final = worst_case_record(1000)
    assert final.state.value == "succeeded"
    assert len(final.errors) == bounds.MAX_ERRORS
    assert len(encode(final)) - len(encode(created)) <= bounds.GROWTH_BYTES
    assert len(encode(final)) + 2048 < max_payload  # headers of a record write are well under 2 KiB
    assert bounds.record_budget(max_payload) > 700 * 1024


class TestAppliedAtTheReaper:
    def running(self) -> JobRecord:
        record = states.accept(JobRequest(), JOB, "cap", NOW, None)
        return states.claim(record, "w", "s", "t", NOW)

    def report(self, **fields: object) -> Outcome:
        return Outcome(id=JOB, attempt=1, token="t", session="s", finished_at_ms=NOW, **fields)

    @pytest.mark.parametrize("result", ["r" * bounds.MAX_RESULT_BYTES, 2**64, [float("inf")]])
    def test_a_result_that_cannot_be_stored_fails_the_attempt(self, result: object) -> None:
        """Too large or unencodable: the attempt fails as `ResultRejected`, retried like any failure."""
        after = states.apply_outcome(
            self.running(), self.report(status=OutcomeStatus.SUCCEEDED, result=result), NOW, 0.5
        )
        assert after.state.value in ("scheduled", "ready")
        assert after.errors[-1].type == "ResultRejected"

    def test_the_record_keeps_only_the_token_hash(self) -> None:
        """Readers of the record never see the token; the token still proves the report."""
        record = self.running()
        assert record.lease is not None
        assert record.lease.token_hash == token_hash("t")
        assert "t" not in record.lease.model_dump().values()
        after = states.apply_outcome(record, self.report(status=OutcomeStatus.SUCCEEDED, result=1), NOW, 0.5)
        assert after.state.value == "succeeded"

    def test_legacy_records_with_a_token_are_read_as_its_hash(self) -> None:
        """Records written before tokens were hashed still fence their attempt."""
        record = self.running().model_dump(mode="json")
        record["lease"]["token"] = "legacy"
        del record["lease"]["token_hash"]
        read = JobRecord.model_validate(record)
        assert read.lease is not None
        assert read.lease.token_hash == token_hash("legacy")


def test_releases_are_bounded() -> None:
    """A job handed back unrun again and again ends dead with a clear error instead of looping."""
    record = states.accept(JobRequest(), JOB, "cap", NOW, None)
    for n in range(states.MAX_RELEASES + 1):
        record = states.release(states.claim(record, "w", "s", f"t{n}", NOW), NOW)
    assert record.state.value == "dead"
    assert record.errors[-1].kind is ErrorKind.RELEASED
    assert record.releases == states.MAX_RELEASES


def test_heartbeat_lists_are_bounded_by_concurrency() -> None:
    """A heartbeat may not list more jobs than its concurrency allows (plus those being reported):
    `max_listed` (what a worker holds at most) is the most it may list."""
    assert max_listed(4) == 2 * 4 + 64
    running = tuple((JOB, n) for n in range(1, max_listed(4) + 2))
    Heartbeat(
        worker="w", session="s", capabilities=("a",), concurrency=4, running=running[:-1], interval_ms=500
    )
    with pytest.raises(ValueError, match="lists"):
        Heartbeat(
            worker="w", session="s", capabilities=("a",), concurrency=4, running=running, interval_ms=500
        )


def test_schedule_payloads_are_bounded_like_submits() -> None:
    """A template payload nested past the limit is refused when the schedule is made, not at its fire."""
    deep: object = 1
    for _ in range(199):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        ScheduleSpec.model_validate(
            {"id": "s", "every_ms": 1000, "job": {"capability": "a", "payload": deep}}
        )
