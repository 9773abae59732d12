"""The README's client example runs as written (only the server URL differs)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.sdk import Job, Tasks

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.timeout(60)


def client_example() -> str:
    section = README.read_text().split("## Submitting jobs", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python block under 'Submitting jobs'"
    return match.group(1)


async def test_the_client_example_runs(stack: Stack, nats_server: NatsServer) -> None:
    tasks = Tasks()

    @tasks.task("email.send")
    async def send(job: Job) -> str:
        return f"sent to {job.payload['to']}"

    code = client_example().replace("nats://127.0.0.1:4222", nats_server.url)
    async with running_worker(tasks, nats_server.url):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert lines[0].endswith(" 2")
    assert lines[1] == "sent to a@example.com"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00", lines[2])
