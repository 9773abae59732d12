"""What must still hold after every batch of hostile messages, and the lost-job verdict at the end.

- Every service process is alive and holds a NATS connection under its name (`/connz` of the server's
  monitoring port): `jetsched-intake`, `jetsched-timer`, `jetsched-dispatcher`, `jetsched-reaper`, and
  the worker one under `jetsched-worker-…`.
- The services' logs gained no `Traceback`, `crashed`, `handler failed` or disconnect lines.
- A job accepted earlier is *lost* when it is missing (and nobody purged it), unreadable (`jobs.get` gives
  no answer or an error other than `not_found`), or stuck: `scheduled` well past its due time, `ready` on the
  control capability although its worker lives, or `running` past its attempt's timeout plus grace. A job
  `ready` on a fuzz capability waits for a worker and is fine; so is one `scheduled` far in the future, one
  that is legitimately `dead`, and one `cancelled` or purged when the fuzzer asked for that id.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from jetsched.devkit.procs import Proc

SERVICE_NAMES = ("jetsched-intake", "jetsched-timer", "jetsched-dispatcher", "jetsched-reaper")
#: The SDK worker names its connection `jetsched-worker-<host>-<pid>`.
WORKER_PREFIX = "jetsched-worker-"
LOG_MARKERS = re.compile(r"Traceback|crashed|handler failed|nats disconnected|service failed|not stored yet")
#: Grace past a due time or an attempt's timeout before a job counts as stuck.
STUCK_GRACE_MS = 15_000
TERMINAL = ("succeeded", "dead", "cancelled")


def connection_names(monitor_port: int) -> Counter[str]:
    """Client connection names the server holds right now (blocking; call it in a thread)."""
    url = f"http://127.0.0.1:{monitor_port}/connz?limit=10000"
    with urllib.request.urlopen(url, timeout=5) as response:
        data = json.load(response)
    return Counter(c.get("name", "") for c in data.get("connections", []))


async def missing_connections(monitor_port: int, wait_s: float = 3.0) -> list[str]:
    """Service names with no connection, after giving a reconnect `wait_s` to finish."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        names = await asyncio.to_thread(connection_names, monitor_port)
        missing = [n for n in SERVICE_NAMES if names[n] == 0]
        if not any(n.startswith(WORKER_PREFIX) for n in names):
            missing.append(WORKER_PREFIX.rstrip("-"))
        if not missing or asyncio.get_running_loop().time() > deadline:
            return missing
        await asyncio.sleep(0.2)


@dataclass
class LogScanner:
    """New alarming lines in the service logs since the last scan, summarised as `service: message`."""

    offsets: dict[Path, int] = field(default_factory=dict)

    def scan(self, procs: list[Proc]) -> list[str]:
        found = []
        for proc in procs:
            path = proc.log_path
            if not path.exists():
                continue
            with path.open("rb") as log:
                log.seek(self.offsets.get(path, 0))
                chunk = log.read()
                self.offsets[path] = log.tell()
            lines = chunk.decode(errors="replace").splitlines()
            for n, line in enumerate(lines):
                if line.startswith("Traceback"):  # plain text on stderr: name it by its exception line
                    found.append(f"{proc.name}: {raised(lines[n + 1 :])}")
                elif LOG_MARKERS.search(line) and line.startswith("{") and not job_outcome(line):
                    found.append(f"{proc.name}: {summarise(line)}")
        return found


def job_outcome(line: str) -> bool:
    """A worker's line for a finished attempt: a hostile payload makes a handler raise, and its traceback
    is the job's own error (kept in its record), not a fault of the worker."""
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and "outcome" in entry and str(entry.get("msg", "")).startswith("job ")


def raised(after: list[str]) -> str:
    """The exception line ending a plain-text traceback (the first unindented line)."""
    line = next((x for x in after if x and not x.startswith(" ")), "Traceback")
    return f"plain-text traceback | {line[:300]}"


def summarise(line: str) -> str:
    """`msg` of a JSON log line plus the last line of its traceback, if any."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:300]
    if not isinstance(entry, dict):
        return line[:300]
    text = str(entry.get("msg", ""))
    for key in ("error", "actor", "subject"):
        if key in entry:
            text += f" {key}={str(entry[key])[:200]}"
    exc = str(entry.get("exc", "")).strip().splitlines()
    if exc:
        text += f" | {exc[-1][:300]}"
    return text


@dataclass
class Verdict:
    ok: Counter[str] = field(default_factory=Counter)
    lost: dict[str, str] = field(default_factory=dict)


def judge(
    job_id: str, answer: dict[str, Any] | None, now_ms: int, *, control: bool, touched: bool, verdict: Verdict
) -> None:
    """Sort one accepted job into fine (by state) or lost (with why), from its `jobs.get` answer."""
    if answer is None:
        verdict.lost[job_id] = "jobs.get gave no reply"
        return
    error = answer.get("error")
    if isinstance(error, dict):
        if error.get("code") == "not_found" and touched:
            verdict.ok["purged"] += 1
        else:
            verdict.lost[job_id] = f"jobs.get: {error.get('code')}: {str(error.get('message'))[:200]}"
        return
    job = answer.get("job") or {}
    state = job.get("state")
    if control and state != "succeeded":
        verdict.lost[job_id] = (
            f"control job {state} (attempt {job.get('attempt')}, errors {job.get('errors')})"[:400]
        )
        return
    if state == "cancelled" and not touched:
        verdict.lost[job_id] = "cancelled although nobody asked to cancel it"
        return
    if state in TERMINAL:
        verdict.ok[state] += 1
        return
    run_at = int(job.get("run_at_ms") or 0)
    if state == "scheduled" and run_at + STUCK_GRACE_MS < now_ms:
        verdict.lost[job_id] = f"scheduled {now_ms - run_at} ms past its due time"
    elif state == "running":
        lease = job.get("lease") or {}
        limit = int(lease.get("claimed_at_ms") or 0) + int(float(job.get("timeout_s") or 0) * 1000)
        if limit + STUCK_GRACE_MS < now_ms:
            verdict.lost[job_id] = f"running {now_ms - limit} ms past its attempt's timeout"
        else:
            verdict.ok["running"] += 1
    else:
        verdict.ok[str(state)] += 1
