"""The intake service: submit and control API subscriptions (queue groups), plus the views they read."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson

from jetsched.bus.feed import KeyFeed, RecordFeed
from jetsched.bus.heartbeats import HeartbeatListener
from jetsched.bus.records import Records, Store
from jetsched.bus.service import Service
from jetsched.bus.subscriber import Subscriber
from jetsched.bus.workflows import Workflows
from jetsched.core import bounds, subjects
from jetsched.core.errors import ApiError
from jetsched.core.workers import WorkerRegistry

from . import metrics
from .api import ControlApi
from .config import IntakeConfig
from .index import JobIndex
from .progress import ProgressBook
from .schedules_api import SchedulesApi
from .submit import Submitter
from .workflow_submit import BYTES_IN_FLIGHT, MAX_WAIT_S, WorkflowSubmitter
from .workflows_api import WorkflowsApi

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext

    from jetsched.bus.actors import Actor
    from jetsched.bus.config import BusConfig
    from jetsched.bus.direct import Connection
    from jetsched.bus.subscriber import Request

_SUBMIT_PREFIX = len(subjects.submit(""))
_BATCH_PREFIX = len(subjects.batch(""))
_API_PREFIX = len(subjects.api(""))


class IntakeService(Service):
    name = "intake"

    def __init__(self, bus: BusConfig, config: IntakeConfig | None = None) -> None:
        super().__init__(bus)
        self.config = config or IntakeConfig()
        self.index = JobIndex()
        self._unregister: Callable[[], None] | None = None
        self.registry = WorkerRegistry()
        #: The control API, once set up (its `routes` are the names docs/protocol.md lists).
        self.api: ControlApi | None = None

    async def drain(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        records = Records.open(nc, self.bus.retention_s, self.bus.record_partitions)
        keys = Store(nc, subjects.KEYS_BUCKET)
        budget = bounds.record_budget(nc.max_payload)
        submitter = Submitter(records, keys, self.clock, self.config.max_request_bytes, budget)

        async def on_submit(msg: Request) -> None:
            by_store = (
                msg.reply
                and msg.headers
                and msg.headers.get(subjects.REPLY_HEADER) == subjects.REPLY_BY_STORE
            )
            reply = await submitter.submit(
                msg.subject[_SUBMIT_PREFIX:], msg.data, msg.headers, msg.reply if by_store else ""
            )
            if reply is None:
                return
            if isinstance(reply, ApiError):
                await msg.respond(reply.body())
            else:
                await msg.respond(reply.model_dump_json().encode())

        async def on_batch(msg: Request) -> None:
            replies = await submitter.submit_many(msg.subject[_BATCH_PREFIX:], msg.data, msg.headers)
            if isinstance(replies, ApiError):
                await msg.respond(replies.body())
                return
            jobs = [
                {"error": r.model_dump(mode="json")} if isinstance(r, ApiError) else r.model_dump(mode="json")
                for r in replies
            ]
            await msg.respond(orjson.dumps({"jobs": jobs}))

        workflows = Workflows(nc, records, self.bus.retention_s)
        flows = WorkflowSubmitter(workflows, keys, self.clock, nc.max_payload, budget)

        async def on_workflow(msg: Request) -> None:
            reply = await flows.submit(msg.data, msg.headers)
            await msg.respond(reply.body() if isinstance(reply, ApiError) else orjson.dumps(reply))

        actors: list[Actor] = [
            Subscriber(nc, subjects.SUBMIT_ALL, on_submit, queue=subjects.INTAKE_QUEUE),
            Subscriber(nc, subjects.BATCH_ALL, on_batch, queue=subjects.INTAKE_QUEUE),
            Subscriber(
                nc,
                subjects.WORKFLOW_SUBMIT,
                on_workflow,
                queue=subjects.INTAKE_QUEUE,
                max_bytes_in_flight=BYTES_IN_FLIGHT,
                max_wait_s=MAX_WAIT_S,
            ),
        ]
        if self.config.serve_api:
            actors += await self._api_actors(nc, js, records, budget, workflows)
        return actors

    async def _api_actors(
        self, nc: Connection, js: JetStreamContext, records: Records, budget: int, workflows: Workflows
    ) -> list[Actor]:
        quarantine = self.quarantined
        schedules = SchedulesApi(Store(nc, subjects.SCHEDULES_BUCKET), self.clock, budget)
        queues = Store(nc, subjects.QUEUES_BUCKET)
        book = ProgressBook(records, Store(nc, subjects.PROGRESS_BUCKET), self.clock, self.bus.retention_s)
        api = ControlApi(
            nc, records, self.index, self.registry, self.clock, schedules, queues, quarantine, book
        )
        flows = WorkflowsApi(workflows, self.clock, nc.max_payload)
        api.routes.update(flows.routes())
        self.api = api
        feeds: list[KeyFeed | RecordFeed] = [
            KeyFeed(nc, js, subjects.QUEUES_BUCKET, api.observe_queue, quarantine=quarantine),
            RecordFeed(
                nc,
                js,
                lambda change: self.index.observe(change, self.clock.now_ms()),
                headers_only=True,
                quarantine=quarantine,
                partitions=self.bus.record_partitions,
            ),
            KeyFeed(nc, js, subjects.SCHEDULES_BUCKET, schedules.observe, quarantine=quarantine),
            KeyFeed(
                nc, js, subjects.WORKFLOWS_BUCKET, flows.observe, headers_only=True, quarantine=quarantine
            ),
        ]
        for feed in feeds:
            await feed.start()
        self._unregister = metrics.register(api.signals)

        async def views_complete() -> None:
            # A replica that has not replayed the feeds yet would answer lists from a partial index:
            # it joins the API queue group only once they are caught up.
            await asyncio.gather(*(feed.caught_up.wait() for feed in feeds))

        async def on_api(msg: Request) -> None:
            reply = await api.handle(msg.subject[_API_PREFIX:], msg.data)
            await msg.respond(reply.body() if isinstance(reply, ApiError) else orjson.dumps(reply))

        return [
            Subscriber(nc, subjects.API_ALL, on_api, queue=subjects.INTAKE_QUEUE, ready=views_complete),
            Subscriber(nc, subjects.PROGRESS_ALL, book.on_report, queue=subjects.INTAKE_QUEUE),
            HeartbeatListener(nc, self.registry, self.clock),
        ]
