"""`jetsched worker` from the command line: serving some of a module's tasks, and reloading on edits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest

from jetsched.devkit.waiting import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from jetsched.devkit.nats_server import NatsServer
    from jetsched.devkit.stack import Stack
    from jetsched.sdk import Client

pytestmark = pytest.mark.slow

MODULE = """
from jetsched.sdk import task

@task("reload.version")
def version(job) -> str:
    return {version!r}

@task("reload.other")
def other(job) -> str:
    return "other"
"""


def write(directory: Path, version: str) -> None:
    path = directory / "reloadable_tasks.py"
    path.write_text(MODULE.format(version=version))
    # A coarse filesystem clock could give the rewrite its predecessor's time: move it on explicitly.
    stamp = path.stat().st_mtime_ns + 10_000_000_000 * (1 + int(version[1:]))
    os.utime(path, ns=(stamp, stamp))


async def start_worker(directory: Path, url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetsched.cli",
        "--nats",
        url,
        "worker",
        "reloadable_tasks",
        *args,
        cwd=directory,
    )


async def result_of(client: Client, capability: str) -> object:
    return await (await client.submit(capability)).result(timeout=20)


async def test_reload_restarts_the_worker_on_an_edit(
    stack: Stack, client: Client, nats_server: NatsServer, tmp_path: Path
) -> None:
    """After the module is edited, jobs run the new code; the supervisor stops its worker on SIGTERM."""
    write(tmp_path, "v1")
    proc = await start_worker(tmp_path, nats_server.url, "--reload", "--drain-timeout", "2s")
    try:
        assert await result_of(client, "reload.version") == "v1"
        write(tmp_path, "v2")
        await eventually(lambda: _runs(client, "v2"), timeout=30, what="the edited handler runs")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert (await client.workers()) == [] or all(w.draining for w in await client.workers())


async def _runs(client: Client, version: str) -> bool:
    return await result_of(client, "reload.version") == version


async def test_capabilities_serves_only_those(
    stack: Stack, client: Client, nats_server: NatsServer, tmp_path: Path
) -> None:
    """`--capabilities` announces and runs only the named tasks of the module."""
    write(tmp_path, "v1")
    proc = await start_worker(tmp_path, nats_server.url, "--capabilities", "reload.other")
    try:
        assert await result_of(client, "reload.other") == "other"
        (worker,) = await client.workers()
        assert worker.capabilities == ("reload.other",)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
