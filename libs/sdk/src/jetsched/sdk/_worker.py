"""The worker runtime: receive claimed jobs, run handlers within the declared concurrency, report outcomes.

Protocol (docs/protocol.md, "Workers"): announce the session with heartbeats listing the jobs held; take
work from `jetsched.work.<capability>.<session>`; report each attempt durably to the outcomes stream
(`Nats-Msg-Id = <job>:<attempt>:<token>`, retried until stored: only the holder of the attempt's
token can name its report, so nobody can pre-empt it with junk under the same id) and only then forget the job. A job is
listed as held from receipt until its report is stored, so the reaper can tell a job that never arrived
from one that finished.

Never more than `concurrency`: a work message beyond the free slots (two dispatchers racing) or arriving
while draining is handed back at once (`released`, no attempt used). Never more held than a heartbeat may
list (`max_listed`): held jobs whose reports cannot be stored yet (the outcomes stream failing over, full)
would otherwise pile up while new work arrives; a work message beyond that is dropped unheld, and the
reaper gives it back without using an attempt once the heartbeats do not list it (a lost work message).
Heartbeats go out whatever happens to one of them. On SIGTERM the worker drains: it announces
`draining`, finishes what it holds within `drain_timeout`, hands back the rest, then exits — except a
plain `def` handler still running in its thread, which cannot be stopped: it is not reported at all (a
`released` would let it run elsewhere while it runs on here), and the reaper rescues it as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
from nats.errors import Error as NatsError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from jetsched.bus import health, instruments, tracing
from jetsched.bus.actors import cancel_all
from jetsched.bus.config import DEFAULT_NATS_URL
from jetsched.bus.connect import connect, unless_lost
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.direct import parse_headers
from jetsched.bus.retry import Backoff, retry
from jetsched.core import subjects
from jetsched.core.clock import LocalClock, SystemClock
from jetsched.core.ids import new_ulid
from jetsched.core.models import (
    Control,
    Heartbeat,
    Outcome,
    OutcomeError,
    OutcomeStatus,
    WorkMessage,
    max_listed,
)
from jetsched.core.permissions import WORKER_NAME_RE
from jetsched.core.states import result_problem

from ._errors import Fatal, Retry, SessionConflict
from ._middleware import Middleware, chained
from ._progress import ProgressSender
from ._tasks import Handler, Job, Tasks, default_tasks

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from nats.aio.msg import Msg

    from jetsched.bus.auth import NatsAuth
    from jetsched.bus.direct import Connection

log = logging.getLogger("jetsched.worker")

#: Waits between tries to store an outcome (until it is stored: the job must not run again for nothing).
REPORT_BACKOFF = Backoff(0.05, 2.0)


class Worker:
    """Runs the handlers of `tasks` for every capability they register.

    Args:
        tasks: the registry to run (default: everything decorated with `@task`).
        nats_url: comma-separated NATS URLs.
        concurrency: jobs run at once, at most.
        labels: free-form `key=value` tags announced with the session.
        heartbeat_ms: heartbeat interval; the session is presumed lost after about three missed beats.
        drain_timeout: seconds to finish held jobs on shutdown before handing them back (a plain `def`
            handler still running then is not handed back: its thread cannot be stopped; docs/sdk.md).
        name: this process's name in heartbeats (default host-pid).
        session: the session id: a worker identity's name under `jetsched security` (its permissions
            allow only that session's subjects); default a fresh id per start.
        auth: credentials and TLS (default: anonymous, plain; see docs/security.md).
        http_port: serve `/healthz` and `/readyz` (ready while connected and taking work) on this port,
            for probes; 0 picks a free one (`http_port` then names it); None (default): not served.
        middleware: hooks around every handler run (`Middleware.run`), the first outermost.

    Raises:
        SessionConflict: from `run()`, when another process heartbeats under the same session.
    """

    def __init__(
        self,
        tasks: Tasks | None = None,
        *,
        nats_url: str = DEFAULT_NATS_URL,
        concurrency: int = 10,
        labels: dict[str, str] | None = None,
        heartbeat_ms: int = 500,
        drain_timeout: float = 30.0,
        name: str | None = None,
        session: str | None = None,
        auth: NatsAuth | None = None,
        http_port: int | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.tasks = tasks or default_tasks
        self.middleware = tuple(middleware)
        if not self.tasks.handlers:
            raise ValueError("no handlers registered: decorate functions with @task('capability')")
        self.nats_url = nats_url
        self.concurrency = concurrency
        self.labels = labels or {}
        self.heartbeat_ms = heartbeat_ms
        self.drain_timeout = drain_timeout
        self.worker = name or f"{socket.gethostname()}-{os.getpid()}"
        if session is not None and not WORKER_NAME_RE.match(session):
            raise ValueError(f"session {session!r}: use 1-63 of a-z 0-9 - (no dots)")
        #: Unique per process start; also the session id unless one is given.
        self.incarnation = new_ulid(SystemClock().now_ms()).lower()
        self.session = session or self.incarnation
        self._named = session is not None
        #: Set once the worker takes work (after hearing out a named session).
        self.started = asyncio.Event()
        self.auth = auth
        self._http_port = http_port
        #: The port /healthz and /readyz listen on, once they do (`http_port`; 0 picks a free one).
        self.http_port: int | None = None
        #: What heartbeats, heartbeat timeouts and report retries wait on (a test may put a `FakeClock`).
        self.clock: LocalClock = SystemClock()
        self.held: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: Attempts whose handler is running: what `concurrency` bounds (a held attempt may be past its
        #: handler, waiting for its outcome to be stored; that takes no slot).
        self.executing: set[tuple[str, int]] = set()
        self.draining = False
        self.executed = 0
        self._cancelled: set[tuple[str, int]] = set()
        #: Attempts whose `def` handler was interrupted while its thread runs on (it cannot be stopped).
        self._in_thread: set[tuple[str, int]] = set()
        #: Why the latest heartbeat was not sent, while they fail (logged once per run of failures).
        self._beat_failing: str | None = None
        self._stop = asyncio.Event()
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="jetsched-job")
        self._nc: Connection | None = None
        self._conflict: str | None = None

    def stop(self) -> None:
        """Begin a graceful drain (what SIGTERM does)."""
        self._stop.set()

    async def run(self, install_signal_handlers: bool = False) -> None:
        """Run until `stop()` (or SIGTERM/SIGINT when `install_signal_handlers`), then drain.

        Raises:
            ConnectionLost: NATS closed the connection for good; the jobs in hand were abandoned (they are
                rescued elsewhere once this session's heartbeats stop).
        """
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        checks = {"/healthz": lambda: health.liveness(self._nc), "/readyz": self._ready}
        async with health.endpoints(self._http_port, checks) as self.http_port:
            await self._connected()
        if self._conflict is not None:
            raise SessionConflict(self._conflict)

    async def _connected(self) -> None:
        """Connect, serve until stopped, then drain and close (the health endpoints, if any, stay up)."""
        try:
            nc = await connect(self.nats_url, f"jetsched-worker-{self.worker}", self.auth, until=self._stop)
            if nc is None:
                log.info("worker stopped before connecting", extra={"session": self.session})
                return
            self._nc = nc
            try:
                await unless_lost(nc, self._serve(nc))
            finally:
                # Only a lost connection leaves jobs held: their reports can never be stored.
                await cancel_all(list(self.held.values()))
                with contextlib.suppress(NatsError):
                    await nc.drain()
            log.info("worker stopped", extra={"session": self.session, "executed": self.executed})
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)

    def _ready(self) -> tuple[bool, str]:
        """Ready while it takes work: connected, started, not draining."""
        if self._nc is None or not self._nc.is_connected:
            return False, "not connected to NATS"
        if self.draining:
            return False, "draining"
        return (True, "ready") if self.started.is_set() else (False, "starting")

    async def _serve(self, nc: Connection) -> None:
        # Listening to its own session first: a second process with this identity shows itself. A named
        # session (an identity) may be held by a live process, which beats every interval: hear three out
        # before taking work, so the newcomer stops and the incumbent keeps running.
        own = await nc.subscribe(subjects.heartbeat(self.session), cb=self._on_own_heartbeat)
        if self._named:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 3 * self.heartbeat_ms / 1000)
        if self._conflict is not None:
            return
        subscriptions = [own]
        subscriptions += [
            (await nc.subscribe_direct(subjects.work(capability, self.session), self._on_work)).sub
            for capability in self.tasks.handlers
        ]
        subscriptions.append(await nc.subscribe(subjects.control(self.session), cb=self._on_control))
        beats = asyncio.create_task(self._heartbeats())
        self.started.set()
        log.info(
            "worker started",
            extra={
                "session": self.session,
                "capabilities": sorted(self.tasks.handlers),
                "concurrency": self.concurrency,
            },
        )
        try:
            await self._stop.wait()
            self.draining = True
            await self._beat_once()
            await self._drain()
        finally:
            beats.cancel()
            for sub in subscriptions:
                with contextlib.suppress(NatsError):
                    await sub.unsubscribe()

    async def _drain(self) -> None:
        tasks = list(self.held.values())
        if tasks:
            log.info("draining", extra={"held": len(tasks), "timeout_s": self.drain_timeout})
            _, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(
            worker=self.worker,
            session=self.session,
            capabilities=tuple(self.tasks.handlers),
            labels=self.labels,
            concurrency=self.concurrency,
            running=tuple(self.held),
            draining=self.draining,
            interval_ms=self.heartbeat_ms,
            incarnation=self.incarnation,
        )

    async def _beat(self) -> None:
        assert self._nc is not None
        await self._nc.publish(subjects.heartbeat(self.session), self._heartbeat().model_dump_json().encode())

    async def _beat_once(self) -> None:
        """Send a heartbeat; a failure is logged (once per run of them), never raised: the heartbeats
        must go on, and a drain must not be skipped, whatever one of them ran into."""
        try:
            await self._beat()
        except NatsError:
            return  # the connection's trouble: reconnecting, or lost (then `unless_lost` ends the worker)
        except Exception as exc:
            if self._beat_failing is None:
                log.exception("heartbeat not sent", extra={"session": self.session, "held": len(self.held)})
            self._beat_failing = repr(exc)
            return
        if self._beat_failing is not None:
            log.info("heartbeats sent again", extra={"session": self.session, "failed": self._beat_failing})
            self._beat_failing = None

    async def _heartbeats(self) -> None:
        while True:
            await self._beat_once()
            await self.clock.sleep(self.heartbeat_ms / 1000)

    def _on_work(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        try:
            work = WorkMessage.model_validate_json(data)
        except ValidationError:
            log.warning("malformed work message dropped", extra={"subject": subject.decode(errors="replace")})
            return
        if subject.decode(errors="replace") != subjects.work(work.capability, self.session):
            # Its report would go to a subject no stream takes, and be retried for ever.
            log.warning("work message for another capability dropped", extra={"job": work.id})
            return
        key = (work.id, work.attempt)
        if key in self.held:
            return  # the same attempt sent twice: it is already running here
        if len(self.held) >= max_listed(self.concurrency):
            # Even a hand-back is held until its report is stored, and the heartbeats could not list more.
            # Unlisted and unreported, the job is given back by the reaper without using an attempt.
            log.warning(
                "work message dropped: holding as many jobs as a heartbeat may list (reports not stored)",
                extra={"job": work.id, "attempt": work.attempt, "held": len(self.held)},
            )
            return
        handler = self.tasks.handlers.get(work.capability)
        if handler is None or self.draining or len(self.executing) >= self.concurrency:
            handler = None  # hand it back unrun: reported `released`, no attempt used
        else:
            self.executing.add(key)
        self.held[key] = task = asyncio.create_task(self._execute(work, handler, parse_headers(headers)))
        task.add_done_callback(lambda _: self.held.pop(key, None))

    async def _on_own_heartbeat(self, msg: Msg) -> None:
        """Two processes under one session would both receive its work and fence each other's reports."""
        try:
            other = Heartbeat.model_validate_json(msg.data)
        except ValidationError:
            return
        if other.incarnation not in (None, self.incarnation) and self._conflict is None:
            self._conflict = (
                f"worker {other.worker!r} is already running as session {self.session!r}; stopping"
            )
            log.error(self._conflict)
            self.stop()

    async def _on_control(self, msg: Msg) -> None:
        try:
            control = Control.model_validate_json(msg.data)
        except ValidationError:
            return
        if control.op == "drain":
            log.info("drain requested: taking no new work, exiting when idle")
            self.stop()
            return
        key = (control.id, control.attempt)
        task = self.held.get(key)
        if task is not None:
            log.info("cancelling job", extra={"job": control.id, "attempt": control.attempt})
            self._cancelled.add(key)
            task.cancel()

    async def _execute(
        self, work: WorkMessage, handler: Handler | None, headers: dict[str, str] | None
    ) -> None:
        key = (work.id, work.attempt)
        attributes: dict[str, str | int] = {
            "jetsched.job_id": work.id,
            "jetsched.attempt": work.attempt,
            "jetsched.capability": work.capability,
            **tracing.messaging("process", subjects.work(work.capability, self.session), work.id),
        }
        with tracing.span(f"jetsched run {work.capability}", headers, SpanKind.CONSUMER, attributes) as hdrs:
            crashpoint("worker.received")
            log.info(
                "job started", extra={"job": work.id, "capability": work.capability, "attempt": work.attempt}
            )
            began = time.perf_counter()
            assert self._nc is not None
            progress = ProgressSender(self._nc, work, self.clock)
            try:
                outcome = await self._call(work, handler, progress)
            finally:
                self.executing.discard(key)
            await progress.finish()
            if outcome is None:  # interrupted, its thread running on
                extra = {"job": work.id, "capability": work.capability, "attempt": work.attempt}
                if key in self._cancelled:
                    self._cancelled.discard(key)
                    log.info("job cancelled; its handler's thread runs on", extra=extra)
                else:
                    log.warning("job left running in its thread, not reported: rescued as lost", extra=extra)
                return
            instruments.handler_time.record(
                time.perf_counter() - began, {"capability": work.capability, "outcome": outcome.status.value}
            )
            tracing.outcome_status(outcome.status.value, outcome.error.message if outcome.error else "")
            _log_outcome(work, outcome, time.perf_counter() - began)
            crashpoint("worker.after_run")
            if key in self._cancelled:
                self._cancelled.discard(key)
                return  # cancelled through the API: the record is already final
            await self._report(work, outcome, hdrs)
            crashpoint("worker.after_report")

    async def _call(
        self, work: WorkMessage, handler: Handler | None, progress: ProgressSender
    ) -> Outcome | None:
        """The attempt's outcome; None for a `def` handler interrupted (the drain timeout, a cancel) while
        its thread runs on: no outcome may be reported for a handler still running."""
        key = (work.id, work.attempt)
        try:
            return await self._outcome_of(work, handler, progress)
        finally:
            self._in_thread.discard(key)

    async def _outcome_of(
        self, work: WorkMessage, handler: Handler | None, progress: ProgressSender
    ) -> Outcome | None:
        clock = self.clock
        beats = [clock.now()]
        job = Job(
            work.id,
            work.attempt,
            work.capability,
            work.payload,
            work.priority,
            work.created_at_ms,
            lambda: beats.__setitem__(0, clock.now()),
            parents=work.parents or {},
            item=work.item,
            _on_progress=progress.report,
        )
        fields: dict[str, Any] = {}
        if handler is None:
            return self._outcome(work, OutcomeStatus.RELEASED, {})
        try:
            self.executed += 1
            async with asyncio.timeout(work.timeout_s):
                running = chained([m.run for m in self.middleware], self._invoker(handler))(job)
                if work.heartbeat_timeout_s is None:
                    result = await running
                else:
                    result = await _watch(running, work.heartbeat_timeout_s, beats, clock)
            problem = result_problem(result)
            if problem is not None:
                raise ValueError(problem)
            status, fields["result"] = OutcomeStatus.SUCCEEDED, result
        except asyncio.CancelledError:
            # Drain timeout or an API cancel interrupted the handler; the report still goes out.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if (work.id, work.attempt) in self._in_thread:
                return None  # `released` would run it elsewhere while it runs on here
            status = OutcomeStatus.RELEASED
        except _NoHeartbeat as exc:
            status, fields["error"] = (
                OutcomeStatus.TIMEOUT,
                OutcomeError(type="HeartbeatTimeout", message=str(exc)),
            )
        except TimeoutError:
            status = OutcomeStatus.TIMEOUT
            fields["error"] = OutcomeError(
                type="TimeoutError", message=f"ran past its timeout of {work.timeout_s}s"
            )
        except Retry as exc:
            fields["retry_delay_ms"] = round(exc.delay * 1000)
            if exc.spend_attempt:
                status, fields["error"] = OutcomeStatus.RETRY, _error(exc)
            else:
                status = OutcomeStatus.SNOOZED
        except Fatal as exc:
            status, fields["error"] = OutcomeStatus.FATAL, _error(exc)
        except Exception as exc:
            status, fields["error"] = OutcomeStatus.FAILED, _error(exc)
        return self._outcome(work, status, fields)

    def _invoker(self, handler: Handler) -> Callable[[Job], Awaitable[Any]]:
        """The innermost call of the middleware chain: the handler, a plain `def` in a worker thread."""
        if inspect.iscoroutinefunction(handler):
            return handler

        async def in_thread(job: Job) -> Any:
            running = self._threads.submit(handler, job)
            try:
                return await asyncio.wrap_future(running)
            except asyncio.CancelledError:
                if running.cancel():
                    raise  # it never started
                if running.done():
                    return running.result()  # it returned as it was interrupted: report what it did
                self._in_thread.add((job.id, job.attempt))  # a thread cannot be stopped: it runs on
                raise

        return in_thread

    def _outcome(self, work: WorkMessage, status: OutcomeStatus, fields: dict[str, Any]) -> Outcome:
        return Outcome(
            id=work.id,
            attempt=work.attempt,
            token=work.token,
            session=self.session,
            status=status,
            finished_at_ms=self.clock.now_ms(),
            **fields,
        )

    async def _report(self, work: WorkMessage, outcome: Outcome, headers: dict[str, str]) -> None:
        """Publish the outcome until JetStream has stored it (deduplicated by job:attempt)."""
        headers = {**headers, "Nats-Msg-Id": f"{work.id}:{work.attempt}:{work.token}"}
        subject = subjects.outcome(work.capability, work.id)
        body = outcome.model_dump_json(exclude_none=True).encode()
        nc = self._nc
        assert nc is not None

        async def store() -> None:
            reply, _ = await nc.request_raw(subject, body, 5.0, headers)
            ack = orjson.loads(reply)
            if "error" in ack:
                raise NatsError(f"outcome not stored: {ack['error'].get('description')}")

        def waiting(exc: BaseException, _: float) -> None:
            log.warning("outcome not stored yet; retrying", extra={"job": work.id, "error": repr(exc)})

        await retry(
            store, on=(NatsError, TimeoutError), backoff=REPORT_BACKOFF, on_retry=waiting, clock=self.clock
        )


class _NoHeartbeat(Exception):
    """The handler stopped calling `job.heartbeat()`."""


async def _watch(running: Awaitable[Any], timeout_s: float, beats: list[float], clock: LocalClock) -> Any:
    """Await the handler, cancelling it if `beats[0]` (its last heartbeat on `clock`) grows older than
    `timeout_s`."""
    task = asyncio.ensure_future(running)
    try:
        while True:
            remaining = beats[0] + timeout_s - clock.now()
            if remaining <= 0:
                task.cancel()
                raise _NoHeartbeat(f"no heartbeat for {timeout_s}s")
            waiting = asyncio.ensure_future(clock.sleep(remaining))
            try:
                await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if task.done():
                return task.result()
    except asyncio.CancelledError:
        task.cancel()
        raise


#: How loudly each outcome is logged: a failure that will be retried is a warning, a job given up on
#: (fatal) an error; the traceback goes with them.
_LEVELS = {
    OutcomeStatus.SUCCEEDED: logging.INFO,
    OutcomeStatus.RELEASED: logging.INFO,
    OutcomeStatus.RETRY: logging.INFO,
    OutcomeStatus.SNOOZED: logging.INFO,
    OutcomeStatus.FAILED: logging.WARNING,
    OutcomeStatus.TIMEOUT: logging.WARNING,
    OutcomeStatus.FATAL: logging.ERROR,
}


def _log_outcome(work: WorkMessage, outcome: Outcome, seconds: float) -> None:
    """One line per finished attempt: what ran, how it ended, how long it took, and why if it failed."""
    extra: dict[str, object] = {
        "job": work.id,
        "capability": work.capability,
        "attempt": work.attempt,
        "outcome": outcome.status.value,
        "duration_s": round(seconds, 3),
    }
    if outcome.error is not None:
        extra["error"] = f"{outcome.error.type}: {outcome.error.message}"
        if outcome.error.traceback and outcome.status is not OutcomeStatus.RETRY:
            extra["traceback"] = outcome.error.traceback
    log.log(_LEVELS.get(outcome.status, logging.WARNING), f"job {outcome.status.value}", extra=extra)


def _error(exc: BaseException) -> OutcomeError:
    trace.get_current_span().record_exception(exc)  # the run span's exception event
    return OutcomeError(
        type=type(exc).__name__,
        message=str(exc)[:2000],
        traceback="".join(traceback.format_exception(exc))[-4000:],
    )
