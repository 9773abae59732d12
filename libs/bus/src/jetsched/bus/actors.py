"""A small actor system: each concern of a service is one asyncio task, supervised.

An actor is an object with an async `run()` that loops until cancelled, usually reading its own mailbox (an
`asyncio.Queue` or an `asyncio.Event` it owns). The supervisor restarts an actor that raises, with backoff,
and logs it; an actor that crashes `max_restarts` times within `window_s` takes the whole service down
loudly (re-raises), because a service limping along without, say, its outcome applier would accept jobs it
can never finish. Records stay consistent whatever an actor was doing: every write is a CAS.

A crash on a *transient* storage error — NATS not answering, a request timing out, no stream leader while
one is elected — is the cluster's doing, not the actor's: the actor restarts after a short backoff and the
crash does not count toward the limit, so repeated failovers never take a service down.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Protocol

from nats.errors import Error as NatsError

from jetsched.core.clock import SystemClock

from .records import StoreError

if TYPE_CHECKING:
    from jetsched.core.clock import Clock

#: What a failover looks like from here; anything else is a bug and counts.
TRANSIENT = (TimeoutError, NatsError, StoreError)


def log_failure(logger: logging.Logger, message: str, extra: dict[str, object]) -> None:
    """Log the exception being handled: one line for a storage interruption (expected in a failover, and
    retried), a traceback for anything else."""
    exc = sys.exc_info()[1]
    if isinstance(exc, TRANSIENT):
        logger.warning(f"{message} (storage interrupted)", extra={**extra, "error": repr(exc)})
    else:
        logger.exception(message, extra=extra)


log = logging.getLogger(__name__)


class Actor(Protocol):
    name: str

    async def run(self) -> None: ...


class ActorFailed(Exception):
    """An actor kept crashing; the service stops."""


class Supervisor:
    def __init__(
        self,
        max_restarts: int = 5,
        window_s: float = 60.0,
        backoff_s: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.backoff_s = backoff_s
        self.clock = clock or SystemClock()

    async def run(self, actors: list[Actor]) -> None:
        """Run every actor until one fails for good (raises `ActorFailed`) or this task is cancelled."""
        tasks = [asyncio.create_task(self._supervise(actor), name=actor.name) for actor in actors]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            await cancel_all(tasks)

    async def _supervise(self, actor: Actor) -> None:
        crashes: list[float] = []
        interrupted = 0
        while True:
            started = self.clock.now_ms() / 1000
            try:
                await actor.run()
                return
            except asyncio.CancelledError:
                raise
            except TRANSIENT as exc:
                # Consecutive interruptions back off (to 2 s) so a long outage does not spin.
                interrupted = 1 if self.clock.now_ms() / 1000 - started > 10 else interrupted + 1
                log.warning(
                    "actor interrupted by storage; restarting",
                    extra={"actor": actor.name, "error": repr(exc), "in_a_row": interrupted},
                )
                await self.clock.sleep(min(self.backoff_s * 2 ** (interrupted - 1), 2.0))
            except Exception as exc:
                now = self.clock.now_ms() / 1000
                crashes = [t for t in crashes if now - t < self.window_s] + [now]
                log.exception("actor crashed", extra={"actor": actor.name, "crashes": len(crashes)})
                if len(crashes) >= self.max_restarts:
                    raise ActorFailed(
                        f"actor {actor.name} crashed {len(crashes)} times in {self.window_s}s"
                    ) from exc
                await self.clock.sleep(min(self.backoff_s * 2 ** (len(crashes) - 1), 5.0))


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel until every task has ended: a cancellation can be swallowed once inside a library (a request
    interrupted right as it times out surfaces as a timeout), so one `cancel()` is not always enough."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
