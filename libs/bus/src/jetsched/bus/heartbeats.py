"""An actor that keeps a `WorkerRegistry` current from worker heartbeats (`jetsched.hb.*`).

Every replica of every service that routes or rescues work listens to all heartbeats (they are small and
few: one per worker session per interval) and drops sessions that fall silent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError

from jetsched.core import subjects
from jetsched.core.models import Heartbeat

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.msg import Msg

    from jetsched.core.clock import Clock
    from jetsched.core.workers import Session, WorkerRegistry

    from .direct import Connection

log = logging.getLogger(__name__)

EXPIRE_INTERVAL_S = 0.25


class Outage:
    """Whether this process was cut off from NATS since it last asked: then silence proves nothing."""

    def __init__(self, nc: Connection) -> None:
        self.nc = nc
        self.reconnects = nc.stats["reconnects"]

    def since_last_check(self) -> bool:
        reconnects = self.nc.stats["reconnects"]
        interrupted = not self.nc.is_connected or reconnects != self.reconnects
        self.reconnects = reconnects
        return interrupted


class HeartbeatListener:
    name = "heartbeats"

    def __init__(
        self,
        nc: Connection,
        registry: WorkerRegistry,
        clock: Clock,
        on_beat: Callable[[Session], None] | None = None,
        on_lost: Callable[[Session], None] | None = None,
        cut_off: Callable[[], bool] | None = None,
    ) -> None:
        """`cut_off`: whether this process cannot reach the cluster's storage right now (then it may be
        on the minority side of a partition, hearing only the workers on its side: it judges nobody)."""
        self.cut_off = cut_off
        self.nc = nc
        self.registry = registry
        self.clock = clock
        self.on_beat = on_beat
        self.on_lost = on_lost

    async def run(self) -> None:
        sub = await self.nc.subscribe(subjects.HEARTBEAT_ALL, cb=self._on_msg)
        outage = Outage(self.nc)
        try:
            while True:
                await self.clock.sleep(EXPIRE_INTERVAL_S)
                now = self.clock.now_ms()
                if outage.since_last_check() or (self.cut_off is not None and self.cut_off()):
                    # We could not hear anyone: a missed heartbeat is our outage, not the worker's death.
                    self.registry.extend_all(now)
                    continue
                for session in self.registry.expire(now):
                    log.info(
                        "worker session lost",
                        extra={"session": session.id, "worker": session.heartbeat.worker},
                    )
                    if self.on_lost is not None:
                        self.on_lost(session)
        finally:
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            heartbeat = Heartbeat.model_validate_json(msg.data)
        except ValidationError:
            log.warning("malformed heartbeat ignored", extra={"subject": msg.subject[:200]})
            return
        if msg.subject != subjects.heartbeat(heartbeat.session):
            # A session speaks only on its own subject, which NATS permissions can tie to one worker.
            log.warning("heartbeat for another session ignored", extra={"subject": msg.subject[:200]})
            return
        session = self.registry.observe(heartbeat, self.clock.now_ms())
        if self.on_beat is not None:
            self.on_beat(session)
