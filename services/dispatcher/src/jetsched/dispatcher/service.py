"""The dispatcher service: keeps the board from the record feed and heartbeats, claims and sends work.

Claim then send: the claim (`ready → running`, attempt n, lease to a session, token) is a CAS; only the
winner sends the work message — and only while the claim is still what the record says: a dispatcher
paused or cut off after asking for its claim (SIGSTOP, a partition) may get the answer long after the
reaper has handed the job to someone else, so a claim answered more than `claims.STALE_CLAIM_S` after it
was asked is checked against the record's revision before anything is sent. What if the dispatcher dies
between the two? The record says running on a live session that never got the job; that session's
heartbeats never list it, and the reaper hands it back
(`orphan`, no attempt used). A work message sent twice (a stale replica) carries the same attempt and
token, and the worker runs a (job, attempt) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from jetsched.bus import instruments, tracing
from jetsched.bus.actors import log_failure
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.feed import KeyFeed, RecordFeed
from jetsched.bus.heartbeats import HeartbeatListener
from jetsched.bus.leases import DEFAULT_TTL_MS, ShardLeaser
from jetsched.bus.records import Records, Unstorable, transition
from jetsched.bus.service import Service
from jetsched.core import states, subjects
from jetsched.core.changes import Change
from jetsched.core.errors import Conflict, NotFound
from jetsched.core.models import JobState, QueueSettings
from jetsched.core.workers import WorkerRegistry

from . import partitions
from .claims import Expire, decide, stale, work_message
from .queues import Board, Claim

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from jetsched.bus.actors import Actor
    from jetsched.bus.config import BusConfig
    from jetsched.bus.direct import Connection
    from jetsched.core.workers import Session

log = logging.getLogger(__name__)

#: Capability shards replicas split by lease: a capability is dispatched by one replica at a time, so
#: its priority order holds across any number of replicas — unless it is split in partitions, each leased
#: as a shard of its own (`partitions.py`).
DEFAULT_SHARDS = 16
#: Claims in flight at once (CAS round trips pipelined).
MAX_IN_FLIGHT = 512


class DispatcherService(Service):
    name = "dispatcher"

    def __init__(
        self,
        bus: BusConfig,
        shards: int = DEFAULT_SHARDS,
        lease_ttl_ms: int = DEFAULT_TTL_MS,
        partitioned: dict[str, int] | None = None,
    ) -> None:
        """`partitioned`: capability → the partitions its jobs are dispatched in (`partitions.py`)."""
        super().__init__(bus)
        self.shards = shards
        self.lease_ttl_ms = lease_ttl_ms
        self.partitioned = partitioned or {}
        self.board = Board(partition_count=self.partitions)
        self.registry = WorkerRegistry()
        self.wake = asyncio.Event()
        self.owned: set[int] = set()
        self.paused: set[str] = set()

    def partitions(self, capability: str) -> int:
        """The partitions a capability's jobs are dispatched in now (1 while its queue has limits)."""
        configured = self.partitioned.get(capability, 1)
        if configured == 1:
            return 1
        return partitions.count(configured, self.board.limits.of(capability), self.shards)

    def dispatches(self, queue: str) -> bool:
        """Whether this replica hands out a board queue's jobs now — a capability's, or one partition's:
        its shard is leased here, and the capability is not paused."""
        capability, number = partitions.split(queue)
        if capability in self.paused:
            return False
        return partitions.shard(capability, number, self.partitions(capability), self.shards) in self.owned

    def _queue_of(self, change: Change) -> str:
        capability = change.capability
        return partitions.queue_of(
            capability, change.id, self.partitions(capability), change.workflow is not None
        )

    def _own(self, owned: set[int]) -> None:
        self.owned = owned
        self.wake.set()

    def _queue(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        # A setting that cannot be read raises here: the feed quarantines it and the last good one stays.
        settings = QueueSettings.model_validate_json(data) if data else QueueSettings()
        before = self.partitions(key)
        self.board.limits.settings[key] = settings
        if self.partitions(key) != before:
            self.board.repartition(key)
        if settings.paused:
            self.paused.add(key)
        else:
            self.paused.discard(key)
        self.wake.set()

    def observe(self, change: Change) -> None:
        # A new job of a queue this replica does not hand out (paused, or another replica's shard) frees
        # nothing and can be claimed by nobody here: no reason to plan (a paused queue's submits).
        new = change.id not in self.board.revisions
        if self.board.observe(change) and not (
            new and change.state is JobState.READY and not self.dispatches(self._queue_of(change))
        ):
            self.wake.set()

    def _outcome(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        """A worker's outcome report on its way to the outcomes stream: its slot is free again.

        Seen here as it is published, well before the reaper's CAS of it comes back on the feed. Only a
        hint: a malformed or forged report frees at most a slot the worker itself then refuses.
        """
        try:
            session = orjson.loads(data).get("session")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(session, str) and self.board.finish(
            subject[subject.rfind(b".") + 1 :].decode(errors="replace"), session
        ):
            self.wake.set()

    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        feed = RecordFeed(
            nc, js, self.observe, quarantine=self.quarantined, partitions=self.bus.record_partitions
        )
        await feed.start()
        await nc.subscribe_direct(subjects.OUTCOME_ALL, self._outcome)

        records = Records.open(nc, self.bus.retention_s, self.bus.record_partitions)
        await KeyFeed(nc, js, subjects.QUEUES_BUCKET, self._queue, quarantine=self.quarantined).start()
        heartbeats = HeartbeatListener(
            nc, self.registry, self.clock, on_beat=lambda _: self.wake.set(), on_lost=self._lost
        )
        leases = ShardLeaser(
            nc, js, self.name, self.instance, self.shards, self.local, self._own, self.lease_ttl_ms
        )
        return [heartbeats, leases, _Dispatch(self, nc, records, feed)]

    def _lost(self, session: Session) -> None:
        self.board.forget_session(session.id)


class _Dispatch:
    """Waits for a reason to look, plans claims, runs them concurrently."""

    name = "dispatch"

    def __init__(
        self, service: DispatcherService, nc: Connection, records: Records, feed: RecordFeed
    ) -> None:
        self.service = service
        self.nc = nc
        self.records = records
        self.feed = feed
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        service = self.service
        await self.feed.caught_up.wait()
        while True:
            await service.wake.wait()
            service.wake.clear()
            room = MAX_IN_FLIGHT - len(self.tasks)
            if room <= 0:
                continue
            for claim in service.board.plan(
                service.registry, room, service.clock.now_ms(), service.dispatches
            ):
                task = asyncio.create_task(self.claim(claim))
                self.tasks.add(task)
                task.add_done_callback(self._done)
            self._wake_for_tokens()

    def _wake_for_tokens(self) -> None:
        """A rate-limited queue waits for its next token: look again then (nothing else would wake us)."""
        at = self.service.board.limits.next_token_ms()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if at is not None:
            delay = max(0, at - self.service.clock.now_ms()) / 1000
            self.timer = asyncio.get_running_loop().call_later(delay, self.service.wake.set)

    async def _still_claimed(self, job_id: str, revision: int) -> bool:
        """Whether the record is still at our claim's revision (a slow answer may be a stale one)."""
        try:
            _, current = await self.records.get(job_id)
        except Exception as exc:  # unknown: sending nothing is safe, the reaper re-queues an unsent claim
            log.warning("claim not re-checked; not sending", extra={"job": job_id, "error": repr(exc)})
            return False
        if current != revision:
            log.warning("claim went stale before its work was sent; not sending", extra={"job": job_id})
        return current == revision

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.service.wake.set()

    async def claim(self, claim: Claim) -> None:
        service = self.service
        session = claim.session.heartbeat
        record = claim.record
        attributes = {"jetsched.job_id": record.id, "jetsched.capability": record.capability}
        dispatching = tracing.span(
            "jetsched dispatch", record.trace, SpanKind.PRODUCER, attributes, link=record.retry_of
        )
        with dispatching as headers:
            lease = decide(record, session, secrets.token_hex(8), service.clock.now_ms())
            if isinstance(lease, Expire):
                service.board.settle(claim, None)
                await transition(
                    self.records, record, claim.revision, lambda r: states.expire(r, service.clock.now_ms())
                )
                return
            claimed = lease.claimed
            asked = service.local.now()
            try:
                crashpoint("dispatcher.claim.before_cas")
                revision = await self.records.update(claimed, claim.revision)
            except Conflict:
                # Lost the CAS (or a spurious loss, nats-server #7281): learn the truth and re-decide.
                service.board.settle(claim, None)
                with contextlib.suppress(NotFound):
                    fresh, fresh_revision = await self.records.get(record.id)
                    service.observe(Change.of(fresh, fresh_revision))
                return
            except Unstorable as exc:
                # JetStream refuses the claimed record (over a limit: stored before records were bounded).
                # Retrying cannot help: set it aside, and it leaves the board until it is rewritten.
                service.board.settle(claim, None)
                service.board.drop(record.id)
                service.quarantined.report(
                    self.records.store_of(record.id).bucket, record.id, claim.revision, str(exc)
                )
                return
            except Exception:
                service.board.settle(claim, None)
                log_failure(log, "claim failed", {"job": record.id})
                return
            service.board.settle(claim, revision)
            crashpoint("dispatcher.claim.after_cas")
            if stale(asked, service.local.now()) and not await self._still_claimed(record.id, revision):
                return
            work = work_message(record, lease)
            destination = subjects.work(record.capability, session.session)
            await self.nc.publish(
                destination,
                work.model_dump_json(exclude_unset=True).encode(),
                headers=headers or None,
            )
            crashpoint("dispatcher.claim.after_send")
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(
                    {
                        "jetsched.attempt": claimed.attempt,
                        **tracing.messaging("send", destination, f"{record.id}:{claimed.attempt}"),
                    }
                )
            capability = {"capability": record.capability}
            instruments.started.add(1, capability)
            instruments.claim_latency.record(service.local.now() - asked, capability)
            waited = (claimed.started_at_ms or record.queued_at) - record.queued_at
            instruments.queue_wait.record(max(0, waited) / 1000, capability)
