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
import base64
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
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
from .stream import generate

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable
    from pathlib import Path

    from nats.aio.client import Client as Nats

CLIENT_REFUSED = (nats_errors.MaxPayloadError, nats_errors.BadSubjectError, ValueError, UnicodeError)


@dataclass
class Report:
    seed: int
    sent: Counter[str] = field(default_factory=Counter)
    attacks: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)
    client_refused: Counter[str] = field(default_factory=Counter)
    #: Errors on the attacker's own connections (the server closing one that sent too much).
    attacker_errors: Counter[str] = field(default_factory=Counter)
    crashed: Counter[str] = field(default_factory=Counter)
    disconnected: Counter[str] = field(default_factory=Counter)
    log_alarms: Counter[str] = field(default_factory=Counter)
    e2e_failures: int = 0
    accepted: int = 0
    verdict: checks.Verdict = field(default_factory=checks.Verdict)
    #: One line per failed check: batch, what, a sample message.
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Wall time spent sending (waiting for replies included) and checking.
    send_s: float = 0.0
    check_s: float = 0.0
    #: Sending time up to each batch's last delivered message: what the run would take if every request
    #: were answered (the waits for replies that never come are the rest of `send_s`).
    busy_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.failures or self.verdict.lost)

    def lines(self) -> list[str]:
        total = sum(self.sent.values())
        rate = total / self.seconds if self.seconds else 0.0
        lost = Counter(why.split(":")[0][:60] for why in self.verdict.lost.values())
        return [
            f"seed                 {self.seed}",
            f"messages sent        {total} in {self.seconds:.1f}s ({rate:.0f}/s; sending {self.send_s:.1f}s, "
            f"checks {self.check_s:.1f}s; {total / max(self.busy_s, 1e-9):.0f}/s while answered)",
            *(f"  {family:<22} {n}" for family, n in sorted(self.sent.items())),
            f"attack layers        {dict(sorted(self.attacks.items()))}",
            f"replies              {dict(sorted(self.replies.items()))}",
            f"unanswered requests  {sum(self.unanswered.values())}  {dict(self.unanswered)}",
            f"refused by client    {dict(self.client_refused)}  attacker conn errors {dict(self.attacker_errors)}",
            f"crashed services     {dict(self.crashed)}",
            f"disconnected         {dict(self.disconnected)}",
            f"end-to-end failures  {self.e2e_failures}",
            f"log alarms           {sum(self.log_alarms.values())}",
            *(f"  {n:>5} × {line[:220]}" for line, n in self.log_alarms.most_common(15)),
            f"accepted jobs        {self.accepted}  fine: {dict(self.verdict.ok)}",
            f"lost jobs            {len(self.verdict.lost)}  {dict(lost)}",
            *(f"  {job}: {why[:200]}" for job, why in list(self.verdict.lost.items())[:10]),
            f"failed checks        {len(self.failures)}",
            *(f"  {line[:400]}" for line in self.failures[:40]),
        ]


def describe(message: Message, limit: int = 300) -> str:
    headers = {k: (v if len(v) < 80 else f"<{len(v)} bytes>") for k, v in (message.headers or {}).items()}
    if len(headers) > 6:
        headers = {"<headers>": str(len(headers))}
    body = message.body[:limit].decode(errors="backslashreplace")
    more = f"…<{len(message.body)} bytes>" if len(message.body) > limit else ""
    return f"{message.subject[:120]} {headers} {body}{more}"


def dump(messages: Iterable[Message], path: Path, session: str | None = None) -> None:
    """Save messages as JSON lines; the live worker's session becomes `{session}` for `--replay`."""
    live = session or "\x00"
    with path.open("w") as out:
        for m in messages:
            row = {
                "family": m.family,
                "subject": m.subject.replace(live, "{session}"),
                "headers": m.headers,
                "body": base64.b64encode(m.body.replace(live.encode(), b"{session}")).decode(),
                "request": m.request,
                "attack": m.attack,
            }
            out.write(json.dumps(row) + "\n")


def load(path: Path) -> list[Message]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [
        Message(
            r["family"],
            r["subject"],
            base64.b64decode(r["body"]),
            r["headers"],
            r["request"],
            tuple(r["attack"]),
        )
        for r in rows
    ]


class Fuzz:
    def __init__(self, work_dir: Path, seed: int, request_timeout: float = 1.5, in_flight: int = 256) -> None:
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
        self._client = Client(self.server.url, timeout=10)
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
                if CONTROL_CAPABILITY in w["capabilities"] and not w["draining"] and w["session"] != stale:
                    return str(w["session"])
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
                    reply = await conn.request(
                        message.subject, message.body, self.timeout, headers=message.headers
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
        failures += await self.end_to_end()
        alarms = self.logs.scan(self.procs)
        self.report.log_alarms.update(alarms)
        failures += [f"log: {a[:300]}" for a in dict.fromkeys(alarms)][:5]
        if worker_restarted:
            await self._find_session(stale=self.targets.session)
        return failures

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
        if record["state"] != "succeeded":
            self.report.e2e_failures += 1
            return [f"end-to-end job ended {record['state']}: {record.get('errors')}"[:300]]
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
