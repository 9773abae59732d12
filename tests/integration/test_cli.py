"""The `jetsched` command line, run as a real program."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import signal
import socket
import sys
from pathlib import Path

import orjson
import pytest

from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, JetschedApiError, Job, Tasks


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
    assert "state: cancelled" in out
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


async def test_a_long_output_reaches_a_slow_reader_whole() -> None:
    """Unbuffered (PYTHONUNBUFFERED=1) and after uvloop has run, a print to a pipe whose reader lags used to
    come back short and lose all past 64 KiB (`--json jobs` under load); the CLI's stdout writes it whole."""
    script = (
        "import asyncio, uvloop\n"
        "from jetsched.cli.__main__ import whole_stdout\n"
        "uvloop.run(asyncio.sleep(0))\n"
        "whole_stdout()\n"
        "print('x' * 300_000)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    await asyncio.sleep(1.5)  # the pipe fills (64 KiB) long before the reader starts
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert len(out) == 300_001


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


async def start_dev(data: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetsched.cli",
        "dev",
        "--data",
        str(data),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def read_until(proc: asyncio.subprocess.Process, lines: list[str], pattern: str) -> re.Match[str]:
    """Read `proc`'s output into `lines` until a line matches `pattern`; return the match."""
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        assert line, "".join(lines)
        lines.append(line)
        if match := re.search(pattern, line):
            return match


@pytest.mark.slow
async def test_dev_runs_demo_and_stops_cleanly(tmp_path: Path) -> None:
    """`jetsched dev` starts everything, runs the demo jobs to completion, and stops on Ctrl-C."""
    proc = await start_dev(tmp_path / "dev", "--port", str(free_port()))
    lines: list[str] = []
    async with asyncio.timeout(90):
        await read_until(proc, lines, "demo complete")
    proc.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    output = "".join(lines) + rest.decode()
    assert proc.returncode == 0, output
    assert "stopped" in output
    assert "succeeded on attempt 3" in output
    assert "dead" in output


STARTED = re.compile(r"started (?P<name>\S+) \(pid (?P<pid>\d+)")


@pytest.mark.slow
async def test_dev_restarts_a_child_that_dies(tmp_path: Path) -> None:
    """`jetsched dev` restarts a killed timer (delayed jobs still run); SIGTERM then stops every process."""
    port = free_port()
    proc = await start_dev(tmp_path / "dev", "--port", str(port), "--no-demo")
    lines: list[str] = []
    async with asyncio.timeout(60):
        await read_until(proc, lines, "Ctrl-C stops everything")
        pids = {m["name"]: int(m["pid"]) for m in map(STARTED.search, lines) if m}
        os.kill(pids["timer"], signal.SIGKILL)
        await read_until(proc, lines, rf"timer \(pid {pids['timer']}\) killed by SIGKILL; restarting in 0.5s")
        restarted = int((await read_until(proc, lines, r"restarted timer \(pid (\d+)"))[1])
        assert restarted != pids["timer"]
        async with Client(f"nats://127.0.0.1:{port}") as client:
            reply = await client.submit("demo.add", {"numbers": [1, 2]}, delay=0.2)
            assert (await client.wait(reply.id, timeout=20)).result == 3
        proc.send_signal(signal.SIGTERM)
        rest, _ = await proc.communicate()
    assert proc.returncode == 0, "".join(lines) + rest.decode()
    for pid in [*pids.values(), restarted]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "nats-server still listening"


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
    assert "deleted: true" in out


async def test_queues_configure_changes_only_what_it_is_given(stack: Stack, nats_server: NatsServer) -> None:
    """`--rate` on a paused queue with a cap keeps it paused and capped; `--clear` removes one limit."""
    url = ("--nats", nats_server.url)
    code, _, err = await jetsched(*url, "queues", "configure", "mail", "--max-running", "3", "--paused")
    assert code == 0, err
    code, out, err = await jetsched(*url, "queues", "configure", "mail", "--rate", "10", "--json")
    assert code == 0, err
    settings = orjson.loads(out)
    assert (settings["paused"], settings["max_running"], settings["rate_per_s"]) == (True, 3, 10.0)
    code, out, _ = await jetsched(
        *url, "--json", "queues", "configure", "mail", "--clear", "max_running", "--no-paused"
    )
    settings = orjson.loads(out)
    assert (settings["paused"], settings["max_running"], settings["rate_per_s"]) == (False, None, 10.0)


async def test_user_errors_are_one_line(stack: Stack, nats_server: NatsServer, tmp_path: Path) -> None:
    """Bad JSON, a module that is not there, nobody answering: one line each, no traceback."""
    code, _, err = await jetsched("--nats", nats_server.url, "submit", "a", "--payload", "{bad")
    assert code == 2
    assert "Traceback" not in err
    assert "argument --payload: not JSON" in err.splitlines()[-1]
    code, _, err = await jetsched("--nats", nats_server.url, "worker", "nosuchmodule")
    assert code == 1
    assert "Traceback" not in err
    assert "cannot import 'nosuchmodule'" in err
    bare = NatsServer(tmp_path / "bare").start()  # a NATS with no jetsched behind it
    try:
        code, _, err = await jetsched("stats", "--nats", bare.url)
    finally:
        bare.stop()
    assert code == 3
    assert "Traceback" not in err
    assert "is intake running?" in err


async def jetsched_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI as from a person's shell (stderr on a pseudo-terminal), its stdout on a pipe."""
    master, slave = pty.openpty()

    def read_terminal() -> bytes:
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the program (the terminal's other end) is gone
            while chunk := os.read(master, 4096):
                seen += chunk
        return seen

    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jetsched.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=slave
        )
        os.close(slave)
        terminal = asyncio.create_task(asyncio.to_thread(read_terminal))
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        err = await asyncio.wait_for(terminal, 10)
    finally:
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def indexed(client: Client, capability: str, state: str, count: int) -> None:
    """Wait until intake's index (which lists answer from, after the records change) counts them."""

    async def counted() -> bool:
        counts: dict[str, int] = (await client.stats()).capabilities.get(capability, {})
        return counts.get(state) == count

    await eventually(counted, timeout=20)


async def test_bulk_actions_and_long_lists_show_progress_on_a_terminal(
    stack: Stack, nats_server: NatsServer, client: Client
) -> None:
    """Dead letters retried and purged by error type, a list longer than a page: progress on a terminal's
    stderr, never on stdout (so `--json` stays clean) and not at all when stderr is not a terminal."""
    url = ("--nats", nats_server.url)
    tasks = Tasks()

    @tasks.task("mail.send")
    async def send(job: Job) -> None:
        raise (OSError if job.payload["os"] else ValueError)("no")

    async with running_worker(tasks, nats_server.url):
        failing = await client.submit_many("mail.send", [{"os": n < 6} for n in range(9)], max_attempts=1)
        ids = [reply.id for reply in failing if not isinstance(reply, Exception)]
        assert all([(await client.wait(job_id)).state == "dead" for job_id in ids])
    os_errors, value_errors = ids[:6], ids[6:]
    await indexed(client, "mail.send", "dead", 9)

    code, out, err = await jetsched_on_a_terminal(*url, "--json", "dead", "retry", "--error-type", "OSError")
    assert code == 0, err
    assert sorted(orjson.loads(out)["done"]) == sorted(os_errors)
    assert "retried 6/6" in err
    assert {(await client.get(job_id)).state for job_id in os_errors} == {"ready"}

    code, out, err = await jetsched(
        *url, "dead", "purge", "--error-type", "ValueError", "--capability", "mail.send"
    )
    assert (code, err) == (0, "")
    assert "purged 3 dead letters of type ValueError" in out
    for job_id in value_errors:
        with pytest.raises(JetschedApiError, match="not_found"):
            await client.get(job_id)

    await client.submit_many("report", [{"n": n} for n in range(300)], delay=3600)
    await indexed(client, "report", "scheduled", 300)
    code, out, err = await jetsched_on_a_terminal(*url, "jobs", "--state", "scheduled", "--all")
    assert code == 0, err
    assert len(out.splitlines()) == 301  # the header and every job, though a page holds 250
    assert "listed 300 jobs" in err
    code, out, err = await jetsched(*url, "--json", "jobs", "--capability", "report", "--limit", "280")
    assert (code, err) == (0, "")
    listed = orjson.loads(out)
    assert len(listed["jobs"]) == 280
    assert listed["next"] == listed["jobs"][-1]["id"]
