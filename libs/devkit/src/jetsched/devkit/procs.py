"""Start, kill (-9) and restart jetsched processes by PID, with their output in a log file; keep them running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SERVICES = ("intake", "timer", "dispatcher", "reaper")


class Proc:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """`kill -9` this process (only the one we started)."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for a graceful exit; kill if it takes longer than `timeout`."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def signal_stop(self) -> None:
        """SIGTERM, without waiting (`terminate_all` waits)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def restart(self) -> Proc:
        self.kill()
        return self.start()


def terminate_all(procs: list[Proc], timeout: float = 30.0) -> None:
    """`terminate` them together: SIGTERM to each at once, then a graceful exit awaited for `timeout` in all
    (not per process); whichever is still running then is killed."""
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.signal_stop()
    deadline = time.monotonic() + timeout
    for proc in procs:
        if proc.popen is None:
            continue
        try:
            proc.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def service(name: str, nats_url: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """A service process, `python -m jetsched.<name> --nats URL`."""
    argv = [sys.executable, "-m", f"jetsched.{name}", "--nats", nats_url, *extra]
    return Proc(name, argv, log_dir / f"{name}-{os.urandom(3).hex()}.log", env)


def worker(module: str, nats_url: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """A worker process, `python -m jetsched.cli worker MODULE --nats URL`."""
    argv = [sys.executable, "-m", "jetsched.cli", "--nats", nats_url, "worker", module, *extra]
    return Proc(f"worker:{module}", argv, log_dir / f"worker-{os.urandom(3).hex()}.log", env)


def restart_delay(previous_s: float, uptime_s: float, first_s: float, max_s: float, steady_s: float) -> float:
    """Seconds to wait before restarting a process that ran `uptime_s` and was last restarted after
    `previous_s` (0: never): `first_s` after a first exit or a steady run, doubling while it keeps dying."""
    if previous_s == 0 or uptime_s >= steady_s:
        return first_s
    return min(previous_s * 2, max_s)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


@dataclass
class _Watched:
    proc: Proc
    started_at: float
    delay_s: float = 0.0
    restart_at: float | None = None


class Supervisor:
    """Restarts any of `procs` that exits, with backoff, saying so through `say`; runs until cancelled.

    Cancel it before stopping the processes, or it restarts them. The processes are `subprocess.Popen`s,
    not asyncio children, so they are polled.
    """

    def __init__(
        self,
        procs: list[Proc],
        say: Callable[[str], None],
        first_s: float = 0.5,
        max_s: float = 10.0,
        steady_s: float = 30.0,
        poll_s: float = 0.1,
    ) -> None:
        self.procs = procs
        self.say = say
        self.first_s = first_s
        self.max_s = max_s
        self.steady_s = steady_s
        self.poll_s = poll_s

    async def run(self) -> None:
        now = time.monotonic()
        watched = [_Watched(proc, now) for proc in self.procs]
        while True:
            now = time.monotonic()
            for child in watched:
                self._check(child, now)
            await asyncio.sleep(self.poll_s)

    def _check(self, child: _Watched, now: float) -> None:
        proc = child.proc
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at, child.started_at = None, now
                proc.start()
                self.say(f"restarted {proc.name} (pid {proc.pid}, log {proc.log_path})")
        elif proc.popen is not None and proc.popen.poll() is not None:
            child.delay_s = restart_delay(
                child.delay_s, now - child.started_at, self.first_s, self.max_s, self.steady_s
            )
            child.restart_at = now + child.delay_s
            self.say(
                f"{proc.name} (pid {proc.pid}) {describe_exit(proc.popen.returncode)};"
                f" restarting in {child.delay_s:g}s (log {proc.log_path})"
            )
