"""The record change feed: every write to the `jobs` bucket, in stream order, as it happens.

Services keep their views (ready queues, the timing wheel, the lease index) by consuming the bucket's own
stream instead of separate "job X changed" hints: the record *is* the message, so there is no hint to lose
between a CAS and its announcement. On start the feed replays the latest value of every key (deliver
policy last-per-subject), so a restarted service rebuilds its view from the truth; `caught_up` is set once
the replay has delivered everything that was pending when it started.

It is an ordered push consumer kept by hand over a direct subscription (`direct.py`): each message's
consumer sequence must follow the last one, or the consumer is recreated from the last stream sequence
seen. So a view may skip superseded revisions but never misses a key's latest one. The consumer is also
recreated at once after a reconnect (a restarted server has forgotten it) and whenever its idle
heartbeats stop, retrying until JetStream answers again. Views still act only through CAS on the record,
so a stale view costs a failed write, never a wrong one.

A value its handler cannot take (it raises: undecodable, or not what any version writes) is quarantined
(`quarantine.py`) and skipped; the feed goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from nats.js import api

from jetsched.core import subjects
from jetsched.core.changes import Change
from jetsched.core.clock import SystemClock

from .direct import DirectSubscription, parse_headers
from .retry import Backoff, retry

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from jetsched.core.clock import Clock

    from .direct import Connection
    from .quarantine import Quarantine

log = logging.getLogger(__name__)

#: Called with (key, revision, value or None when deleted, headers).
KeyHandler = Callable[[str, int, bytes | None, dict[str, str] | None], None]

#: The server sends an idle heartbeat this often; two missed ones and the consumer is recreated.
HEARTBEAT_S = 1.0
#: How long one try to recreate the consumer waits for JetStream.
RECREATE_TIMEOUT_S = 0.5
_STATUS = b"NATS/1.0 "
_ACK = b"$JS.ACK."


class KeyFeed:
    """Every write to one KV bucket, replayed (latest per key) and then live."""

    def __init__(
        self,
        nc: Connection,
        js: JetStreamContext,
        bucket: str,
        handler: KeyHandler,
        headers_only: bool = False,
        keys: str = ">",
        quarantine: Quarantine | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`headers_only`: for readers that route on headers alone. `keys`: a key filter, e.g. `timer.>`.
        `clock`: what the watch for a quiet feed waits on."""
        self._nc = nc
        self._clock = clock or SystemClock()
        self._bucket = bucket
        self._quarantine = quarantine
        self._js = js
        self._stream = subjects.kv_stream(bucket)
        self._filter = f"$KV.{bucket}.{keys}"
        self._headers_only = headers_only
        self._handler = handler
        self._prefix_len = len(f"$KV.{bucket}.")
        self._sub: DirectSubscription | None = None
        self._consumer: str | None = None
        #: The next consumer sequence expected, and the last stream sequence handled.
        self._dseq = 1
        self._sseq = 0
        self._active = False
        #: False from the moment the consumer is lost until it is recreated: while JetStream cannot serve
        #: this feed, this process is cut off from the cluster's storage (a partition's minority side).
        self.healthy = False
        self._recreating: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._replies: set[asyncio.Task[None]] = set()
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        self._nc.views.append(self.caught_up)
        await self._create()
        self._unlisten = self._nc.add_reconnect_listener(self._restart)
        self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._nc.views.remove(self.caught_up)
        if self._unlisten is not None:
            self._unlisten()
        for task in (self._watchdog, self._recreating):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop_consumer()

    async def _create(self, timeout: float | None = None) -> None:
        """Subscribe a fresh inbox, then create the consumer delivering to it from where we are."""
        inbox = self._nc.new_inbox()
        self._dseq = 1
        self._sub = await self._nc.subscribe_direct(inbox, self._on_raw)
        resume = self._sseq > 0
        config = api.ConsumerConfig(
            deliver_subject=inbox,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE
            if resume
            else api.DeliverPolicy.LAST_PER_SUBJECT,
            opt_start_seq=self._sseq + 1 if resume else None,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=HEARTBEAT_S,
            headers_only=self._headers_only or None,
            filter_subject=self._filter,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=30.0,
        )
        try:
            info = await self._js.add_consumer(self._stream, config, timeout=timeout)
        except BaseException:
            await self._drop_consumer(wait=False)
            raise
        self._consumer = info.name
        self._active = True
        self.healthy = True
        if info.num_pending == 0 and self._dseq == 1:
            self.caught_up.set()

    async def _drop_consumer(self, wait: bool = True) -> None:
        """Unsubscribe and delete the consumer; `wait=False` leaves the delete to run on its own."""
        sub, consumer = self._sub, self._consumer
        self._sub = self._consumer = None
        if sub is not None:
            self._nc.forget_direct(sub)
            with contextlib.suppress(Exception):
                await self._nc.unsubscribe_direct(sub)
        if consumer is not None:
            delete = asyncio.create_task(self._delete(consumer))
            self._replies.add(delete)
            delete.add_done_callback(self._replies.discard)
            if wait:
                await delete

    async def _delete(self, consumer: str) -> None:
        # A consumer whose server died cannot be deleted until that server is back (the request times
        # out); its inactivity threshold removes it then. Waiting for it here stalled a feed's recovery
        # by JetStream's 5 s API timeout after every leader's death.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._js.delete_consumer(self._stream, consumer), RECREATE_TIMEOUT_S)

    def _restart(self) -> None:
        """Recreate the consumer from the last stream sequence seen (once at a time, retrying)."""
        self.healthy = False
        if self._recreating is not None and not self._recreating.done():
            return
        if self._sub is not None:
            self._nc.forget_direct(self._sub)  # nothing more from the old consumer counts
        self._recreating = asyncio.create_task(self._recreate())

    async def _recreate(self) -> None:
        async def once() -> None:
            await self._drop_consumer(wait=False)
            # Short tries: while a stream leader is elected requests go unanswered, and the feed must
            # come back within a try of the new leader, not after JetStream's 5 s default.
            await self._create(timeout=RECREATE_TIMEOUT_S)

        def waiting(exc: BaseException, delay: float) -> None:
            log.warning(
                "feed consumer not recreated; retrying",
                extra={"stream": self._stream, "error": repr(exc), "retry_s": delay},
            )

        await retry(once, backoff=Backoff(0.05, 0.25), on_retry=waiting)

    async def _watch(self) -> None:
        while not self._nc.is_closed:
            await self._clock.sleep(2 * HEARTBEAT_S)
            if not self._active and self._nc.is_connected:
                log.warning("feed went quiet; recreating its consumer", extra={"stream": self._stream})
                self._restart()
            self._active = False

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        self._active = True
        if not reply.startswith(_ACK):
            self._control(reply, headers)
            return
        tokens = reply.split(b".")
        if len(tokens) == 9:
            sseq, dseq, pending = int(tokens[5]), int(tokens[6]), int(tokens[8])
        else:  # the 12-token form with domain and account hash in front (ADR-15)
            sseq, dseq, pending = int(tokens[7]), int(tokens[8]), int(tokens[10])
        if dseq != self._dseq:
            self._restart()
            return
        self._dseq = dseq + 1
        self._sseq = sseq
        key = subject[self._prefix_len :].decode(errors="replace")
        parsed = parse_headers(headers)
        deleted = parsed is not None and ("KV-Operation" in parsed or "Nats-Marker-Reason" in parsed)
        try:
            self._handler(key, sseq, None if deleted else data, parsed)
        except Exception as exc:
            if self._quarantine is None:
                log.exception("feed handler failed", extra={"key": key, "revision": sseq})
            else:
                self._quarantine.report(self._bucket, key, sseq, f"{type(exc).__name__}: {exc}")
        if pending == 0:
            self.caught_up.set()

    def _control(self, reply: bytes, headers: bytes) -> None:
        """Flow control requests and idle heartbeats (status 100)."""
        if not headers.startswith(_STATUS):
            return
        if reply:  # a flow control request: everything before it has been handled already
            self._answer(reply.decode())
            return
        parsed = parse_headers(headers) or {}
        stalled = parsed.get("Nats-Consumer-Stalled")
        if stalled:
            self._answer(stalled)
        last = parsed.get("Nats-Last-Consumer")
        if last is not None and int(last) != self._dseq - 1:
            self._restart()  # a message was sent that never arrived

    def _answer(self, subject: str) -> None:
        task = asyncio.create_task(self._nc.publish(subject, b""))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)


class RecordFeed:
    """The job records' feed — every followed partition's bucket (`subjects.jobs_bucket`), each its own
    `KeyFeed` in its own stream order — as `Change`s decoded only as far as the reader needs. A key lives
    in one partition, so each key's changes still come in order; there is no order between keys, as there
    never was one a reader could rely on.

    A reader follows every partition (`start()`), or the ones it owns (`follow`, as its leases change): a
    partition newly followed replays like a fresh start, and `ready` tells when it has; one dropped
    delivers nothing more once `follow` returns."""

    def __init__(
        self,
        nc: Connection,
        js: JetStreamContext,
        handler: Callable[[Change], None],
        headers_only: bool = False,
        quarantine: Quarantine | None = None,
        partitions: int = 1,
    ) -> None:
        def on_key(key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
            if data is None:
                handler(Change.deleted(key, revision))
            else:
                handler(Change.from_message(key, revision, data, headers))

        def feed_of(partition: int) -> KeyFeed:
            bucket = subjects.jobs_bucket(partition)
            return KeyFeed(nc, js, bucket, on_key, headers_only, quarantine=quarantine)

        self._feed_of = feed_of
        self.partitions = partitions
        #: The followed partitions' feeds.
        self.feeds: dict[int, KeyFeed] = {}
        #: Called with a followed partition once its replay is complete.
        self.on_ready: Callable[[int], None] = lambda _: None
        self._readying: dict[int, asyncio.Task[None]] = {}
        #: Set once the replay of every partition followed from the start is complete.
        self.caught_up = asyncio.Event()
        self._waiting: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """False while JetStream cannot serve some followed partition's feed (see `KeyFeed.healthy`)."""
        return all(feed.healthy for feed in list(self.feeds.values()))

    def ready(self, partition: int) -> bool:
        """Whether a partition is followed and its replay complete."""
        feed = self.feeds.get(partition)
        return feed is not None and feed.caught_up.is_set()

    async def start(self, partitions: Iterable[int] | None = None) -> None:
        """Follow these partitions (every one by default)."""
        for partition in range(self.partitions) if partitions is None else partitions:
            await self._follow(partition)
        self._waiting = asyncio.create_task(self._all_caught_up(list(self.feeds.values())))

    async def follow(self, partitions: set[int]) -> set[int]:
        """Follow these partitions from now on, as far as JetStream lets: the partitions whose views must
        be forgotten — those dropped (nothing more comes from them) and those whose feed could not be
        started (not followed now: `follow` again to retry). One caller at a time."""
        gone = set(self.feeds) - partitions
        for partition in sorted(gone):
            await self._unfollow(partition)
        for partition in sorted(partitions - set(self.feeds)):
            try:
                await self._follow(partition)
            except Exception as exc:  # JetStream unreachable, a leader being elected: tried again
                log.warning("partition feed not started", extra={"partition": partition, "error": repr(exc)})
                gone.add(partition)
        return gone

    async def _follow(self, partition: int) -> None:
        # Listed before it starts: its replay may be delivered before `start` returns.
        feed = self.feeds[partition] = self._feed_of(partition)
        try:
            await feed.start()
        except BaseException:
            del self.feeds[partition]
            with contextlib.suppress(Exception):
                await feed.stop()
            raise

        async def announce() -> None:
            await feed.caught_up.wait()
            self.on_ready(partition)

        self._readying[partition] = asyncio.create_task(announce())

    async def _unfollow(self, partition: int) -> None:
        feed = self.feeds.pop(partition)
        await _cancelled(self._readying.pop(partition, None))
        await feed.stop()

    async def _all_caught_up(self, feeds: list[KeyFeed]) -> None:
        await asyncio.gather(*(feed.caught_up.wait() for feed in feeds))
        self.caught_up.set()

    async def stop(self) -> None:
        await _cancelled(self._waiting)
        for partition in sorted(self.feeds):
            await self._unfollow(partition)


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
