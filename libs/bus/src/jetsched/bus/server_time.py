"""Learning the NATS servers' time (`ServerClock`) from the `ts` a stream's leader puts in its info reply.

`$JS.API.STREAM.INFO` is answered by the stream's leader with its clock's reading (`ts`, RFC 3339 with
nanoseconds), taken before the reply reached us — so reading our own clock after it arrives gives the
lower bound `ServerClock` wants, off by at most the reply's travel time. It is a read: nothing stored,
nothing replicated. The jobs stream's leader is asked, as it is the clock the records' own writes see.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from jetsched.core import subjects

from .retry import retry

if TYPE_CHECKING:
    from jetsched.core.clock import ServerClock

    from .direct import Connection

log = logging.getLogger(__name__)

#: How often a running service asks again (the clock's window is a minute; drift is ~µs per second).
PROBE_S = 1.0
PROBE_TIMEOUT_S = 1.0
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_stamp(text: str) -> int:
    """Epoch nanoseconds of an RFC 3339 time with up to nine fractional digits (Python parses six)."""
    match = _STAMP.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r}")
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


async def probe(nc: Connection, clock: ServerClock, stream: str | None = None) -> None:
    """Ask one stream leader for its time and feed it to `clock`. Raises on no answer (transient)."""
    subject = f"$JS.API.STREAM.INFO.{stream or subjects.kv_stream(subjects.JOBS_BUCKET)}"
    data, _ = await nc.request_raw(subject, b"", PROBE_TIMEOUT_S)
    after = clock.local.now()
    stamp = orjson.loads(data).get("ts")
    if not isinstance(stamp, str):
        raise ValueError(f"no server time in the stream info reply: {data[:200]!r}")
    clock.observe(parse_stamp(stamp), after)


async def sync(nc: Connection, clock: ServerClock) -> None:
    """Until the first observation lands (the cluster may still be electing the stream's leader)."""

    def waiting(exc: BaseException, delay: float) -> None:
        log.warning("server time not learnt yet; retrying", extra={"error": repr(exc), "retry_s": delay})

    await retry(lambda: probe(nc, clock), on_retry=waiting, clock=clock.local)
    log.info("server time learnt", extra={"offset_ms": clock.offset_ms()})


class ServerTimeProbe:
    """Keeps a running service's `ServerClock` fresh: one stream-info read a second."""

    name = "server-time"

    def __init__(self, nc: Connection, clock: ServerClock) -> None:
        self.nc = nc
        self.clock = clock

    async def run(self) -> None:
        while True:
            await self.clock.sleep(PROBE_S)
            try:
                await probe(self.nc, self.clock)
            except Exception as exc:  # a failover or a cut: the last bounds stand meanwhile
                log.debug("server time not read", extra={"error": repr(exc)})
