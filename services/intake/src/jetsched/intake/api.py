"""The control API on `jetsched.api.<name>`: look-up, listing, cancel, and the dead-letter set.

Every change is a CAS on the record, retried on conflict with a fresh read; an operation that does not
apply to the job's state is answered with `invalid_state`, never half-done.

Replies are bounded: a list page stops at `limit` records or at `MAX_REPLY_BYTES`, whichever comes first
(its `next` cursor continues from there), records are read for it a few at a time, and only a few pages
are assembled at once — a burst of large list requests costs waiting, not memory. A stored record that
cannot be read is quarantined and left out of a page, never failing it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsError

from jetsched.bus.cas import KeptChanging, cas_update
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.records import EXPIRING, StoreError
from jetsched.bus.stored import StoredModel
from jetsched.core import states, subjects
from jetsched.core.errors import ApiError, ErrorCode, NotFound, Poisoned, TransitionError
from jetsched.core.ids import history_cursor, history_sequence
from jetsched.core.models import (
    CapabilityRequest,
    ConfigureRequest,
    Control,
    EmptyRequest,
    GetRequest,
    JobRecord,
    JobState,
    ListRequest,
    QueueSettings,
    ReviveRequest,
    SessionRequest,
)

from .doctor_api import DoctorApi
from .pages import Page, from_history
from .signals import signals
from .validate import parse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jetsched.bus.direct import Connection
    from jetsched.bus.quarantine import Quarantine
    from jetsched.bus.records import Records, Store
    from jetsched.core.clock import Clock
    from jetsched.core.models import Progress
    from jetsched.core.workers import WorkerRegistry

    from .index import JobIndex
    from .progress import ProgressBook
    from .schedules_api import SchedulesApi

log = logging.getLogger(__name__)

MAX_API_BYTES = 64 * 1024
CAS_TRIES = 10
#: A list page's records stop at this many bytes of JSON (the server's message limit is 1 MiB by default),
#: and at this many records whatever `limit` asks (each is read from storage: a page of 1,000 cost intake
#: a second of CPU, and a stream of them slowed every other request).
MAX_REPLY_BYTES = 512 * 1024
MAX_PAGE_RECORDS = 250
#: Records read at once for a page, and pages assembled at once.
READ_CHUNK = 32
PAGES_AT_ONCE = 4

Reply = dict[str, Any] | ApiError


def describe(
    record: JobRecord,
    registry: WorkerRegistry,
    now_ms: int,
    paused: set[str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The `jobs.get` view: the record, its last error, why it is waiting (if it is), and the progress its
    latest attempt reported (if any)."""
    waiting = None
    if record.state is JobState.READY:
        if record.capability in paused:
            waiting = f"the queue '{record.capability}' is paused"
        else:
            waiting = registry.waiting_reason(record.capability, now_ms, record.labels)
    elif record.state is JobState.SCHEDULED:
        waiting = f"scheduled to run at {record.run_at_ms} ms"
    elif record.state is JobState.WAITING and record.workflow is not None:
        link = record.workflow
        waiting = (
            f"step '{link.step}' of workflow {link.id}: waiting for its map instances"
            if link.map and record.parents is not None
            else f"step '{link.step}' of workflow {link.id}: waiting for its parents"
        )
    return {
        "job": record.model_dump(mode="json"),
        "last_error": record.errors[-1].model_dump(mode="json") if record.errors else None,
        "waiting": waiting,
        "progress": None if progress is None else progress.model_dump(mode="json"),
    }


class ControlApi:
    def __init__(
        self,
        nc: Connection,
        records: Records,
        index: JobIndex,
        registry: WorkerRegistry,
        clock: Clock,
        schedules: SchedulesApi,
        queue_store: Store,
        quarantine: Quarantine,
        progress: ProgressBook,
    ) -> None:
        self.progress = progress
        self.queue_store = queue_store
        self.quarantine = quarantine
        self._pages = asyncio.Semaphore(PAGES_AT_ONCE)
        self.reply_bytes = min(MAX_REPLY_BYTES, nc.max_payload // 2)
        #: Queue settings and the paused capabilities, from the queues bucket's feed.
        self.queue_settings: dict[str, QueueSettings] = {}
        self.paused: set[str] = set()
        self.nc = nc
        self.records = records
        self.index = index
        self.registry = registry
        self.clock = clock
        self.routes: dict[str, Callable[[bytes], Awaitable[Reply]]] = {
            "jobs.get": self.get,
            "jobs.list": self.list,
            "jobs.cancel": self.cancel,
            "dead.list": self.dead_list,
            "dead.retry": self.dead_retry,
            "dead.purge": self.dead_purge,
            "stats": self.stats,
            "queues.pause": lambda data: self._pause(data, paused=True),
            "queues.resume": lambda data: self._pause(data, paused=False),
            "queues.list": self.queues,
            "queues.configure": self.configure,
            "workers.list": self.workers,
            "workers.drain": self.drain,
            **schedules.routes(),
            **DoctorApi(nc, quarantine.store).routes(),
        }

    async def handle(self, name: str, data: bytes) -> Reply:
        route = self.routes.get(name)
        if route is None:
            return ApiError(code=ErrorCode.UNKNOWN_API, message=f"no API named '{name}'", field="subject")
        try:
            return await route(data)
        except NotFound as exc:
            return ApiError(code=ErrorCode.NOT_FOUND, message=f"not found: {exc}", field="id")
        except Poisoned as exc:
            self.quarantine.report(exc.bucket, exc.key, exc.revision, exc.reason)
            return ApiError(
                code=ErrorCode.QUARANTINED,
                message=f"{exc.bucket}/{exc.key} cannot be read; it is quarantined (see `jetsched doctor`)",
                field="id",
            )
        except (TimeoutError, NatsError) as exc:
            return ApiError(code=ErrorCode.UNAVAILABLE, message=f"storage did not answer: {exc!r}")
        except StoreError as exc:
            return ApiError(code=ErrorCode.UNAVAILABLE, message=f"storage refused the change: {exc}")

    def empty(self, data: bytes) -> ApiError | None:
        """The error for a body a parameterless API cannot take, if it cannot."""
        request = parse(EmptyRequest, data, MAX_API_BYTES)
        return request if isinstance(request, ApiError) else None

    def observe_queue(
        self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None
    ) -> None:
        settings = QueueSettings.model_validate_json(data) if data else QueueSettings()
        self.queue_settings[key] = settings
        if settings.paused:
            self.paused.add(key)
        else:
            self.paused.discard(key)

    async def _pause(self, data: bytes, paused: bool) -> Reply:
        """Pause or resume dispatching a capability: queued jobs stay queued, running ones finish."""
        request = parse(CapabilityRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        queue = StoredModel(self.queue_store, request.capability, QueueSettings, missing=QueueSettings)
        try:
            _, changed, _ = await cas_update(
                queue.read, lambda s: s.model_copy(update={"paused": paused}), queue.write, tries=CAS_TRIES
            )
        except KeptChanging:
            return ApiError(code=ErrorCode.UNAVAILABLE, message="the queue settings kept changing; try again")
        return {"capability": request.capability, **changed.model_dump(mode="json")}

    async def configure(self, data: bytes) -> Reply:
        """Set a capability's queue settings (limits, rates, paused) as a whole."""
        request = parse(ConfigureRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        settings = QueueSettings.model_validate(request.model_dump(exclude={"capability"}))
        await self.queue_store.put(request.capability, settings.model_dump_json().encode())
        return {"capability": request.capability, **settings.model_dump(mode="json")}

    async def queues(self, data: bytes) -> Reply:
        if error := self.empty(data):
            return error
        return {"queues": {cap: s.model_dump(mode="json") for cap, s in sorted(self.queue_settings.items())}}

    async def workers(self, data: bytes) -> Reply:
        """The live worker sessions, as their heartbeats describe them."""
        if error := self.empty(data):
            return error
        now = self.clock.now_ms()
        return {
            "workers": [
                {
                    "worker": s.heartbeat.worker,
                    "session": s.id,
                    "capabilities": list(s.heartbeat.capabilities),
                    "labels": s.heartbeat.labels,
                    "concurrency": s.heartbeat.concurrency,
                    "running": len(s.heartbeat.running),
                    "draining": s.heartbeat.draining,
                    "seen_ms_ago": now - s.last_seen_ms,
                }
                for s in sorted(self.registry.sessions.values(), key=lambda s: s.id)
            ]
        }

    async def drain(self, data: bytes) -> Reply:
        """Ask one worker session to take nothing new and exit once idle."""
        request = parse(SessionRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        if request.session not in self.registry.sessions:
            return ApiError(
                code=ErrorCode.NOT_FOUND, message=f"no live worker session {request.session}", field="session"
            )
        control = Control(op="drain")
        await self.nc.publish(subjects.control(request.session), control.model_dump_json().encode())
        return {"session": request.session, "draining": True}

    async def stats(self, data: bytes) -> Reply:
        """Counts per state (all and per capability) and the live worker fleet: scaling signals.

        Live states and dead letters count the jobs in the bucket; succeeded and cancelled count the jobs
        this replica saw end since it started (they leave for history at once, and no index of history
        is kept); `history.jobs` is how many finished jobs history holds."""
        if error := self.empty(data):
            return error
        per_capability = self.index.stats()
        totals: dict[str, int] = {}
        for counts in per_capability.values():
            for state, n in counts.items():
                totals[state] = totals.get(state, 0) + n
        sessions = list(self.registry.sessions.values())
        workers = {
            "sessions": len(sessions),
            "slots": sum(s.heartbeat.concurrency for s in sessions),
            "busy": sum(len(s.heartbeat.running) for s in sessions),
        }
        history = {} if self.records.history is None else {"jobs": await self.records.history.count()}
        return {
            "jobs": totals,
            "capabilities": per_capability,
            "workers": workers,
            "queues": self.signals(),
            "history": history,
        }

    def signals(self) -> dict[str, dict[str, Any]]:
        """Per capability: ready, running, oldest ready age, free worker slots, paused — what autoscalers read."""
        now = self.clock.now_ms()
        return signals(self.index.stats(), self.index.oldest_ready_ms(), self.registry, self.paused, now)

    async def get(self, data: bytes) -> Reply:
        request = parse(GetRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        record, _ = await self.records.get(request.id)
        progress = await self.progress.current(record)
        return describe(record, self.registry, self.clock.now_ms(), self.paused, progress)

    async def list(self, data: bytes) -> Reply:
        request = parse(ListRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        return await self._page(request)

    async def dead_list(self, data: bytes) -> Reply:
        request = parse(ListRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        return await self._page(request.model_copy(update={"state": JobState.DEAD}))

    async def _page(self, request: ListRequest) -> Reply:
        """Live jobs from the index (id order), then finished ones from history (see pages.py)."""
        limit = min(request.limit, MAX_PAGE_RECORDS)
        page = Page(self.reply_bytes)
        after = history_sequence(request.after)
        in_history = request.state is None or request.state in EXPIRING
        async with self._pages:
            if after is None and request.state not in EXPIRING:
                cursor = await self._live_page(request, page, limit)
                if cursor is not None or page.full or not in_history:
                    return page.reply(cursor)
                after, limit = 0, limit - len(page.jobs)
            if not in_history or self.records.history is None or limit == 0:
                return page.reply(None if limit else history_cursor(0))
            cursor = await from_history(
                self.records.history,
                page,
                request.state,
                request.capability,
                after or 0,
                limit,
                self._poisoned,
            )
        return page.reply(cursor)

    async def _live_page(self, request: ListRequest, page: Page, limit: int) -> str | None:
        ids, cursor = self.index.page(request.state, request.capability, limit, request.after)
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            found = await asyncio.gather(*(self._get_or_none(job_id) for job_id in chunk))
            for job_id, record in zip(chunk, found, strict=True):
                if record is not None and not page.add(record, job_id):
                    return None
        return cursor

    async def cancel(self, data: bytes) -> Reply:
        request = parse(GetRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        before, after = await self._transition(request.id, states.cancel)
        if isinstance(after, ApiError):
            return after
        crashpoint("intake.cancel.after_cas")
        if before.lease is not None:
            # The CAS already fenced the attempt out; telling the worker only saves it the work.
            control = Control(op="cancel", id=before.id, attempt=before.lease.attempt)
            await self.nc.publish(subjects.control(before.lease.session), control.model_dump_json().encode())
        return {"id": after.id, "state": after.state}

    async def dead_retry(self, data: bytes) -> Reply:
        request = parse(ReviveRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        _, after = await self._transition(request.id, lambda r, now: states.revive(r, now, request.attempts))
        if isinstance(after, ApiError):
            return after
        return {"id": after.id, "state": after.state, "max_attempts": after.max_attempts}

    async def dead_purge(self, data: bytes) -> Reply:
        request = parse(GetRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request

        def dead(record: JobRecord) -> JobRecord:
            if record.state is not JobState.DEAD:
                raise TransitionError(f"job is {record.state}, not dead")
            return record

        try:
            await cas_update(
                lambda: self.records.get(request.id),
                dead,
                lambda record, revision: self.records.purge(record.id, revision),
                tries=CAS_TRIES,
            )
        except TransitionError as exc:
            return ApiError(code=ErrorCode.INVALID_STATE, message=str(exc), field="id")
        except KeptChanging:
            return ApiError(code=ErrorCode.UNAVAILABLE, message="the job kept changing; try again")
        return {"id": request.id, "purged": True}

    async def _transition(
        self, job_id: str, verb: Callable[[JobRecord, int], JobRecord]
    ) -> tuple[JobRecord, JobRecord | ApiError]:
        seen: list[JobRecord] = []  # the record last decided on, for a refusal's reply

        def decide(record: JobRecord) -> JobRecord:
            seen[:] = [record]
            return verb(record, self.clock.now_ms())

        try:
            before, changed, _ = await cas_update(
                lambda: self.records.get(job_id), decide, self.records.update, tries=CAS_TRIES
            )
        except TransitionError as exc:
            return seen[0], ApiError(code=ErrorCode.INVALID_STATE, message=str(exc), field="id")
        except KeptChanging:
            return seen[0], ApiError(code=ErrorCode.UNAVAILABLE, message="the job kept changing; try again")
        return before, changed

    async def _get_or_none(self, job_id: str) -> JobRecord | None:
        try:
            record, _ = await self.records.get(job_id)
        except NotFound:
            return None
        except Poisoned as exc:
            self._poisoned(exc)
            return None
        return record

    def _poisoned(self, exc: Poisoned) -> None:
        self.quarantine.report(exc.bucket, exc.key, exc.revision, exc.reason)
