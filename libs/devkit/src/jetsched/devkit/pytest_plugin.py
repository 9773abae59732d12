"""pytest fixtures: a real nats-server per test, the in-process stack, a client, span capture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from jetsched.sdk import Client

from .fleet import Fleet
from .nats_server import NatsServer
from .stack import Stack

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port and its own store."""
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fleet(nats_server: NatsServer, tmp_path: Path) -> Iterator[Fleet]:
    """Real service and worker processes around the test's nats-server; all stopped at the end."""
    running = Fleet(nats_server.url, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def stack(nats_server: NatsServer) -> AsyncIterator[Stack]:
    async with Stack(nats_server.url) as running:
        yield running


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    async with Client(nats_server.url) as connected:
        yield connected
