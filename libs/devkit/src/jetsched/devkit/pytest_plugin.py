"""The fixtures of jetsched's own test suite (`-p jetsched.devkit.pytest_plugin` in its pytest config).

Applications use the `jetsched_*` fixtures of `fixtures.py`, a plugin installed with the devkit; this
module adds the short names the project's tests grew up with (`nats_server`, `stack`, `client`) and the
process fleet. The short names stay out of the published plugin: `client` would shadow pytest-django's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from jetsched.sdk import Client

# Re-exported so the suite runs even with plugin autoloading off (PYTEST_DISABLE_PLUGIN_AUTOLOAD).
from .fixtures import jetsched_client, jetsched_server, jetsched_stack, jetsched_worker
from .fleet import Fleet

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from .nats_server import NatsServer
    from .stack import Stack

__all__ = ["client", "fleet", "jetsched_client", "jetsched_server", "jetsched_stack", "jetsched_worker"]
__all__ += ["nats_server", "stack"]


@pytest.fixture
def nats_server(jetsched_server: NatsServer) -> NatsServer:
    """A fresh nats-server with JetStream on a free loopback port and its own store."""
    return jetsched_server


@pytest.fixture
def fleet(nats_server: NatsServer, tmp_path: Path) -> Iterator[Fleet]:
    """Real service and worker processes around the test's nats-server; all stopped at the end."""
    running = Fleet(nats_server.url, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def stack(jetsched_stack: Stack) -> Stack:
    """The four services in the test's loop."""
    return jetsched_stack


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client of the test's nats-server (with or without services: `stack` or `fleet` bring them)."""
    async with Client(nats_server.url) as connected:
        yield connected
