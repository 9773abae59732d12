"""The published pytest fixtures, used as an application would: its own project, its own tests, no
configuration, the plugin found through its entry point."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

TASKS = """
from jetsched.sdk import Fatal, task

@task("signup.welcome", max_attempts=2)
async def send_welcome(to: str) -> dict:
    if "@" not in to:
        raise Fatal("not an address")
    return {"sent_to": to}
"""

TESTS = """
import pytest

from jetsched.sdk import JobFailed
from shop.tasks import send_welcome


@pytest.mark.asyncio
async def test_welcome_mail(jetsched_worker, jetsched_client):
    async with jetsched_worker():
        handle = await send_welcome.submit(to="a@example.com")
        assert await handle.result(timeout=10) == {"sent_to": "a@example.com"}
        bad = await send_welcome.submit(to="nobody")
        with pytest.raises(JobFailed, match="not an address"):
            await bad.result(timeout=10)
    assert (await jetsched_client.get(handle.id)).max_attempts == 2
"""


async def test_an_application_tests_its_handlers_with_the_published_fixtures(tmp_path: Path) -> None:
    """A project with a task module and one test file, run by pytest in strict asyncio mode, gets a
    real stack from `jetsched_worker` and `jetsched_client` and passes."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "tasks.py").write_text(TASKS)
    (tmp_path / "test_shop.py").write_text(TESTS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "test_shop.py",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert "1 passed" in out.decode()
