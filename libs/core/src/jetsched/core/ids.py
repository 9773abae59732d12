"""ULIDs: 128-bit, time-sortable ids (48-bit epoch ms + 80 random bits) in Crockford base32.

Ids made in one process within one millisecond increase monotonically (the random part is incremented), so
sorting by id is sorting by submission order — the ready queues use that as the FIFO tie-breaker.
"""

from __future__ import annotations

import functools
import os
import re
import threading

#: Crockford base32, as ULIDs spell their 5-bit groups.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
#: A list page's cursor: the last job id of a page of live jobs (id order), or `history.<sequence>` past a
#: page of finished ones (history's order: when they ended).
CURSOR_RE = re.compile(r"^([0-9A-HJKMNP-TV-Z]{26}|history\.[0-9]{1,19})$")
_HISTORY_CURSOR = "history."


def history_cursor(sequence: int) -> str:
    return f"{_HISTORY_CURSOR}{sequence}"


def history_sequence(cursor: str | None) -> int | None:
    """The history sequence a cursor continues after, or None for a job id (or no cursor)."""
    if cursor is None or not cursor.startswith(_HISTORY_CURSOR):
        return None
    return int(cursor[len(_HISTORY_CURSOR) :])


class UlidFactory:
    """Makes monotonic ULIDs from an injected millisecond clock value."""

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_rand = 0
        self._lock = threading.Lock()

    def new(self, now_ms: int) -> str:
        with self._lock:
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                rand = self._last_rand + 1
            else:
                rand = int.from_bytes(os.urandom(10), "big")
            self._last_ms, self._last_rand = now_ms, rand
        return encode((now_ms << 80) | (rand & ((1 << 80) - 1)))


#: Every pair of characters, by the ten bits they stand for; and where each pair's bits start.
_PAIRS = [high + low for high in ALPHABET for low in ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -10, -10))
_BITS = (1 << 130) - 1


def encode(value: int) -> str:
    """The low 130 bits of `value` as 26 Crockford base32 characters, most significant first."""
    value &= _BITS
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


@functools.lru_cache(maxsize=1024)  # asked once per step job id of a workflow: 2,000 or 10,000 times over
def timestamp_ms(ulid: str) -> int:
    """The millisecond timestamp a ULID was made at."""
    value = 0
    for ch in ulid[:10]:
        value = value * 32 + ALPHABET.index(ch)
    return value


_default = UlidFactory()
new_ulid = _default.new
