"""The record change feed: every write to the `jobs` bucket, in stream order, as it happens.

Services keep their views (ready queues, the timing wheel, the lease index) by consuming the bucket's own
stream instead of separate "job X changed" hints: the record *is* the message, so there is no hint to lose
between a CAS and its announcement. On start the feed replays the latest value of every key (deliver
policy last-per-subject), so a restarted service rebuilds its view from the truth; `caught_up` is set once
the replay has delivered everything that was pending when it started.

It is an ordered push consumer: the client detects gaps and recreates it from the last stream sequence it
saw, so a view may skip superseded revisions but never misses a key's latest one. Views still act only
through CAS on the record, so a stale view costs a failed write, never a wrong one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.js import api

from jetsched.core import subjects
from jetsched.core.changes import Change

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

#: Called with (key, revision, value or None when deleted, headers).
KeyHandler = Callable[[str, int, bytes | None, dict[str, str] | None], None]


class KeyFeed:
    """Every write to one KV bucket, replayed (latest per key) and then live."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        handler: KeyHandler,
        headers_only: bool = False,
        keys: str = ">",
    ) -> None:
        """`headers_only`: for readers that route on headers alone. `keys`: a key filter, e.g. `timer.>`."""
        self._keys = keys
        self._js = js
        self._headers_only = headers_only
        self._handler = handler
        self._bucket = bucket
        self._prefix_len = len(f"$KV.{bucket}.")
        self._sub: Subscription | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            f"$KV.{self._bucket}.{self._keys}",
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            pending_msgs_limit=-1,
            pending_bytes_limit=512 * 1024 * 1024,
            headers_only=self._headers_only or None,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and self._sub.delivered == 0:
            self.caught_up.set()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        seq, pending = _position(msg)
        key = msg.subject[self._prefix_len :]
        headers = msg.headers
        try:
            deleted = bool(headers and ("KV-Operation" in headers or "Nats-Marker-Reason" in headers))
            self._handler(key, seq, None if deleted else msg.data, headers)
        except Exception:
            log.exception("feed handler failed", extra={"key": key, "revision": seq})
        if pending == 0:
            self.caught_up.set()


class RecordFeed(KeyFeed):
    """The job records' feed, as `Change`s decoded only as far as the reader needs."""

    def __init__(
        self, js: JetStreamContext, handler: Callable[[Change], None], headers_only: bool = False
    ) -> None:
        def on_key(key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
            if data is None:
                handler(Change.deleted(key, revision))
            else:
                handler(Change.from_message(key, revision, data, headers))

        super().__init__(js, subjects.JOBS_BUCKET, on_key, headers_only)


def _position(msg: Msg) -> tuple[int, int]:
    """(stream sequence, pending) from the ack subject, without building nats-py's metadata objects.

    `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or the
    12-token form with domain and account hash in front (ADR-15); anything else goes the slow way.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 12:
        return int(tokens[7]), int(tokens[10])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.num_pending
