"""The SDK's submit options, as they go on the wire, and replies as they come back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jetsched.sdk import JetschedApiError
from jetsched.sdk._client import _stored, _submit_body


def test_options_become_wire_fields_and_unset_ones_stay_out() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    body = _submit_body(
        {"x": 1}, "k", {"delay": 1.5, "timeout": 30, "expires_in": 2, "labels": {}, "priority": None}
    )
    assert body == {"payload": {"x": 1}, "delay_ms": 1500, "key": "k", "timeout_s": 30, "expires_in_ms": 2000}
    assert _submit_body(None, None, {"run_at": at}) == {"payload": None, "run_at": at.isoformat()}


def test_a_misspelt_option_is_refused() -> None:
    with pytest.raises(TypeError, match="prio"):
        _submit_body(None, None, {"prio": 3})  # type: ignore[typeddict-unknown-key]


class TestStoreAckReply:
    """An unkeyed submit answered by JetStream's ack of the record (docs/protocol.md, "Replied by the store")."""

    def test_ack_becomes_a_submit_reply(self) -> None:
        """The job's id and state come from the reply subject's appended tokens."""
        ack = {"stream": "KV_jobs", "seq": 7}
        assert _stored(ack, b"01KBZ3R6X9T2M0Q7D5W8C4N1HE.ready") == {
            "id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE",
            "state": "ready",
            "duplicate": False,
        }

    def test_refused_write_is_unavailable(self) -> None:
        """A write JetStream refused is reported as intake reports a failed create: retry with a key."""
        ack = {"error": {"code": 503, "err_code": 10008, "description": "no leader"}}
        with pytest.raises(JetschedApiError) as caught:
            _stored(ack, b"01KBZ3R6X9T2M0Q7D5W8C4N1HE.ready")
        assert (caught.value.code, "no leader" in caught.value.message) == ("unavailable", True)
