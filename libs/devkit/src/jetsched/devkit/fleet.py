"""Real processes for crash and chaos tests: service replicas and probe workers around one nats-server.

Workers run `jetsched.devkit.probe`, so every execution is written to an execution log outside NATS that
a checker can compare with what jetsched reports.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from jetsched.bus.connect import connect
from jetsched.bus.records import Store
from jetsched.core import subjects
from jetsched.core.errors import NotFound

from . import procs
from .waiting import eventually

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class Run:
    at: float
    pid: int
    job_id: str
    attempt: int
    event: str


class Fleet:
    def __init__(self, nats_url: str, work_dir: Path) -> None:
        self.url = nats_url
        self.work_dir = work_dir
        self.exec_log = work_dir / "executions.log"
        self.services: list[procs.Proc] = []
        self.workers: list[procs.Proc] = []

    def service(self, name: str, env: dict[str, str] | None = None) -> procs.Proc:
        proc = procs.service(name, self.url, self.work_dir, env=env).start()
        self.services.append(proc)
        return proc

    def start_services(self, copies: int = 1) -> Fleet:
        for _ in range(copies):
            for name in procs.SERVICES:
                self.service(name)
        return self

    def worker(self, *extra: str, env: dict[str, str] | None = None) -> procs.Proc:
        env = {"JETSCHED_PROBE_LOG": str(self.exec_log), **(env or {})}
        proc = procs.worker("jetsched.devkit.probe", self.url, self.work_dir, *extra, env=env).start()
        self.workers.append(proc)
        return proc

    def runs(self) -> list[Run]:
        if not self.exec_log.exists():
            return []
        rows = []
        for line in self.exec_log.read_text().splitlines():
            at, pid, job_id, attempt, event = line.split()
            rows.append(Run(float(at), int(pid), job_id, int(attempt), event))
        return rows

    def started(self, job_id: str) -> list[Run]:
        return [r for r in self.runs() if r.job_id == job_id and r.event == "start"]

    async def lease_owner(self, service: str, shard: int) -> procs.Proc:
        """The process of `service` holding a shard's lease (its instance id is in its start-up log line).

        Waits while the lease is between owners (released by one replica, not yet taken by another, as
        when replicas rebalance)."""
        nc = await connect(self.url, "jetsched-fleet")
        store = Store(nc, subjects.LEASES_BUCKET)

        async def owner() -> str | None:
            try:
                data, _ = await store.get(f"{service}.shard.{shard}")
            except NotFound:
                return None
            found: str = orjson.loads(data)["owner"]
            return found

        try:
            instance = await eventually(owner, timeout=10, what=f"an owner of {service} shard {shard}")
        finally:
            await nc.close()
        assert instance is not None
        name = service.partition(".")[0]  # a service's leases of another kind: `reaper.records`
        return next(p for p in self.services if p.name == name and instance in p.log_path.read_text())

    def stop(self) -> None:
        """Every worker stopped gracefully, together, then every service, together (the workers report to
        the services while they drain); whatever is still running 10 s after its SIGTERM is killed."""
        for group in (self.workers, self.services):
            with contextlib.suppress(Exception):
                procs.terminate_all(group[::-1], timeout=10)
