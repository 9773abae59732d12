"""Start, kill (-9) and restart jetsched processes by PID, with their output in a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

    def restart(self) -> Proc:
        self.kill()
        return self.start()


def service(name: str, nats_url: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """A service process, `python -m jetsched.<name> --nats URL`."""
    argv = [sys.executable, "-m", f"jetsched.{name}", "--nats", nats_url, *extra]
    return Proc(name, argv, log_dir / f"{name}-{os.urandom(3).hex()}.log", env)


def worker(module: str, nats_url: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    """A worker process, `python -m jetsched.cli worker MODULE --nats URL`."""
    argv = [sys.executable, "-m", "jetsched.cli", "--nats", nats_url, "worker", module, *extra]
    return Proc(f"worker:{module}", argv, log_dir / f"worker-{os.urandom(3).hex()}.log", env)
