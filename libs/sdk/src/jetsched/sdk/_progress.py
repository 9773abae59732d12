"""`job.progress(value)`: an attempt's progress reports, throttled and never in the handler's way.

A handler may report as often as it likes; at most one report per `INTERVAL_S` goes out, carrying the
latest value. Reports are plain NATS publishes from the event loop — a handler never waits for one, and
a lost one is simply superseded (docs/protocol.md, "Progress").

A value still waiting for its slot when the handler returns goes out as a request, answered once intake
has dealt with it, before the outcome is reported: the outcome ends the lease that fences progress, so
a final "100 %" sent alongside it would race it and could be dropped. That wait is bounded by
`FINAL_TIMEOUT_S` and happens only when such a value is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsError

from jetsched.core import bounds, subjects
from jetsched.core.clock import SystemClock
from jetsched.core.models import ProgressReport

if TYPE_CHECKING:
    from jetsched.bus.direct import Connection
    from jetsched.core.clock import Clock
    from jetsched.core.models import WorkMessage

#: At most one report per attempt this often; what is reported in between waits for the next slot.
INTERVAL_S = 0.25
#: How long the outcome report waits for the final progress report to be dealt with, at most.
FINAL_TIMEOUT_S = 0.25


class ProgressSender:
    """One attempt's reports. `report` may be called from the event loop or from a handler's thread."""

    def __init__(self, nc: Connection, work: WorkMessage, clock: Clock | None = None) -> None:
        """`clock`: what the interval between reports is measured and waited on."""
        self._nc = nc
        self._work = work
        self._clock = clock or SystemClock()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._subject = subjects.progress(work.id)
        self._seq = 0
        self._pending: ProgressReport | None = None
        #: When the next report may go out (clock milliseconds).
        self._next_ms = 0
        #: Waiting for the next slot, then sending what is pending then.
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        self._sending: set[asyncio.Task[None]] = set()

    def report(self, value: Any) -> None:
        """Queue `value` as the attempt's progress.

        Raises:
            ValueError: `value` is not JSON jetsched can store, or is too large to report.
        """
        self._seq += 1  # only ever grows: reports of one attempt are ordered by it
        report = ProgressReport(
            id=self._work.id, attempt=self._work.attempt, token=self._work.token, seq=self._seq, value=value
        )
        if len(report.model_dump_json()) > bounds.MAX_PROGRESS_BYTES - 512:
            raise ValueError(
                f"a progress report is at most about {bounds.MAX_PROGRESS_BYTES - 512} bytes of JSON"
            )
        if threading.get_ident() == self._loop_thread:
            self._offer(report)
        elif not self._closed:
            # A `def` handler left running in its thread by a drain may outlive the event loop.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._offer, report)

    def _offer(self, report: ProgressReport) -> None:
        if self._closed:
            return
        self._pending = report
        if self._timer is None:
            self._timer = self._loop.create_task(self._send_in((self._next_ms - self._clock.now_ms()) / 1000))

    async def _send_in(self, seconds: float) -> None:
        if seconds > 0:
            await self._clock.sleep(seconds)
        self._send()

    def _send(self) -> None:
        self._timer = None
        report, self._pending = self._pending, None
        if report is None:
            return
        self._next_ms = self._clock.now_ms() + round(INTERVAL_S * 1000)
        task = self._loop.create_task(self._publish(report.model_dump_json().encode()))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, body: bytes) -> None:
        with contextlib.suppress(NatsError):
            await self._nc.publish(self._subject, body)

    async def finish(self) -> None:
        """The handler returned: take nothing more, and see what is pending dealt with."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        report, self._pending = self._pending, None
        if report is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await self._nc.request_raw(self._subject, report.model_dump_json().encode(), FINAL_TIMEOUT_S)
