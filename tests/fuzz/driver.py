"""The fuzz driver: hostile messages against the real stack as separate processes, checked after every batch.

One nats-server (with its monitoring port), the four services as processes and one probe worker run in a
scratch directory. An attacker connection (plain nats-py, no jetsched code) sends the seeded message stream in
batches; requests wait `request_timeout` for a reply. After each batch the driver checks (see `checks.py`) that
every process lives and is connected, that every request on an intake subject was answered, that a fresh
job submitted through the SDK `Client` still runs end to end, and that the logs gained no tracebacks. A
failed check is recorded with the batch (saved as JSON lines for `--replay`), the broken process is restarted
and the run goes on, so one run can find several kinds of failure. At the end every accepted job is judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

import nats
from nats import errors as nats_errors

from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.devkit.procs import Proc
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

from . import checks
from .messages import CONTROL_CAPABILITY, Message, Targets
from .report import Report, describe, dump
from .stream import generate

if TYPE_CHECKING:
    import random
    from pathlib import Path

    from nats.aio.client import Client as Nats

CLIENT_REFUSED = (nats_errors.MaxPayloadError, nats_errors.BadSubjectError, ValueError, UnicodeError)


class Fuzz:
    def __init__(self, work_dir: Path, seed: int, request_timeout: float = 5.0, in_flight: int = 256) -> None:
        self.work_dir = work_dir
        self.report = Report(seed)
        self.timeout = request_timeout
        self.gate = asyncio.Semaphore(in_flight)
        self.server = NatsServer(work_dir / "jetstream", monitor_port=free_port())
        self.fleet = Fleet("", work_dir)
        self.worker: Proc | None = None
        self.targets = Targets()
        self.touched: set[str] = set()
        self.logs = checks.LogScanner()
        self.batch = 0
        self._last_done = 0.0
        self._nc: Nats | None = None
        self._over: Nats | None = None
        self._client: Client | None = None

    @property
    def procs(self) -> list[Proc]:
        return self.fleet.services + self.fleet.workers

    async def __aenter__(self) -> Fuzz:
        try:
            return await self._start()
        except BaseException:
            await self.__aexit__()
            raise

    async def _start(self) -> Fuzz:
        self.server.start()
        self.fleet.url = self.server.url
        self.fleet.start_services()
        self.worker = self.fleet.worker("--concurrency", "4")
        self._client = Client(self.server.url, timeout=5)
        await self._client.connect()
        await eventually(self._answers, timeout=30, what="intake answering")
        await self._find_session()
        self._nc = await self._connect("fuzz-attacker")
        self._over = await self._connect("fuzz-oversize")
        self.targets.max_payload = self._nc.max_payload
        self.logs.scan(self.procs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in (self._nc, self._over):
            if conn is not None:
                await conn.close()
        if self._client is not None:
            await self._client.close()
        self.fleet.stop()
        self.server.stop()

    async def _connect(self, name: str) -> Nats:
        async def quiet(exc: Exception) -> None:
            self.report.attacker_errors[type(exc).__name__] += 1

        return await nats.connect(
            self.server.url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=quiet
        )

    async def _answers(self) -> bool:
        assert self._client is not None
        try:
            await self._client.list(limit=1)
        except Exception:
            return False
        return True

    async def _find_session(self, stale: str | None = None) -> None:
        assert self._client is not None

        async def session() -> str | None:
            assert self._client is not None
            try:
                workers = await self._client.workers()
            except Exception:  # intake may be the broken one right now
                return None
            for w in workers:
                if CONTROL_CAPABILITY in w.capabilities and not w.draining and w.session != stale:
                    return w.session
            return None

        self.targets.session = await eventually(session, timeout=30, what="the probe worker's session")

    def draw(self, rng: random.Random, skip: frozenset[str]) -> Message:
        """The next message whose family and attack layers are not in `skip`."""
        while True:
            message = generate(rng, self.targets)
            tags = {message.family, *message.attack, *(a.split(":")[0] for a in message.attack)}
            if not tags & skip:
                return message

    async def run(
        self, rng: random.Random, count: int, batch_size: int, skip: frozenset[str] = frozenset()
    ) -> Report:
        started = time.monotonic()
        sent = 0
        while sent < count:
            batch = [self.draw(rng, skip) for _ in range(min(batch_size, count - sent))]
            await self.fire(batch)
            sent += len(batch)
        self.report.seconds = time.monotonic() - started
        await self.final_check()
        return self.report

    async def fire(self, batch: list[Message]) -> list[str]:
        """Send one batch, then check; returns the failed checks (also recorded in the report)."""
        self.batch += 1
        started = self._last_done = time.monotonic()
        results = await asyncio.gather(*(self.send(m) for m in batch))
        sent = time.monotonic()
        self.report.busy_s += self._last_done - started
        unanswered = [m for m, answered in zip(batch, results, strict=True) if not answered]
        try:
            failures = await self.check(batch, unanswered)
        except Exception as exc:  # a check that cannot even run is a failure, not the end of the run
            failures = [f"check could not run: {exc!r}"[:300]]
        self.report.send_s += sent - started
        self.report.check_s += time.monotonic() - sent
        if failures:
            dump(batch, self.work_dir / f"batch-{self.batch}.jsonl", self.targets.session)
            self.report.failures += [f"batch {self.batch}: {f}" for f in failures]
        return failures

    async def send(self, message: Message) -> bool:
        """Send one message; False when a request that must be answered got no reply."""
        report = self.report
        report.sent[message.family] += 1
        report.attacks.update(message.attack)
        self.touched.update(message.touches)
        conn = self._over if message.size > self.targets.max_payload else self._nc
        assert conn is not None
        try:
            async with self.gate:
                if message.request:
                    # Bounded here too: an oversized request makes the server close the sending
                    # connection, and nats-py's own request can then wait on past its timeout for good
                    # (seed 11585 hung the slice so) — the client stuck, not a service.
                    reply = await asyncio.wait_for(
                        conn.request(message.subject, message.body, self.timeout, headers=message.headers),
                        self.timeout + 1,
                    )
                    self.learn(message, reply.data)
                else:
                    await conn.publish(message.subject, message.body, headers=message.headers)
            self._last_done = time.monotonic()
        except CLIENT_REFUSED as exc:
            report.client_refused[type(exc).__name__] += 1
        except (TimeoutError, nats_errors.NoRespondersError) as exc:
            if message.answered and message.size <= self.targets.max_payload:
                report.unanswered[f"{message.family} ({type(exc).__name__})"] += 1
                return False
            report.replies[f"none ({type(exc).__name__})"] += 1
        except nats_errors.Error as exc:
            report.client_refused[type(exc).__name__] += 1
        return True

    def learn(self, message: Message, data: bytes) -> None:
        """Count the reply's kind; remember accepted job ids and created schedules."""
        try:
            reply: Any = json.loads(data)
        except ValueError:
            self.report.replies["not JSON"] += 1
            self.report.failures.append(
                f"batch {self.batch}: reply is not JSON: {data[:200]!r} to {describe(message)}"
            )
            return
        if not isinstance(reply, dict):
            self.report.replies["not an object"] += 1
            return
        if isinstance(reply.get("error"), dict):
            self.report.replies[f"error:{reply['error'].get('code')}"] += 1
            return
        self.report.replies["ok"] += 1
        items = (
            reply.get("jobs") if message.family == "batch" else [reply] if message.family == "submit" else []
        )
        for item in items or []:
            if isinstance(item, dict) and "id" in item and "state" in item and not item.get("duplicate"):
                self.targets.job_ids.append(item["id"])
        schedule = reply.get("schedule")
        if message.family == "api.schedules.create" and isinstance(schedule, dict) and "id" in schedule:
            self.targets.schedule_ids.append(str(schedule["id"]))

    async def check(self, batch: list[Message], unanswered: list[Message]) -> list[str]:
        failures = [f"no reply: {describe(m)}" for m in unanswered[:5]]
        if len(unanswered) > 5:
            failures.append(f"… and {len(unanswered) - 5} more unanswered")
        worker_restarted = False
        for proc in self.procs:
            if not proc.alive():
                assert proc.popen is not None
                self.report.crashed[proc.name] += 1
                failures.append(f"{proc.name} exited with {proc.popen.returncode}")
                proc.start()
                worker_restarted |= proc in self.fleet.workers
        missing = await checks.missing_connections(self.server.monitor_port or 0)
        for name in missing:
            self.report.disconnected[name] += 1
            failures.append(f"{name} has no NATS connection (for good: restarted)")
            for proc in self.fleet.services:
                if f"jetsched-{proc.name}" == name:
                    proc.restart()
            if name == "jetsched-worker" and self.worker is not None:
                self.worker.restart()
                worker_restarted = True
        broken = await self.end_to_end()
        if broken:
            # Deaf but connected (alive, in /connz, answering nothing) is found only here: start afresh so
            # the rest of the run tests a working stack again.
            failures += [*broken, "restarted every service and the worker"]
            await self.restart_all()
        alarms = self.logs.scan(self.procs)
        self.report.log_alarms.update(alarms)
        failures += [f"log: {a[:300]}" for a in dict.fromkeys(alarms)][:5]
        if worker_restarted:
            await self._find_session(stale=self.targets.session)
        return failures

    async def restart_all(self) -> None:
        stale = self.targets.session
        for proc in self.procs:
            proc.restart()
        try:
            await eventually(self._answers, timeout=30, what="intake answering after a restart")
            await self._find_session(stale=stale)
        except TimeoutError as exc:
            self.report.failures.append(f"batch {self.batch}: the restarted stack did not come back: {exc}")

    async def end_to_end(self) -> list[str]:
        """A fresh job through the SDK must succeed; two more are left for the final verdict."""
        assert self._client is not None
        try:
            for _ in range(2):
                self.targets.control_ids.append((await self._client.submit(CONTROL_CAPABILITY, 0)).id)
            reply = await self._client.submit(CONTROL_CAPABILITY, 0)
            self.targets.control_ids.append(reply.id)
            record = await self._client.wait(reply.id, timeout=10)
        except Exception as exc:
            self.report.e2e_failures += 1
            return [f"end-to-end job failed: {exc!r}"[:300]]
        if record.state != "succeeded":
            self.report.e2e_failures += 1
            return [f"end-to-end job ended {record.state}: {record.errors}"[:300]]
        return []

    async def get(self, job_id: str) -> dict[str, Any] | None:
        assert self._nc is not None
        try:
            reply = await self._nc.request("jetsched.api.jobs.get", json.dumps({"id": job_id}).encode(), 5)
        except (TimeoutError, nats_errors.Error):
            return None
        try:
            answer: dict[str, Any] = json.loads(reply.data)
        except ValueError:
            return {"error": {"code": "not JSON", "message": reply.data[:100].decode(errors="replace")}}
        return answer

    async def final_check(self) -> None:
        """Judge every accepted job, after giving control jobs time to finish."""
        control = set(self.targets.control_ids)

        async def control_done() -> bool:
            answers = await asyncio.gather(*(self.get(j) for j in control))
            return all(a and (a.get("job") or {}).get("state") in checks.TERMINAL for a in answers)

        with contextlib.suppress(TimeoutError):
            await eventually(control_done, timeout=30, interval=0.5, what="control jobs finishing")
        ids = list(dict.fromkeys(self.targets.job_ids + self.targets.control_ids))
        self.report.accepted = len(ids)
        now_ms = int(time.time() * 1000)
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            answers = await asyncio.gather(*(self.get(j) for j in chunk))
            for job_id, answer in zip(chunk, answers, strict=True):
                checks.judge(
                    job_id, answer, now_ms, control=job_id in control, touched=job_id in self.touched,
                    verdict=self.report.verdict,
                )  # fmt: skip
        self.report.log_alarms.update(self.logs.scan(self.procs))
