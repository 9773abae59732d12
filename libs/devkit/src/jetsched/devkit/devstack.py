"""`jetsched dev` / `make run`: an embedded nats-server, the four services, a demo worker and demo jobs."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetsched.bus import security
from jetsched.bus.auth import NatsAuth
from jetsched.sdk import Client, JetschedApiError

from . import procs
from .nats_server import NatsServer, free_port

DEMO_JOBS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("demo.add", {"numbers": [1, 2, 3]}, {"priority": 7}),
    ("demo.sleep", {"seconds": 0.2}, {}),
    ("demo.flaky", {"succeed_on": 3}, {"backoff": {"base_ms": 300, "factor": 2.0, "jitter": 0.1}}),
    ("demo.add", {"numbers": [40, 2]}, {"delay": 2.0}),
    ("demo.fail", {}, {"max_attempts": 2, "backoff": {"base_ms": 200}}),
]


def say(message: str) -> None:
    print(f"[jetsched dev] {message}", flush=True)


async def wait_ready(client: Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.list(limit=1)
            return
        except (TimeoutError, JetschedApiError, Exception):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def run_demo(client: Client) -> None:
    ids: dict[str, str] = {}
    for capability, payload, options in DEMO_JOBS:
        reply = await client.submit(capability, payload, **options)
        ids[reply.id] = capability
        say(f"submitted {capability} {payload} {options or ''} -> {reply.id} ({reply.state})")
    seen: dict[str, tuple[str, int]] = {}
    finished: set[str] = set()
    async with asyncio.timeout(60):
        while len(finished) < len(ids):
            for job_id, capability in ids.items():
                if job_id in finished:
                    continue
                job = await client.get(job_id)
                now = (job.state.value, job.attempt)
                if seen.get(job_id) != now:
                    seen[job_id] = now
                    detail = ""
                    if job.state == "succeeded":
                        detail = f" result={job.result!r}"
                    elif job.last_error:
                        detail = f" last error: {job.last_error.message}"
                    say(f"{job_id} {capability:<10} {job.state.value:<9} attempt {now[1]}{detail}")
                if job.finished:
                    finished.add(job_id)
            await asyncio.sleep(0.05)
    say("demo complete: every job reached a final state")


@dataclass(frozen=True, slots=True)
class Identities:
    """Who each process of the dev stack is: nobody (`creds` None), or a seed file per role."""

    creds: Path | None = None
    config: Path | None = None

    def env(self, role: str) -> dict[str, str]:
        return (
            {} if self.creds is None else {"JETSCHED_NATS_CREDS": str(security.creds_path(self.creds, role))}
        )

    def auth(self, role: str) -> NatsAuth:
        return NatsAuth(creds=str(security.creds_path(self.creds, role)) if self.creds else None)

    def worker_args(self) -> tuple[str, ...]:
        return () if self.creds is None else ("--session", DEMO_WORKER)


#: The demo worker's identity (and session) in secure mode.
DEMO_WORKER = "demo"


def secure_identities(data_dir: Path, port: int) -> Identities:
    """Seeds for every role and the demo worker in DATA/creds (kept across runs), and a server config."""
    creds = data_dir / "creds"
    security.init(creds, (DEMO_WORKER,), port=port, store_dir=data_dir / "jetstream", monitor_port=None)
    say(f"secure mode: identities in {creds}/<role>.nk, server config {creds / security.SERVER_CONF}")
    return Identities(creds, creds / security.SERVER_CONF)


async def start_dashboard(url: str, ids: Identities, port: int) -> asyncio.Task[None]:
    """The web dashboard on loopback, with a fresh operator token in the printed link's fragment."""
    from jetsched.dashboard.access import Access
    from jetsched.dashboard.app import Dashboard, serve

    token = secrets.token_urlsafe(24)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    dashboard = Dashboard(url, ids.auth("operator"), Access(token))
    task = asyncio.create_task(serve(dashboard, "127.0.0.1", port, bound.set_result))
    waits: set[asyncio.Future[Any]] = {task, bound}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    say(
        f"dashboard on http://127.0.0.1:{bound.result()}/#token={token} (the link carries the operator token)"
    )
    return task


async def run(
    port: int | None, data_dir: Path, demo: bool, secure: bool = False, dashboard_port: int | None = None
) -> None:
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = 4222 if _port_free(4222) else free_port()
    ids = secure_identities(data_dir, port) if secure else Identities()
    server = NatsServer(data_dir / "jetstream", port=port, config=ids.config).start()
    say(f"nats-server with JetStream on {server.url} (store {server.store_dir})")
    children = [procs.service(name, server.url, log_dir, env=ids.env(name)) for name in procs.SERVICES]
    children.append(
        procs.worker(
            "jetsched.devkit.demo",
            server.url,
            log_dir,
            "--concurrency",
            "8",
            *ids.worker_args(),
            env=ids.env(security.WORKER_PREFIX + DEMO_WORKER),
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervising: asyncio.Task[None] | None = None
    children_tasks: list[asyncio.Task[None]] = []
    try:
        for child in children:
            child.start()
            say(f"started {child.name} (pid {child.pid}, log {child.log_path})")
        supervising = asyncio.create_task(procs.Supervisor(children, say).run())
        async with Client(server.url, auth=ids.auth("operator")) as client:
            await wait_ready(client)
            if dashboard_port is None:
                dashboard_port = 8080 if _port_free(8080) else 0
            children_tasks.append(await start_dashboard(server.url, ids, dashboard_port))
            if demo:
                demo_task = asyncio.create_task(run_demo(client))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({demo_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if demo_task.done():
                    demo_task.result()
                else:
                    demo_task.cancel()
        if not stop.is_set():
            example = "--payload '{\"numbers\": [1, 2]}'"
            cli = _cli_path()
            creds = f" --creds {security.creds_path(ids.creds, 'operator')}" if ids.creds else ""
            say(f"running; try: {cli} --nats {server.url}{creds} submit demo.add {example}")
            say("Ctrl-C stops everything")
            await stop.wait()
    finally:
        say("stopping: worker first (drains), then services, then nats-server")
        for task in [*children_tasks, supervising]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for child in reversed(children):
            with contextlib.suppress(Exception):
                child.terminate()
        server.stop()
        say("stopped")


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cli_path() -> str:
    """How to call the CLI from here: its path in the virtualenv, relative when inside the working tree."""
    cli = Path(sys.executable).parent / "jetsched"
    try:
        return str(cli.relative_to(Path.cwd()))
    except ValueError:
        return str(cli)
