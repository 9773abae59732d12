"""Fire times of a schedule: cron expressions in an IANA time zone, or fixed intervals. Pure.

Cron is evaluated on the zone's wall clock (croniter over naive local times) and each wall-clock time is
then mapped to instants, where daylight saving decides:

- **gap** (spring forward: 02:30 does not exist in Berlin on the last Sunday of March):
  `shift` fires at the instant the wall-clock time would have been had the clock not jumped, i.e. after
  the jump by the gap's length (02:30 → 03:30 CEST, as Python's `fold=0`, PostgreSQL and Quartz do);
  `skip` does not fire for it.
- **fold** (fall back: 02:30 happens twice in Berlin on the last Sunday of October):
  `first` fires at the first occurrence (CEST), `second` at the second (CET), `both` at each — the only
  setting that fires a nominal time twice, and only when asked.

Australia/Lord_Howe shifts by 30 minutes, so a gap or fold there is half an hour; nothing here assumes an
hour. The results are UTC epoch milliseconds, sorted and unique.

Evaluation costs croniter steps in proportion to the instants asked for (plus, on a daylight-saving night,
the matches of the shifted hour), never to the width of the window searched: every second of September is
as cheap to look up as one fire a day. `MAX_STEPS` bounds one evaluation all the same; past it
`cron_fires` raises `TooManySteps` with what it had found.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DAY_MS = 86_400_000
#: Wider than any daylight-saving shift in the tz database (2 h), so a window never misses a fold.
_MARGIN = timedelta(hours=3)
#: croniter's own bound on how far a match may be (29 February needs 8 years at worst).
_MAX_YEARS = 9
#: The most croniter steps one evaluation takes (~30-250 us each). An evaluation needs about `limit` plus,
#: near a daylight-saving transition, the matches of up to twice the shift (every second: ~7,200).
MAX_STEPS = 20_000


class TooManySteps(ValueError):
    """An evaluation reached `MAX_STEPS`; `found` holds the instants it was sure of (earliest first)."""

    def __init__(self, expr: str, found: list[int]) -> None:
        super().__init__(f"evaluating {expr!r} takes more than {MAX_STEPS} steps of the cron iterator")
        self.found = found


class DstGap(StrEnum):
    """What a schedule does for a wall-clock time that does not exist (spring forward)."""

    #: Fire after the jump, shifted by the gap's length.
    SHIFT = "shift"
    #: Do not fire for it.
    SKIP = "skip"


class DstFold(StrEnum):
    """What a schedule does for a wall-clock time that happens twice (fall back)."""

    #: Fire at the first occurrence only.
    FIRST = "first"
    #: Fire at the second occurrence only.
    SECOND = "second"
    #: Fire at both.
    BOTH = "both"


_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError if unknown."""
    # A zone name becomes a file path inside zoneinfo: a directory (`Europe`), an over-long or odd name
    # raises OSError and the like there, and every failure is the same "unknown" to a client.
    try:
        if len(name) > 64 or not _ZONE_NAME.match(name):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name[:64]!r} (use an IANA name such as Europe/Berlin)") from exc


def check_cron(expr: str) -> str:
    """A 5-field (minute first) or 6-field (second first) cron expression; ValueError otherwise."""
    fields = expr.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expr, second_at_beginning=len(fields) == 6):
        raise ValueError(f"not a 5- or 6-field cron expression: {expr!r}")
    return expr


def local_instants(naive: datetime, tz: ZoneInfo, gap: DstGap, fold: DstFold) -> list[int]:
    """The instants (epoch ms) a wall-clock time stands for in `tz`, under the daylight-saving policy."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive
    if not exists:
        return [] if gap is DstGap.SKIP else [_ms(first)]
    if first.utcoffset() == second.utcoffset():
        return [_ms(first)]
    chosen = {DstFold.FIRST: [first], DstFold.SECOND: [second], DstFold.BOTH: [first, second]}[fold]
    return [_ms(t) for t in chosen]


def cron_fires(
    expr: str, tz_name: str, after_ms: int, until_ms: int, gap: DstGap, fold: DstFold, limit: int
) -> list[int]:
    """Fire instants in (after_ms, until_ms], at most `limit`, earliest first; TooManySteps past
    `MAX_STEPS` croniter steps."""
    tz = zone(tz_name)
    seconds_first = len(expr.split()) == 6
    found: list[int] = []
    budget = [MAX_STEPS]
    lo = after_ms
    span = 3_600_000
    while lo < until_ms and len(found) < limit:
        hi = min(until_ms, lo + span)
        window = _window(expr, seconds_first, tz, lo, hi, gap, fold, limit - len(found), budget)
        if window is None:
            raise TooManySteps(expr, found[:limit])
        found += window
        lo = hi
        span = min(span * 4, 400 * DAY_MS)
        if hi - after_ms > _MAX_YEARS * 366 * DAY_MS:
            break
    return found[:limit]


def interval_fires(every_ms: int, anchor_ms: int, after_ms: int, until_ms: int, limit: int) -> list[int]:
    """anchor + k·every (k ≥ 1) in (after_ms, until_ms], at most `limit`."""
    k = max(1, (after_ms - anchor_ms) // every_ms + 1)
    fires: list[int] = []
    while len(fires) < limit:
        at = anchor_ms + k * every_ms
        if at > until_ms:
            break
        if at > after_ms:
            fires.append(at)
        k += 1
    return fires


def _window(
    expr: str,
    seconds_first: bool,
    tz: ZoneInfo,
    lo: int,
    hi: int,
    gap: DstGap,
    fold: DstFold,
    limit: int,
    budget: list[int],
) -> list[int] | None:
    """The first `limit` instants in (lo, hi]; None once `budget` (croniter steps left) runs out.

    Wall clock and instants move together except within a shift of a transition, so the walk over
    wall-clock times starts before `lo`'s only by how much the offset falls around it (the gap-shifted
    times just after a spring forward), ends after `hi`'s only by how much it rises, and stops once it holds
    `limit` instants and is past the wall-clock time of the limit-th by how much the offset falls just
    before it (a fold: later wall-clock times of its first pass are earlier instants).
    """
    margin_ms = int(_MARGIN.total_seconds() * 1000)
    # Offsets are sampled at ±_MARGIN: at most one transition lies within that of any instant.
    start = _naive(lo, tz) - max(timedelta(0), _offset(lo, tz) - min(_around(lo, tz, margin_ms)))
    end = _naive(hi, tz) + max(timedelta(0), max(_around(hi, tz, margin_ms)) - _offset(hi, tz))
    it = croniter(expr, start, second_at_beginning=seconds_first, max_years_between_matches=_MAX_YEARS)
    out: set[int] = set()
    last: int | None = None
    stop_at: datetime | None = None
    while True:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        try:
            naive = it.get_next(datetime)
        except Exception:  # croniter gives up past max_years_between_matches (e.g. 30 February)
            break
        if naive > end:
            break
        out.update(t for t in local_instants(naive, tz, gap, fold) if lo < t <= hi)
        if len(out) >= limit:
            kth = sorted(out)[limit - 1]
            if kth != last:
                last = kth
                fall = _offset(kth - margin_ms, tz) - _offset(kth, tz)
                stop_at = _naive(kth, tz) + max(timedelta(0), fall)
            assert stop_at is not None
            if naive >= stop_at:
                break
    return sorted(out)[:limit]


def _around(ms: int, tz: ZoneInfo, margin_ms: int) -> tuple[timedelta, timedelta]:
    return _offset(ms - margin_ms, tz), _offset(ms + margin_ms, tz)


def _offset(ms: int, tz: ZoneInfo) -> timedelta:
    return datetime.fromtimestamp(ms / 1000, tz).utcoffset() or timedelta(0)


def _naive(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None)


def _ms(aware: datetime) -> int:
    return int(aware.timestamp() * 1000)


def to_local(ms: int, tz_name: str) -> str:
    """An instant as an RFC 3339 wall-clock time in the zone, e.g. 2026-10-25T02:30:00+01:00."""
    return datetime.fromtimestamp(ms / 1000, zone(tz_name)).isoformat(timespec="seconds")


def to_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
