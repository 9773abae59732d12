"""pytest fixtures for applications: run your handlers against the real jetsched in a few lines.

Installed with `jetsched-devkit` as a pytest plugin (entry point `pytest11`), so they are simply there:

    from myapp.tasks import send_email          # an @task function

    async def test_welcome_mail(jetsched_worker, jetsched_client):
        async with jetsched_worker():            # runs every @task your imports registered
            handle = await send_email.submit(to="a@example.com")
            assert await handle.result() == {"sent_to": "a@example.com"}

Each test gets its own embedded nats-server (a free loopback port, a temporary store) and the four
services in its event loop: the real stack, not a fake, started in about half a second. Async fixtures
are declared with `pytest_asyncio.fixture`, so they work in pytest-asyncio's strict and auto modes alike
(in strict mode, mark your tests `@pytest.mark.asyncio`). The names all start with `jetsched_`, so
they cannot shadow another plugin's (pytest-django's `client`, say). docs/sdk.md, "Testing".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from jetsched.sdk import Client, Tasks, default_tasks

from .nats_server import NatsServer
from .stack import Stack, running_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from jetsched.sdk import Worker


@pytest.fixture
def jetsched_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port and its own store (`.url`)."""
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def jetsched_stack(jetsched_server: NatsServer) -> AsyncIterator[Stack]:
    """jetsched's four services, running in the test's event loop against `jetsched_server`."""
    async with Stack(jetsched_server.url) as running:
        yield running


@pytest_asyncio.fixture
async def jetsched_client(jetsched_stack: Stack, jetsched_server: NatsServer) -> AsyncIterator[Client]:
    """A connected `Client` of the running stack; `@task` functions' `submit()` goes through it."""
    async with Client(jetsched_server.url) as connected:
        yield connected


@pytest.fixture
def jetsched_worker(
    jetsched_stack: Stack, jetsched_server: NatsServer
) -> Callable[..., AbstractAsyncContextManager[Worker]]:
    """Starts a worker for a block: `async with jetsched_worker(tasks=None, **Worker options):` runs
    `tasks` (default: every `@task` registered so far) and drains it at the end of the block."""

    def start(tasks: Tasks | None = None, **options: Any) -> AbstractAsyncContextManager[Worker]:
        return running_worker(tasks or default_tasks, jetsched_server.url, **options)

    return start
