"""The same jobs through nats-py's public path: the fallback the port (`bus/natspy.py`) takes when nats-py
changes. Every connection here is a plain `direct.Connection`, asked for by `JETSCHED_NATS_PATH=public`."""

from __future__ import annotations

import pytest

from jetsched.bus import natspy
from jetsched.bus.direct import Connection
from jetsched.devkit.stack import Stack
from jetsched.sdk import Client

from .test_lifecycle import (
    test_cancel,
    test_delayed_never_early,
    test_retries_with_backoff_then_dead,
    test_success,
)
from .test_submit import test_idempotency_key, test_store_acked_submit

__all__ = [
    "test_cancel",
    "test_delayed_never_early",
    "test_idempotency_key",
    "test_retries_with_backoff_then_dead",
    "test_store_acked_submit",
    "test_success",
]


@pytest.fixture(autouse=True)
def public_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(natspy.PATH_ENV, "public")


async def test_every_connection_takes_the_public_path(stack: Stack, client: Client) -> None:
    """Services and client alike connect without the fast path's overrides."""
    connections = [service._nc for service in stack.services] + [client._nc]
    assert connections
    assert all(type(nc) is Connection for nc in connections)
