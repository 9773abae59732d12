"""The `jetsched` command line, run as a real program."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest

from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.stack import Stack


async def jetsched(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetsched.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_submit_status_jobs_cancel(stack: Stack, nats_server: NatsServer) -> None:
    """submit prints the new id; status, jobs and cancel show and change it; --json is machine-readable."""
    url = ("--nats", nats_server.url)
    code, out, _ = await jetsched(
        *url, "--json", "submit", "img.resize", "--payload", '{"w": 10}', "--delay", "1h"
    )
    assert code == 0
    job_id = orjson.loads(out)["id"]
    code, out, _ = await jetsched(*url, "status", job_id)
    assert code == 0
    assert "scheduled" in out
    assert "img.resize" in out
    code, out, _ = await jetsched(*url, "jobs", "--state", "scheduled")
    assert job_id in out
    code, out, _ = await jetsched(*url, "cancel", job_id)
    assert "state=cancelled" in out
    code, out, _ = await jetsched(*url, "dead", "list")
    assert code == 0
    code, out, _ = await jetsched(*url, "stats")
    assert "img.resize" in out
    assert "0 sessions" in out


async def test_structured_error_exit_code(stack: Stack, nats_server: NatsServer) -> None:
    """A refused request prints the error's code and field and exits 2."""
    code, _, err = await jetsched("--nats", nats_server.url, "submit", "a", "--priority", "42")
    assert code == 2
    assert "invalid_field" in err
    assert "priority" in err


async def test_unreachable_server_is_a_clear_error() -> None:
    """No NATS at the address: one line naming the URL (without its password) and the last error, exit 3."""
    port = free_port()
    code, _, err = await jetsched(
        "--nats", f"nats://me:secret@127.0.0.1:{port}", "--request-timeout", "1s", "status", "X"
    )
    assert code == 3
    assert err.count("\n") == 1, err
    assert f"cannot reach nats://127.0.0.1:{port}" in err
    assert "ConnectionRefusedError" in err
    assert "secret" not in err


@pytest.mark.slow
async def test_dev_runs_demo_and_stops_cleanly(tmp_path: Path) -> None:
    """`jetsched dev` starts everything, runs the demo jobs to completion, and stops on Ctrl-C."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetsched.cli",
        "dev",
        "--port",
        str(free_port()),
        "--data",
        str(tmp_path / "dev"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(90):
        while not any("demo complete" in line for line in lines):
            line = (await proc.stdout.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
    proc.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    output = "".join(lines) + rest.decode()
    assert proc.returncode == 0, output
    assert "stopped" in output
    assert "succeeded on attempt 3" in output
    assert "dead" in output


async def test_schedules_commands(stack: Stack, nats_server: NatsServer) -> None:
    """create, preview (UTC and local), show, update, pause, list and delete from the command line."""
    url = ("--nats", nats_server.url)
    code, out, err = await jetsched(
        *url,
        "schedules",
        "create",
        "nightly",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--capability",
        "report",
        "--payload",
        '{"n": 1}',
        "--misfire",
        "skip",
        "--dst-fold",
        "second",
    )
    assert code == 0, err
    assert "30 2 * * *" in out
    code, out, _ = await jetsched(*url, "schedules", "preview", "nightly", "--count", "3")
    lines = out.strip().splitlines()[1:]
    assert len(lines) == 3
    assert all("T02:30:00+0" in line for line in lines)
    code, out, _ = await jetsched(
        *url, "schedules", "update", "nightly", "--every", "1h", "--capability", "report"
    )
    assert "every 3600s" in out
    code, out, _ = await jetsched(*url, "schedules", "pause", "nightly")
    assert "paused" in out
    code, out, _ = await jetsched(*url, "schedules", "list")
    assert "nightly" in out
    assert "paused" in out
    code, out, _ = await jetsched(*url, "schedules", "delete", "nightly")
    assert "deleted=True" in out
