"""`job.progress` reports (`ProgressSender`), throttled on a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, cast

import orjson

from jetsched.core.clock import FakeClock
from jetsched.core.models import WorkMessage
from jetsched.sdk._progress import INTERVAL_S, ProgressSender

if TYPE_CHECKING:
    from jetsched.bus.direct import Connection

WORK = WorkMessage(
    id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
    capability="probe.progress",
    attempt=1,
    token="t",
    priority=5,
    timeout_s=30,
    created_at_ms=0,
    run_at_ms=0,
)


class Recorder:
    """What a connection was asked to send: published values, and the value of the final request."""

    def __init__(self) -> None:
        self.published: list[object] = []
        self.requested: list[object] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append(orjson.loads(payload)["value"])

    async def request_raw(self, subject: str, payload: bytes, timeout: float) -> tuple[bytes, bytes]:
        self.requested.append(orjson.loads(payload)["value"])
        return b"{}", b""


async def turns() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def sender(clock: FakeClock) -> tuple[ProgressSender, Recorder]:
    nc = Recorder()
    return ProgressSender(cast("Connection", nc), WORK, clock), nc


class TestThrottle:
    async def test_first_goes_out_at_once_then_one_per_interval(self) -> None:
        """The first report goes out at once; those within the interval wait, and only the latest goes."""
        clock = FakeClock(autojump=False)
        progress, nc = sender(clock)
        progress.report(1)
        await turns()
        assert nc.published == [1]
        progress.report(2)
        progress.report(3)
        await turns()
        assert nc.published == [1]
        clock.advance(INTERVAL_S - 0.01)
        await turns()
        assert nc.published == [1]
        clock.advance(0.01)
        await turns()
        assert nc.published == [1, 3]
        clock.advance(10 * INTERVAL_S)
        progress.report(4)
        await turns()
        assert nc.published == [1, 3, 4]
        await progress.finish()
        assert nc.requested == []

    async def test_pending_value_goes_out_as_a_request_at_the_end(self) -> None:
        """A value still waiting for its slot when the handler returns is sent as a request, once."""
        clock = FakeClock(autojump=False)
        progress, nc = sender(clock)
        progress.report("10%")
        await turns()
        progress.report("100%")
        await progress.finish()
        clock.advance(INTERVAL_S)
        await turns()
        assert nc.published == ["10%"]
        assert nc.requested == ["100%"]


def test_a_thread_left_running_past_its_loop_reports_into_nothing() -> None:
    """A `def` handler a drain left running in its thread may report after the worker's loop closed: the
    report is dropped, not raised into the handler (which would cut its run short)."""

    async def make() -> ProgressSender:
        return sender(FakeClock(autojump=False))[0]

    loop = asyncio.new_event_loop()
    progress = loop.run_until_complete(make())
    loop.close()
    failures: list[BaseException] = []

    def handler() -> None:
        try:
            progress.report(1)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            failures.append(exc)

    thread = threading.Thread(target=handler)
    thread.start()
    thread.join(10)
    assert failures == []
