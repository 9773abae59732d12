"""The wire models reject what is not in the contract."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jetsched.core.models import Heartbeat, JobRequest, check_capability


class TestJobRequest:
    def test_defaults(self) -> None:
        """An empty request is valid: priority 5, five attempts, five-minute timeout."""
        request = JobRequest.model_validate({})
        assert (request.priority, request.max_attempts, request.timeout_s) == (5, 5, 300.0)

    @pytest.mark.parametrize(
        "body",
        [
            {"priority": 10},
            {"priority": -1},
            {"priority": "high"},
            {"delay_ms": -5},
            {"unknown": 1},
            {"run_at": "tomorrow"},
            {"run_at": "2030-01-01T00:00:00"},
            {"delay_ms": 10, "run_at": "2030-01-01T00:00:00Z"},
            {"max_attempts": 0},
            {"timeout_s": 0},
            {"key": ""},
        ],
    )
    def test_rejects(self, body: dict[str, object]) -> None:
        """Out-of-range, unknown, mistyped and contradictory fields are errors."""
        with pytest.raises(ValidationError):
            JobRequest.model_validate(body)

    def test_an_unknown_field_of_its_backoff_is_refused_as_intake_reads_it(self) -> None:
        """`backoff` is stored too (in every job record), where it keeps unknown fields; intake reads a
        request with `extra="forbid"`, which refuses them in every nested shape."""
        body = {"backoff": {"base_ms": 1, "nope": 2}}
        assert JobRequest.model_validate(body).backoff.model_extra == {"nope": 2}
        with pytest.raises(ValidationError, match=r"backoff\.nope"):
            JobRequest.model_validate(body, extra="forbid")


@pytest.mark.parametrize("name", ["email", "email.send", "img-resize_v2", "a.b.c"])
def test_capability_accepts(name: str) -> None:
    """Capabilities are dot-separated tokens of letters, digits, '-' and '_'."""
    assert check_capability(name) == name


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a b", "a*", "a.>", "x" * 129, "ü"])
def test_capability_rejects(name: str) -> None:
    """Wildcards, spaces, empty tokens and over-long names are refused."""
    with pytest.raises(ValueError, match="capability"):
        check_capability(name)


def test_heartbeat_validates_capabilities() -> None:
    """A heartbeat naming a wildcard capability is malformed."""
    with pytest.raises(ValidationError):
        Heartbeat(worker="w", session="s", capabilities=("a.*",), concurrency=1, interval_ms=500)


def test_expires_header_only_while_unstarted() -> None:
    """The feed header announcing a start deadline is there only while it can still fire."""
    from jetsched.core import states
    from jetsched.core.changes import EXPIRES_HEADER, Change, headers_of

    record = states.accept(JobRequest(expires_in_ms=1000), "000000000000000000000000J1", "a", 0, None)
    assert headers_of(record)[EXPIRES_HEADER] == "1000"
    assert Change.of(record, 1).expires_at_ms == 1000
    claimed = states.claim(record, "w", "s", "t", 5)
    assert EXPIRES_HEADER not in headers_of(claimed)
    assert EXPIRES_HEADER not in headers_of(
        states.accept(JobRequest(), "000000000000000000000000J2", "a", 0, None)
    )
