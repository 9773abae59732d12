"""The reaper service: applies worker outcomes from the durable outcomes stream, and sweeps for lost jobs.

Outcomes arrive through a durable push consumer delivered to a queue group, so reaper replicas share
them and each report reaches one replica as soon as it is stored (a pull `fetch` would add its wait).

Outcome then ack: a report is acked only after its CAS landed (or after it proved stale), so a reaper
killed mid-way leaves the report in the stream to be redelivered; applying it twice is harmless because
the second application is fenced (the record no longer holds that attempt's lease).

A report that cannot be read is still used if it names its attempt with the lease's token: the attempt
fails with the reason (a worker's bug must not leave its job running until the timeout, every time). A
report or record that cannot be acted on is quarantined and its message terminated — never redelivered
forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

import orjson
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from jetsched.bus import instruments, tracing
from jetsched.bus.actors import log_failure
from jetsched.bus.config import env_float, env_int
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.feed import KeyFeed, RecordFeed
from jetsched.bus.heartbeats import HeartbeatListener, Outage
from jetsched.bus.leaders import LeaderSpreader
from jetsched.bus.leases import DEFAULT_TTL_MS, Members, ShardLeaser
from jetsched.bus.records import FENCE_S, Records, StoreError, Unstorable, transition
from jetsched.bus.service import Service
from jetsched.bus.subscriber import Subscriber
from jetsched.bus.workflows import Workflows
from jetsched.core import subjects
from jetsched.core.errors import Conflict, NotFound, Poisoned
from jetsched.core.models import (
    Control,
    JobRecord,
    JobState,
    Outcome,
    OutcomeError,
    OutcomeStatus,
)
from jetsched.core.shards import shard_of
from jetsched.core.workers import WorkerRegistry

from . import actions
from .abandoned import GRACE_MS
from .advance import Advancer
from .retire import Retirer
from .sweeps import Running, Verdict, stale_holdings, sweep
from .tally import Tally, tally

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from opentelemetry import metrics

    from jetsched.bus.actors import Actor
    from jetsched.bus.config import BusConfig
    from jetsched.bus.direct import Connection
    from jetsched.bus.subscriber import Request
    from jetsched.core.changes import Change

log = logging.getLogger(__name__)

#: Job id shards replicas split by lease: each rescues and retires the jobs of its own. With the records
#: in P > 1 partitions the shards are the partitions (`ReaperService.partitioned`).
DEFAULT_SHARDS = 16
SWEEP_INTERVAL_S = 0.25
#: How soon a report that could not be applied (storage failover, job not found yet) comes back.
REDELIVER_S = 1.0
#: How soon a partition's feed that could not be started is tried again.
REFOLLOW_S = 1.0


class ReaperService(Service):
    name = "reaper"

    def __init__(
        self, bus: BusConfig, shards: int = DEFAULT_SHARDS, lease_ttl_ms: int = DEFAULT_TTL_MS
    ) -> None:
        super().__init__(bus)
        #: With the records in partitions, replicas own partitions: each follows only its own partitions'
        #: feeds (a workflow's step jobs are in its partition: `wf.step_job_id`), so reading the records
        #: splits among them like the rest of the work. Their leases are apart from the id shards' (under
        #: `reaper.records`), so replicas of either kind never take the other's keys for their own.
        self.partitioned = bus.record_partitions > 1
        self.shards = bus.record_partitions if self.partitioned else shards
        self.lease_ttl_ms = lease_ttl_ms
        self.feed: RecordFeed | None = None
        self.refollow = asyncio.Event()
        self.elders: Members | None = None
        #: Job id shards whose sweeps and retirements are this replica's (leased).
        self.owned: set[int] = set()
        self.running: dict[str, Running] = {}
        self.registry = WorkerRegistry()
        self.records: Records | None = None
        self.js: JetStreamContext | None = None
        self.nc: Connection | None = None
        self.stale_reports = 0
        self.advancer: Advancer | None = None
        self.retirer: Retirer | None = None

    def owns(self, key: str) -> bool:
        """Whether this replica rescues and retires a job, or advances a workflow: the shard of its id
        (a step job's retirement: its workflow's) is leased here — and, a partition, its feed's replay
        is complete (until then this replica's view of it is partial: a workflow's waiting steps missing
        from it would never be released)."""
        shard = shard_of(key, self.shards)
        if not self.partitioned:
            return shard in self.owned
        if shard not in self.owned or self.feed is None or self.standing_by():
            return False
        if self.advancer is not None and key in self.advancer.unplaced:
            # A workflow whose steps may be anywhere (`following`): every partition's replay first. The
            # rest wait for their own partition's only, as ever.
            return all(self.feed.ready(p) for p in range(self.shards))
        return self.feed.ready(shard)

    def _unplaced(self) -> None:
        """Some running workflow's steps came to be anywhere, or none's are any more: follow again."""
        if self.advancer is not None and self.advancer.unplaced:
            log.warning(
                "a running workflow's steps are not all in its partition: following every partition",
                extra={"workflow": next(iter(self.advancer.unplaced))},
            )
        else:
            log.info("every running workflow's steps are in its partition: following our own")
        self.refollow.set()

    def standing_by(self) -> bool:
        """Whether reapers of an earlier version, which split job id shards instead of partitions and do
        not place a map's instances, still run: until they stop, they do the work (rescues, retirements,
        workflows), and this replica only applies the outcomes its queue group hands it. Run side by side,
        an old replica's unplaced map instances would be found by no replica of this version."""
        return self.elders is not None and self.elders.live() > 0

    def following(self) -> set[int]:
        """The partitions whose feeds this replica follows: its own — or, while some running workflow's
        steps are not all in its partition (written before partitions, or by a version that did not
        place them), every one, so that its owner sees them all, as with one partition."""
        if self.advancer is not None and self.advancer.unplaced:
            return set(range(self.shards))
        return set(self.owned)

    def follows(self, key: str) -> bool:
        """Whether this replica's feed shows the job records of this id's partition."""
        return not self.partitioned or (
            self.feed is not None and shard_of(key, self.shards) in self.feed.feeds
        )

    def forget(self, partitions: set[int]) -> None:
        """Drop what the views hold of partitions no longer followed: their new owner replays them."""
        gone = {key for key in self.running if shard_of(key, self.shards) in partitions}
        for key in gone:
            del self.running[key]
        if self.retirer is not None:
            self.retirer.forget(lambda key: shard_of(key, self.shards) in partitions)
        if self.advancer is not None:
            self.advancer.forget(lambda key: shard_of(key, self.shards) in partitions)

    def _own(self, owned: set[int]) -> None:
        self.owned = owned
        self.wake()

    def wake(self) -> None:
        """Look again at what this replica owns (leases moved, a replay completed, elders gone)."""
        self.refollow.set()
        if self.retirer is not None:
            self.retirer.wake()
        if self.advancer is not None:
            self.advancer.wake.set()

    def observe(self, change: Change) -> None:
        if self.retirer is not None and change.workflow is None:
            # A step's job is retired once its workflow has taken in its ending (`advance.py`).
            self.retirer.observe(change)
        if self.advancer is not None and (change.workflow is not None or change.state is None):
            self.advancer.observe_job(
                change
            )  # a workflow step (or a removed job): it may move its workflow on
        if change.state is JobState.RUNNING:
            record = change.record()
            known = self.running.get(change.id)
            seen = known.seen_ms if known and known.record.attempt == record.attempt else self.clock.now_ms()
            self.running[change.id] = Running(record, change.revision, seen)
        else:
            self.running.pop(change.id, None)

    async def setup(self, nc: Connection, js: JetStreamContext) -> list[Actor]:
        self.records = Records.open(nc, self.bus.retention_s, self.bus.record_partitions)
        self.js = js
        self.nc = nc
        workflows = Workflows(nc, self.records, self.bus.retention_s, remember=True)
        abandon_after_ms = int(env_float("JETSCHED_ABANDON_AFTER_S", GRACE_MS / 1000) * 1000)
        self.advancer = advancer = Advancer(workflows, self.clock, abandon_after_ms)
        advancer.quarantine = self.quarantined
        advancer.owns = self.owns
        advancer.placing = self.partitioned
        advancer.on_unplaced = self._unplaced
        fence_s = env_int("JETSCHED_HISTORY_FENCE_S", FENCE_S)
        self.retirer = Retirer(self.records, self.quarantined, fence_s, self.owns, self.follows)
        advancer.retire = self.retirer.observe
        self.feed = feed = RecordFeed(
            nc, js, self.observe, quarantine=self.quarantined, partitions=self.bus.record_partitions
        )
        feed.on_ready = lambda _: self.wake()  # its work is now this replica's to do
        flows = KeyFeed(
            nc, js, subjects.WORKFLOWS_BUCKET, advancer.observe_workflow, True, quarantine=self.quarantined
        )
        advancer.feeds = (feed, flows)
        await feed.start([] if self.partitioned else None)  # partitions: as their leases come
        if self.partitioned:
            self.elders = Members(nc, js, self.name, self.local, self.lease_ttl_ms)
            await self.elders.feed.start()
        await flows.start()

        actors: list[Actor] = [
            self.advancer,
            self.retirer,
            HeartbeatListener(nc, self.registry, self.clock, cut_off=lambda: not feed.healthy),
            _Sweeper(self, feed, Outage(nc)),
            ShardLeaser(
                nc,
                js,
                f"{self.name}.records" if self.partitioned else self.name,
                self.instance,
                self.shards,
                self.local,
                self._own,
                self.lease_ttl_ms,
            ),
            Subscriber(
                nc, subjects.OUTCOMES_DELIVER, self.apply, queue=subjects.OUTCOMES_CONSUMER, jetstream=True
            ),
            Subscriber(nc, subjects.OUTCOME_ALL, self.relay, queue=subjects.OUTCOMES_RELAY),
        ]
        if self.partitioned:
            streams = [subjects.kv_stream(subjects.jobs_bucket(p)) for p in range(self.shards)]
            actors.append(_Follower(self, feed))
            # One replica at a time spreads the partitions' leaders: the one holding partition 0.
            actors.append(LeaderSpreader(nc, streams, lambda: 0 in self.owned, self.local))
        return actors

    async def relay(self, msg: Request) -> None:
        """Pass a worker's outcome report on into the outcomes stream, JetStream's ack going back to it.

        Workers publish reports to `jetsched.outcome.<capability>.<job>` as requests, as they would
        publish into a stream (a JetStream client's `publish` reads the answer as its ack); the stream
        captures only `subjects.reported`, where only reapers publish. Were it to capture the workers'
        subject, JetStream would ack each report to whatever reply subject its worker named — a job
        record's key in the `jobs` bucket, which would store the ack over the record (docs/security.md).
        Here the reply goes on only if it is an inbox (`Subscriber` drops the rest), so the ack lands in
        the worker's inbox straight from JetStream, without a round trip through this process. Of the
        headers only the deduplication id and the trace context go on: the others would be JetStream's
        instructions, a worker's to give none. What if the reaper dies here? Before the publish, the
        worker hears nothing and sends it again; after it, the resend is deduplicated by its
        `Nats-Msg-Id`."""
        assert self.nc is not None
        headers = {
            name: value
            for name, value in (msg.headers or {}).items()
            if name == "Nats-Msg-Id" or not name.lower().startswith("nats-")
        }
        await self.nc.publish(subjects.reported(msg.subject), msg.data, msg.reply, headers or None)

    async def apply(self, msg: Request) -> None:
        """Apply one outcome report, then ack it."""
        outcome: Outcome | None
        try:
            outcome = Outcome.model_validate_json(msg.data)
        except ValidationError as exc:
            outcome = salvage(msg.data, str(exc))
            if outcome is None:
                self._set_aside(msg, f"unreadable outcome report: {exc}")
                await msg.term()
                return
        if outcome.id != msg.subject[msg.subject.rfind(".") + 1 :]:
            self._set_aside(msg, f"the report is for job {outcome.id}, sent on another job's subject")
            await msg.term()
            return
        try:
            await self._apply(msg, outcome)
        except (Poisoned, Unstorable) as exc:
            if isinstance(exc, Poisoned):
                self.quarantined.report(exc.bucket, exc.key, exc.revision, exc.reason)
            else:
                assert self.records is not None  # set up before outcomes are consumed
                self.quarantined.report(
                    self.records.store_of(outcome.id).bucket,
                    outcome.id,
                    0,
                    f"the outcome cannot be applied: {exc}",
                )
            await msg.term()
        except (StoreError, TimeoutError, NatsError, Conflict) as exc:
            # Storage is passing through a failover (CAS writes can fail spuriously then, nats-server
            # #7281): the report stays in the stream and comes back.
            log.warning(
                "outcome not applied yet; redelivering", extra={"job": outcome.id, "error": repr(exc)}
            )
            await msg.nak(delay=REDELIVER_S)

    def _set_aside(self, msg: Request, reason: str) -> None:
        sequence = msg.metadata.sequence.stream if msg.reply else 0
        self.quarantined.report("outcomes", str(sequence), sequence, f"{msg.subject}: {reason}")

    async def _apply(self, msg: Request, outcome: Outcome) -> None:
        assert self.records is not None
        entry = self.running.get(outcome.id)
        try:
            if entry is not None and entry.record.attempt == outcome.attempt:
                record, revision = entry.record, entry.revision
            else:
                record, revision = await self.records.get(outcome.id)
        except NotFound:
            if actions.unknown_report(msg.metadata.num_delivered) is actions.Unknown.NAK:
                await msg.nak(delay=REDELIVER_S)
            else:
                log.info("outcome for an unknown job dropped", extra={"job": outcome.id})
                await msg.term()
            return
        attributes: dict[str, str | int] = {
            "jetsched.job_id": record.id,
            "jetsched.attempt": outcome.attempt,
            "jetsched.capability": record.capability,
            "jetsched.outcome": outcome.status.value,
            **tracing.messaging("process", msg.subject, f"{outcome.id}:{outcome.attempt}", len(msg.data)),
        }
        with tracing.span("jetsched outcome", msg.headers or record.trace, SpanKind.CONSUMER, attributes):
            tracing.outcome_status(outcome.status.value, outcome.error.message if outcome.error else "")
            now = self.clock.now_ms()
            rand = random.random()
            crashpoint("reaper.outcome.before_cas")
            ran = tracing.clean(msg.headers) or None  # the attempt's run span, which the report carries
            done = await transition(
                self.records, record, revision, lambda r: actions.apply_outcome(r, outcome, now, rand, ran)
            )
            crashpoint("reaper.outcome.after_cas")
        if done is None:
            self.stale_reports += 1
            instruments.fenced.add(1, {"capability": record.capability})
            log.info("stale outcome rejected", extra={"job": outcome.id, "attempt": outcome.attempt})
        else:
            count(tally(record, done[1], now))
        await msg.ack()

    async def stop_stale(self, session_id: str, job_id: str, attempt: int) -> None:
        """Tell a session to stop an attempt whose lease it no longer holds (after checking the record)."""
        assert self.records is not None
        assert self.nc is not None
        try:
            record, _ = await self.records.get(job_id)
        except NotFound:
            record = None
        if not actions.must_stop(record, session_id, attempt):
            return
        log.warning(
            "telling a worker to stop a stale attempt",
            extra={"job": job_id, "attempt": attempt, "session": session_id},
        )
        control = Control(op="cancel", id=job_id, attempt=attempt)
        await self.nc.publish(subjects.control(session_id), control.model_dump_json().encode())

    async def report_pending(self, record: JobRecord) -> bool:
        """Whether an outcome report for this job waits in the outcomes stream."""
        assert self.js is not None
        try:
            await self.js.get_last_msg(
                subjects.OUTCOMES_STREAM, subjects.reported(subjects.outcome(record.capability, record.id))
            )
        except NotFoundError:
            return False
        return True

    async def rescue(self, entry: Running, verdict: Verdict) -> None:
        """Rescue a running job on the sweep's verdict (`actions.rescue`), unless its report is on its way."""
        assert self.records is not None
        record = entry.record
        if await self.report_pending(record):
            # Its report is stored and on its way here (perhaps held up by a failover): the job is done
            # or failed by its worker, whatever the heartbeats suggest. Rescuing would run it again.
            return
        now = self.clock.now_ms()
        rand = random.random()
        lease = record.lease
        assert lease is not None
        done = await transition(
            self.records, record, entry.revision, lambda r: actions.rescue(r, lease, verdict, now, rand)
        )
        crashpoint("reaper.rescue.after_cas")
        if done is not None and verdict in actions.STOPS_WORKER:
            await self.stop_stale(lease.session, record.id, lease.attempt)
        if done is not None:
            instruments.rescued.add(1, {"capability": record.capability, "verdict": verdict.value})
            count(tally(record, done[1], now))
            log.warning(
                "rescued job",
                extra={
                    "job": record.id,
                    "attempt": lease.attempt,
                    "verdict": verdict.value,
                    "session": lease.session,
                    "state": done[1].state.value,
                },
            )


def count(t: Tally) -> None:
    """Record a transition's tally on the instruments."""
    for name, attributes in t.counts:
        counter: metrics.Counter = getattr(instruments, name)
        counter.add(1, attributes)
    if t.run is not None:
        instruments.run_time.record(*t.run)


def salvage(data: bytes, problem: str) -> Outcome | None:
    """A `failed` report for an attempt whose report cannot be read, if it still names the attempt and
    its token (which only the lease holder has); None if even that much is missing."""
    try:
        raw: Any = orjson.loads(data)
        head = Outcome.model_validate(
            {
                "id": raw["id"],
                "attempt": raw["attempt"],
                "token": raw["token"],
                "session": raw.get("session", ""),
                "status": OutcomeStatus.FAILED,
                "finished_at_ms": 0,
                "error": OutcomeError(
                    type="MalformedReport", message=f"the worker's report was unreadable: {problem}"
                ),
            }
        )
    except (ValueError, KeyError, TypeError):
        return None
    return head


class _Follower:
    """Follows the feeds of the partitions this replica owns, as its leases change."""

    name = "partitions"

    def __init__(self, service: ReaperService, feed: RecordFeed) -> None:
        self.service = service
        self.feed = feed

    async def run(self) -> None:
        service = self.service
        service.refollow.set()  # (restarted: whatever the last run left half done is looked at again)
        while True:
            await service.refollow.wait()
            service.refollow.clear()
            wanted = service.following()
            gone = await self.feed.follow(wanted)
            if gone:
                service.forget(gone)
                log.info("partitions not followed", extra={"partitions": sorted(gone)})
            if not wanted <= set(self.feed.feeds):  # some feed could not start: again in a while
                await service.clock.sleep(REFOLLOW_S)
                service.refollow.set()


class _Sweeper:
    name = "sweeper"

    def __init__(self, service: ReaperService, feed: RecordFeed, outage: Outage) -> None:
        self.service = service
        self.feed = feed
        self.outage = outage

    async def run(self) -> None:
        service = self.service
        records = service.records
        assert records is not None  # set up before the sweeper runs
        await self.feed.caught_up.wait()
        started = service.clock.now_ms()
        suspects: dict[tuple[str, str, int], int] = {}
        standing_by = False
        while True:
            await service.clock.sleep(SWEEP_INTERVAL_S)
            now = service.clock.now_ms()
            if service.standing_by() != standing_by:
                standing_by = not standing_by
                log.warning(
                    "reapers of an earlier version are running: standing by until they stop"
                    if standing_by
                    else "no reaper of an earlier version runs any more: taking up the work"
                )
                service.wake()
            if self.outage.since_last_check() or not self.feed.healthy:
                # Cut off from NATS, or from the cluster's storage (our feed cannot be served: we may be
                # on a partition's minority side, hearing only some workers): judge nobody until a full
                # deadline has passed again.
                service.registry.extend_all(now)
                started = now
                continue
            found = [
                (entry, verdict)
                for entry, verdict in sweep(service.running, service.registry, now, started)
                if service.owns(entry.record.id)
            ]
            for session_id, job_id, attempt in stale_holdings(
                service.running, service.registry, suspects, now, service.follows
            ):
                if not service.owns(job_id):
                    continue
                try:
                    await service.stop_stale(session_id, job_id, attempt)
                except Exception:
                    log_failure(log, "could not stop a stale attempt", {"job": job_id})
            for entry, verdict in found:
                try:
                    await service.rescue(entry, verdict)
                except (Poisoned, Unstorable) as exc:
                    # The record cannot be rewritten (stored past today's bounds): set aside, logged once.
                    service.quarantined.report(
                        records.store_of(entry.record.id).bucket,
                        entry.record.id,
                        entry.revision,
                        str(exc),
                    )
                except Exception:
                    log_failure(log, "rescue failed", {"job": entry.record.id})
