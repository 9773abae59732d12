"""What connection messages show of a NATS URL: never its credentials."""

from __future__ import annotations

import pytest

from jetsched.bus.connect import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:p%40ss@nats.example:4222", "nats://nats.example:4222"),
        ("tls://s3cr3t-token@nats.example", "tls://nats.example"),
        ("a:b@127.0.0.1:4222", "127.0.0.1:4222"),
        ("nats://u:p@n1:4222, nats://n2:4222", "nats://n1:4222,nats://n2:4222"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    """User, password or token before `@` is dropped from every server in the list."""
    assert redact(url) == shown
