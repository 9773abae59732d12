"""The client: submit jobs and use the control API over plain NATS request/reply."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

import orjson
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError

from jetsched.bus import telemetry
from jetsched.bus.config import DEFAULT_NATS_URL
from jetsched.bus.connect import connect
from jetsched.bus.retry import Backoff, retry
from jetsched.core import subjects
from jetsched.core.models import SubmitReply

from ._errors import JetschedApiError
from ._handle import JobHandle
from ._middleware import Middleware, Submit, Tracing, chained
from ._models import (
    Draining,
    JobChange,
    JobInfo,
    JobPage,
    QueueConfig,
    ScheduleInfo,
    SchedulePreview,
    Stats,
    WorkerInfo,
    WorkflowChange,
    WorkflowInfo,
    WorkflowPage,
    WorkflowReply,
)
from ._workflows import Steps, workflow_body

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime
    from types import TracebackType

    from nats.aio.msg import Msg

    from jetsched.bus.auth import NatsAuth
    from jetsched.bus.direct import Connection

#: Resending a request nobody received: soon and evenly (intake restarting takes a moment).
NOBODY_BACKOFF = Backoff(0.05, 0.05)


class Client:
    """Talks to jetsched's intake. Use as `async with Client(url) as client:`.

    Args:
        nats_url: comma-separated NATS URLs.
        timeout: seconds to wait for each reply.
        auth: credentials and TLS (default: anonymous, plain; see docs/security.md).
        middleware: hooks around every submit (`Middleware.submit`), the first outermost; the client's
            tracing (`Tracing`) always wraps them.
    """

    #: How long a keyed submit is resent through a storage failover before its error is raised.
    keyed_retry_s = 30.0

    def __init__(
        self,
        nats_url: str = DEFAULT_NATS_URL,
        timeout: float = 5.0,
        auth: NatsAuth | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.nats_url = nats_url
        self.timeout = timeout
        self.auth = auth
        self.middleware = (Tracing(), *middleware)
        #: A submit request through every middleware's `submit` hook, then onto the wire.
        self._submit = chained([m.submit for m in self.middleware], self._sent)
        self._nc: Connection | None = None

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, trying for up to `timeout` seconds; `Unreachable` (a `TimeoutError`) names the URL."""
        if self._nc is None:
            # OpenTelemetry from the OTEL_* variables, unless the application installed its own.
            telemetry.setup("jetsched-client", prometheus=False)
            # Reconnects go on forever once connected; the first connection must not wait forever.
            self._nc = await connect(self.nats_url, "jetsched-client", self.auth, timeout=self.timeout)
            _open.append(self)

    async def close(self) -> None:
        if self._nc is not None:
            _open.remove(self)
            await self._nc.drain()
            self._nc = None

    async def request(self, subject: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """Send one request; return the decoded reply or raise `JetschedApiError`."""
        data, _ = await self._request(subject, body, headers)
        return _decoded(data)

    async def _request(
        self, subject: str, body: dict[str, Any], headers: dict[str, str] | None
    ) -> tuple[bytes, bytes]:
        """The reply's body and the tokens appended to the reply subject (`Connection.request_routed`)."""
        assert self._nc is not None, "use `async with Client(...)` or call connect() first"
        nc = self._nc
        payload = orjson.dumps(body)
        try:
            data, _, tail = await nc.request_routed(subject, payload, self.timeout, headers)
        except NoRespondersError:
            # Nobody received it, so resending is safe (unlike after a timeout): intake may be restarting.
            data, _, tail = await retry(
                lambda: nc.request_routed(subject, payload, self.timeout, headers),
                on=NoRespondersError,
                backoff=NOBODY_BACKOFF,
                within_s=self.timeout,
            )
        return data, tail

    async def submit(
        self, capability: str, payload: Any = None, *, key: str | None = None, **options: Unpack[JobOptions]
    ) -> JobHandle[Any]:
        """Submit a job; returns once it is stored: a handle with `id`, `state`, `duplicate` and `result()`.

        Args:
            capability: which workers may run it.
            payload: any JSON value, handed to the handler as `job.payload`.
            priority: 0-9, higher runs first (default 5).
            delay: seconds to wait before it may start; or `run_at`, an aware datetime.
            key: idempotency key: a second submit with the same key returns the first job.
            max_attempts: attempts before the job is dead (default 5).
            timeout: seconds one attempt may run (default 300).
            heartbeat_timeout: seconds an attempt may go without `job.heartbeat()` before it times out.
            expires_in: seconds after its due time by which the first attempt must start, or the job dies.
            labels: only workers announcing all of these labels may run it.
            concurrency_key: jobs sharing it (e.g. "tenant=acme") are limited and take turns together.
            backoff: `{"base_ms", "factor", "max_ms", "jitter"}` for retries.

        A keyed submit that meets a storage failover (`unavailable`, a timeout, nobody answering) is
        resent until it is stored, for up to `keyed_retry_s` seconds: the key makes that safe. Without a
        key the error is raised, since a timed-out submit may have been stored.
        """
        call = Submit("job", capability, subjects.submit(capability), _submit_body(payload, key, options))
        if key is None:
            return self._handle(await self._submit(call))
        return self._handle(await self._keyed(call))

    async def _keyed(self, call: Submit) -> Any:
        """Submit a keyed call, resent through a storage failover for up to `keyed_retry_s`: the key
        makes a resend safe even after a timeout (the first may have been stored)."""
        return await retry(
            lambda: self._submit(call),
            on=(JetschedApiError, TimeoutError, NoRespondersError),
            unless=lambda exc: isinstance(exc, JetschedApiError) and exc.code != "unavailable",
            within_s=self.keyed_retry_s,
        )

    async def submit_many(
        self,
        capability: str,
        payloads: Sequence[Any],
        *,
        keys: Sequence[str] | None = None,
        **options: Unpack[JobOptions],
    ) -> list[JobHandle[Any] | JetschedApiError]:
        """Submit up to 1,000 jobs of one capability in one request; returns once all are stored.

        Each payload becomes one job with the options given (as for `submit`); `keys`, if given, holds an
        idempotency key per payload. Returns, in order, each job's handle or the error that job alone got
        (the others are stored regardless); resubmitting failed items with their keys is safe.
        """
        if keys is not None and len(keys) != len(payloads):
            raise ValueError(f"{len(keys)} keys for {len(payloads)} payloads")
        jobs = [
            _submit_body(payload, None if keys is None else keys[n], options)
            for n, payload in enumerate(payloads)
        ]
        data = await self._submit(Submit("batch", capability, subjects.batch(capability), {"jobs": jobs}))
        return [
            JetschedApiError.from_body(item["error"]) if "error" in item else self._handle(item)
            for item in data["jobs"]
        ]

    def _handle(self, reply: Any) -> JobHandle[Any]:
        return JobHandle(self, SubmitReply.model_validate(reply))

    async def _sent(self, call: Submit) -> Any:
        if call.kind != "job" or "key" in call.body:
            return await self.request(call.subject, call.body, call.headers or None)
        # Without a key, the reply may be JetStream's ack of the stored record (docs/protocol.md).
        headers = {**call.headers, subjects.REPLY_HEADER: subjects.REPLY_BY_STORE}
        data, tail = await self._request(call.subject, call.body, headers)
        return _decoded(data) if not tail else _stored(orjson.loads(data), tail)

    async def submit_workflow(
        self,
        steps: Steps | Sequence[Steps],
        *,
        key: str | None = None,
        on_failure: Literal["fail_fast", "continue"] | None = None,
    ) -> WorkflowReply:
        """Submit a workflow (a DAG of steps, see `step`, `chain`, `group`, `chord`); returns once every
        step is stored, with its `id`, `state`, `steps` (each step's job id by name) and `duplicate`.

        Args:
            steps: the steps, e.g. `chain(step("a", "cap.a"), step("b", "cap.b"))`; a sequence is a group.
            key: idempotency key: a second submit with it returns the first workflow (`duplicate`).
            on_failure: `fail_fast` (default: a dead step cancels what has not started) or `continue`
                (only its descendants are cancelled).

        A keyed submit is resent through a storage failover for up to `keyed_retry_s`, as `submit` does.
        """
        call = Submit("workflow", "workflow", subjects.WORKFLOW_SUBMIT, workflow_body(steps, key, on_failure))
        return WorkflowReply.model_validate(await (self._submit(call) if key is None else self._keyed(call)))

    async def workflow(self, workflow_id: str) -> WorkflowInfo:
        """The workflow with each step's job: state, attempt, timing, last error and result.

        Raises:
            JetschedApiError: `not_found`.
        """
        return WorkflowInfo.from_reply(await self.request(subjects.api("workflows.get"), {"id": workflow_id}))

    async def workflows(
        self, state: str | None = None, limit: int = 100, after: str | None = None
    ) -> WorkflowPage:
        """A page of workflows (`id`, `state`) in id (submission) order; pass its `next` as `after`."""
        body = {"state": state, "limit": limit, "after": after}
        return WorkflowPage.model_validate(
            await self.request(
                subjects.api("workflows.list"), {k: v for k, v in body.items() if v is not None}
            )
        )

    async def cancel_workflow(self, workflow_id: str) -> WorkflowChange:
        """Cancel the steps not started and stop the running ones; the workflow ends `cancelled`."""
        return WorkflowChange.model_validate(
            await self.request(subjects.api("workflows.cancel"), {"id": workflow_id})
        )

    async def retry_workflow(self, workflow_id: str) -> WorkflowChange:
        """Re-run a failed (or cancelled) workflow from the steps that did not succeed (`retried`)."""
        return WorkflowChange.model_validate(
            await self.request(subjects.api("workflows.retry"), {"id": workflow_id})
        )

    async def get(self, job_id: str) -> JobInfo:
        """The job's record, with its last error and why it waits (if it does).

        Raises:
            JetschedApiError: `not_found` (never submitted, purged, or expired after the retention).
        """
        return JobInfo.from_reply(await self.request(subjects.api("jobs.get"), {"id": job_id}))

    async def list(
        self,
        state: str | None = None,
        capability: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> JobPage:
        """A page of jobs in id (submission) order; pass its `next` as `after` for the next page."""
        body = {"state": state, "capability": capability, "limit": limit, "after": after}
        return JobPage.model_validate(
            await self.request(subjects.api("jobs.list"), {k: v for k, v in body.items() if v is not None})
        )

    async def stats(self) -> Stats:
        """Job counts by state (all, and per capability), the worker fleet, and each capability's
        scaling signals (`queues`)."""
        return Stats.model_validate(await self.request(subjects.api("stats"), {}))

    async def pause(self, capability: str, paused: bool = True) -> QueueConfig:
        """Pause (or with `paused=False` resume) dispatching a capability; queued jobs wait, running finish."""
        verb = "queues.pause" if paused else "queues.resume"
        return QueueConfig.model_validate(await self.request(subjects.api(verb), {"capability": capability}))

    async def configure_queue(self, /, capability: str, **settings: Any) -> QueueConfig:
        """Set a capability's queue settings: `max_running`, `max_running_per_key`, `rate_per_s`,
        `rate_per_key_per_s`, `burst`, `paused` (unset ones go back to their defaults)."""
        body = {"capability": capability, **settings}
        return QueueConfig.model_validate(await self.request(subjects.api("queues.configure"), body))

    async def workers(self) -> builtins.list[WorkerInfo]:  # `list` here is the method
        """The live worker sessions, in session order."""
        reply = await self.request(subjects.api("workers.list"), {})
        return [WorkerInfo.model_validate(worker) for worker in reply["workers"]]

    async def drain(self, session: str) -> Draining:
        """Ask a worker session to take nothing new and exit once idle."""
        return Draining.model_validate(
            await self.request(subjects.api("workers.drain"), {"session": session})
        )

    async def cancel(self, job_id: str) -> JobChange:
        """Cancel a job that has not finished (a running one: its worker is told to stop)."""
        return JobChange.model_validate(await self.request(subjects.api("jobs.cancel"), {"id": job_id}))

    async def dead(self, limit: int = 100, after: str | None = None) -> JobPage:
        """A page of dead jobs, as `list`."""
        body = {"limit": limit, "after": after}
        return JobPage.model_validate(
            await self.request(subjects.api("dead.list"), {k: v for k, v in body.items() if v is not None})
        )

    async def retry_dead(self, job_id: str, attempts: int | None = None) -> JobChange:
        """Run a dead job again with `attempts` more attempts (default: its own `max_attempts`)."""
        body: dict[str, Any] = {"id": job_id} if attempts is None else {"id": job_id, "attempts": attempts}
        return JobChange.model_validate(await self.request(subjects.api("dead.retry"), body))

    async def purge_dead(self, job_id: str) -> JobChange:
        """Delete a dead job for good (its id can never be used again)."""
        return JobChange.model_validate(await self.request(subjects.api("dead.purge"), {"id": job_id}))

    async def create_schedule(
        self, /, schedule_id: str, capability: str, payload: Any = None, **options: Any
    ) -> ScheduleInfo:
        """Create a cron or interval schedule; see `schedule_spec` for the options.

        Raises:
            JetschedApiError: `already_exists` (the id is taken, or was), `invalid_field`.
        """
        return await self._schedule(
            "schedules.create", schedule_spec(schedule_id, capability, payload, **options)
        )

    async def create_workflow_schedule(
        self,
        /,
        schedule_id: str,
        steps: Steps | Sequence[Steps],
        *,
        on_failure: Literal["fail_fast", "continue"] | None = None,
        **options: Any,
    ) -> ScheduleInfo:
        """Create a cron or interval schedule whose every fire starts a workflow.

        Args:
            steps: the workflow, as for `submit_workflow` (step options go on each `step`).
            options: the schedule's options as for `create_schedule` (`cron`/`every`, `timezone`,
                `misfire`, `overlap`, `dst_gap`, `dst_fold`, `jitter`, …; jitter delays the whole workflow). The overlap policy judges
                the previous fire's workflow.
        """
        spec = schedule_spec(schedule_id, "", None, **options)
        del spec["job"]
        spec["workflow"] = workflow_body(steps, on_failure=on_failure)
        return await self._schedule("schedules.create", spec)

    async def update_schedule(
        self, /, schedule_id: str, capability: str, payload: Any = None, **options: Any
    ) -> ScheduleInfo:
        """Replace a schedule's spec (it applies from now; the fire history is kept)."""
        return await self._schedule(
            "schedules.update", schedule_spec(schedule_id, capability, payload, **options)
        )

    async def schedule(
        self, schedule_id: str, action: Literal["get", "pause", "resume"] = "get"
    ) -> ScheduleInfo:
        """`get`, `pause` or `resume` one schedule; returns it as it then stands.

        Raises:
            JetschedApiError: `not_found`.
        """
        return await self._schedule(f"schedules.{action}", {"id": schedule_id})

    async def _schedule(self, verb: str, body: dict[str, Any]) -> ScheduleInfo:
        return ScheduleInfo.from_reply(await self.request(subjects.api(verb), body))

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (fires already made go on). Raises `JetschedApiError` (`not_found`)."""
        await self.request(subjects.api("schedules.delete"), {"id": schedule_id})

    async def schedules(self) -> builtins.list[ScheduleInfo]:
        """Every schedule with its ledger and next fires, in id order."""
        reply = await self.request(subjects.api("schedules.list"), {})
        return [ScheduleInfo.from_reply(schedule) for schedule in reply["schedules"]]

    async def preview_schedule(self, schedule_id: str, count: int = 10) -> SchedulePreview:
        """The next `count` fire times, in UTC and in the schedule's zone."""
        return SchedulePreview.model_validate(
            await self.request(subjects.api("schedules.preview"), {"id": schedule_id, "count": count})
        )

    async def wait(
        self,
        job_id: str,
        timeout: float = 30.0,
        poll: float = 1.0,
        on_change: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        """Wait until the job is finished (succeeded, dead or cancelled); returns its record.

        Pushed, not polled: the record is read when the services announce a change of it
        (`jetsched.changed.…`, docs/protocol.md). The announcement is best-effort, so the wait listens
        before its first read (a change in between is heard) and reads again after `poll` seconds without
        one, doubling up to 8 s: a lost announcement costs time, never the wait.

        Args:
            on_change: called with the record each time its state or attempt changes.

        Raises:
            TimeoutError: not finished within `timeout` seconds.
        """
        assert self._nc is not None, "use `async with Client(...)` or call connect() first"
        changed = asyncio.Event()

        async def heard(_: Msg) -> None:
            changed.set()

        sub = await self._nc.subscribe(subjects.changed(job_id), cb=heard)
        seen: tuple[str, int] | None = None
        quiet = poll
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    job = await self.get(job_id)
                    if on_change is not None and (job.state, job.attempt) != seen:
                        on_change(job)
                    seen = (job.state, job.attempt)
                    if job.finished:
                        return job
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), quiet)
                    quiet = poll if changed.is_set() else min(quiet * 2, max(poll, 8.0))
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()


#: Connected clients, oldest first: `@task` functions submit through the newest (`current_client`).
_open: list[Client] = []


def current_client() -> Client:
    """The most recently connected client that is still open: what `Task.submit` uses by default.

    Raises:
        RuntimeError: no client is connected in this process.
    """
    if not _open:
        raise RuntimeError("no jetsched Client is connected: open one with `async with Client(url):`")
    return _open[-1]


def schedule_spec(
    schedule_id: str,
    capability: str,
    payload: Any = None,
    *,
    cron: str | None = None,
    every: float | None = None,
    timezone: str = "UTC",
    priority: int | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    backoff: dict[str, Any] | None = None,
    misfire: str | None = None,
    catchup_window: float | None = None,
    overlap: str | None = None,
    dst_gap: str | None = None,
    dst_fold: str | None = None,
    jitter: float | None = None,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    paused: bool = False,
) -> dict[str, Any]:
    """The JSON spec of a schedule (docs/protocol.md, "Schedules").

    Args:
        cron: a 5-field (minute first) or 6-field (second first) cron expression; or `every` seconds.
        timezone: the IANA zone the cron expression is read in.
        misfire: `skip`, `once` (default) or `all` (within `catchup_window` seconds) for fires missed
            while no timer ran.
        overlap: `allow` (default), `skip`, `buffer_one` or `cancel_previous` when the previous fire's
            job is still running.
        dst_gap: `shift` (default) or `skip` for wall-clock times that do not exist (spring forward).
        dst_fold: `first` (default), `second` or `both` for times that happen twice (fall back).
        jitter: seconds; each fire's job starts up to this much after its nominal time.
    """
    job = {
        "capability": capability,
        "payload": payload,
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout_s": timeout,
        "backoff": backoff,
    }
    spec = {
        "id": schedule_id,
        "cron": cron,
        "every_ms": None if every is None else round(every * 1000),
        "timezone": timezone,
        "job": {k: v for k, v in job.items() if v is not None or k == "payload"},
        "misfire": misfire,
        "catchup_window_ms": None if catchup_window is None else round(catchup_window * 1000),
        "overlap": overlap,
        "dst_gap": dst_gap,
        "dst_fold": dst_fold,
        "jitter_ms": None if jitter is None else round(jitter * 1000),
        "start_at": None if start_at is None else start_at.isoformat(),
        "end_at": None if end_at is None else end_at.isoformat(),
        "paused": paused,
    }
    return {k: v for k, v in spec.items() if v is not None}


class JobOptions(TypedDict, total=False):
    """A job's options, as `submit` and `submit_many` take them (see `submit`); None means the default."""

    priority: int | None
    delay: float | None
    run_at: datetime | None
    max_attempts: int | None
    timeout: float | None
    heartbeat_timeout: float | None
    expires_in: float | None
    labels: dict[str, str] | None
    concurrency_key: str | None
    backoff: dict[str, Any] | None


def check_options(options: Mapping[str, object]) -> None:
    """Refuse what is not a job option (a typo would otherwise vanish without a trace)."""
    unknown = options.keys() - JobOptions.__annotations__.keys()
    if unknown:
        raise TypeError(f"unknown job options: {', '.join(sorted(unknown))}")


def _decoded(reply: bytes) -> Any:
    data = orjson.loads(reply)
    if isinstance(data, dict) and "error" in data:
        raise JetschedApiError.from_body(data["error"])
    return data


def _stored(ack: dict[str, Any], tail: bytes) -> dict[str, Any]:
    """A submit reply from JetStream's ack of the record, sent to `<reply>.<job id>.<state>`."""
    error = ack.get("error")
    if error is not None:
        # Not stored (or not known to be), as intake reports a failed create.
        raise JetschedApiError("unavailable", f"the job could not be stored: {error.get('description')}")
    job_id, _, state = tail.decode().partition(".")
    return {"id": job_id, "state": state, "duplicate": False}


def _submit_body(payload: Any, key: str | None, options: JobOptions) -> dict[str, Any]:
    """A submit body on the wire: the payload and the options that are set (intake defaults the rest)."""
    check_options(options)
    delay, run_at, expires_in = options.get("delay"), options.get("run_at"), options.get("expires_in")
    wire = {
        "priority": options.get("priority"),
        "delay_ms": None if delay is None else round(delay * 1000),
        "run_at": None if run_at is None else run_at.isoformat(),
        "key": key,
        "max_attempts": options.get("max_attempts"),
        "timeout_s": options.get("timeout"),
        "heartbeat_timeout_s": options.get("heartbeat_timeout"),
        "expires_in_ms": None if expires_in is None else round(expires_in * 1000),
        "labels": options.get("labels") or None,
        "concurrency_key": options.get("concurrency_key"),
        "backoff": options.get("backoff"),
    }
    return {"payload": payload, **{k: v for k, v in wire.items() if v is not None}}
