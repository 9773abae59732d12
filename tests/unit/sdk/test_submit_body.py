"""The SDK's submit options, as they go on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jetsched.sdk._client import _submit_body


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
