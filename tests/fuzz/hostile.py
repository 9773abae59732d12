"""Hostile values: the numbers, strings, times and shapes a careless or malicious client sends.

Every generator takes a `random.Random` and nothing else, so a run is a pure function of its seed. Why not
hypothesis for the bulk: `strategy.example()` is documented as unfit for generation in bulk (it is slow, warns,
and is not seedable per call), and `@given` owns the loop, so it cannot feed a 100,000-message stream to one
live stack with checks between batches. The same generators become hypothesis strategies through
`st.randoms(use_true_random=False)` (see `strategies.py`), which lets hypothesis drive and shrink every choice
made here; property tests use that, the driver uses a seeded `Random`.

JSON is written with the standard library on purpose: it emits `NaN`/`Infinity` literals, ints of any size and
lone surrogate escapes, which orjson and pydantic refuse to write but services must survive reading.
"""

from __future__ import annotations

import json
import math
import string
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import random

#: Ints that break 32/64-bit storage, JSON parsers, or coercion (`"5"`, `True`).
INTS: tuple[Any, ...] = (
    0, -1, 1, 5, 9, 10, 999, 1000, 1001, 100_000, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
    -(2**63) - 1, -(2**64), 10**20, 10**400, -(10**400), "5", "0x10", "", True, False, None, 1.5, 1e308,
    math.nan, math.inf, -math.inf, [], {}, [1],
)  # fmt: skip
#: Floats at the edges of IEEE 754: subnormals, the largest finite, the non-finite ones.
FLOATS: tuple[Any, ...] = (
    0.0, -0.0, 1e-310, 5e-324, 1e-9, 0.5, 1.0, 2.0, 10.0, 1e308, 1.7976931348623157e308, math.inf, -math.inf,
    math.nan, -1.0, "1.5", "NaN", True, 2**64, 10**400, None,
)  # fmt: skip
#: Ids and names that are wildcards, subject separators or otherwise not what a field means.
IDS: tuple[str, ...] = (
    "*", ">", "a.b", "a b", " ", "", ".", "..", "a*", "$KV.jobs.>", "jobs.>", "\t", "\n", "\x00", "é",
    "01KBZ3R6X9T2M0Q7D5W8C4N1HE", "01kbz3r6x9t2m0q7d5w8c4n1he", "00000000000000000000000000",
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01KBZ3R6X9T2M0Q7D5W8C4N1H", "x" * 64, "x" * 65,
    "x" * 300, "../../etc/passwd", "%2A", "\u202e", "🙂", "\ud800",
)  # fmt: skip
#: Time zones: real, fake, prefixes of real ones (`Europe`), paths, offsets.
TIMEZONES: tuple[str, ...] = (
    "UTC", "Europe", "Europe/", "America", "Europe/Paris", "europe/paris", "Etc/GMT+14", "Etc/GMT-14",
    "Europe/Kyiv", "America/Argentina/ComodRivadavia", "EST5EDT", "Factory", "localtime", "posixrules",
    "right/UTC", "posix/Europe/Paris", "../../../etc/passwd", "/etc/localtime", "+01:00", "Z", "", " ",
    "\x00", "UTC\x00", "Zulu", "x" * 300, "Europe/" + "x" * 300, "🙂",
)  # fmt: skip
#: `run_at`, `start_at`, `end_at`: epoch numbers, space instead of `T`, offsets without colon, impossible dates.
TIMES: tuple[Any, ...] = (
    "2026-01-01T10:00:00Z", "2026-01-01T10:00:00+01:00", "2026-01-01 10:00:00", "2026-01-01T10:00:00+0100",
    "2026-01-01T10:00:00", "2026-01-01", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2026-01-01T10:00:00+25:00", "2026-01-01T10:00:00-23:59",
    "2026-01-01T10:00:60Z", "2126-01-01T00:00:00Z", "2026-01-01T10:00:00.123456789Z", "now", "", "T",
    1767225600, 1767225600000, 1767225600.5, 10**400, -1, 0, 1e308, math.nan, True, None,
)  # fmt: skip
CRONS: tuple[str, ...] = (
    "* * * * *", "*/1 * * * * *", "0 0 31 2 *", "0 0 30 2 *", "60 * * * *", "* * * *", "* * * * * * *",
    "@hourly", "@reboot", "0 0 * * 8", "*/0 * * * *", "1-1000000000 * * * *", "", " ", "L W # ?",
    "0 2 * * *", "30 2 * * *", "* " * 200, "🙂 * * * *",
)  # fmt: skip
WORDS: tuple[str, ...] = (
    "", " ", "a", "email.send", "\x00", "é", "🙂", "\ud800", "\u202e", "${jndi:ldap://x}", "'; DROP TABLE jobs",
    "null", "true", "{}", "\r\n", "a\nb", "NaN",
)  # fmt: skip
#: Raw bodies that are not JSON objects, or not JSON, or not UTF-8.
RAW: tuple[bytes, ...] = (
    b"", b" ", b"{", b"}", b"{{", b'{"', b'{"id":', b'{"id": "', b"null", b"[]", b"[{}]", b'"str"', b"5",
    b"true", b"NaN", b"-Infinity", b"\xff\xfe", b"\xc3\x28", b'{"id": "\xff"}', b"\x00" * 16,
    b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b'{"id": "\\ud800"}', b"1e400", b"-0", b"{}" * 100,
)  # fmt: skip


def text(rng: random.Random, max_len: int = 300) -> str:
    """A string of mixed ASCII, control and non-BMP characters, up to `max_len` long."""
    alphabet = string.printable + "éß中🙂\u202e\x00\x7f"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


def long_string(rng: random.Random) -> str:
    return rng.choice("ax🙂") * rng.choice((129, 257, 300, 4001, 65_537, 200_000))


def nested(rng: random.Random, depth: int | None = None) -> Any:
    """Deeply nested JSON (100–300 levels by default) of lists or objects."""
    levels = depth if depth is not None else rng.randint(100, 300)
    value: Any = rng.choice((0, "x", None, []))
    for _ in range(levels):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def string_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(WORDS)
    if roll < 0.6:
        return rng.choice(IDS)
    if roll < 0.8:
        return text(rng, 64)
    if roll < 0.9:
        return long_string(rng)
    return anything(rng, depth=2)


def int_value(rng: random.Random) -> Any:
    return rng.choice(INTS) if rng.random() < 0.85 else anything(rng, depth=2)


def float_value(rng: random.Random) -> Any:
    return rng.choice(FLOATS) if rng.random() < 0.85 else anything(rng, depth=2)


def anything(rng: random.Random, depth: int = 3) -> Any:
    """Any JSON value (and NaN/huge ints), shallow by default."""
    roll = rng.random()
    if depth <= 0 or roll < 0.5:
        return rng.choice((*INTS[:20], *FLOATS[:12], *WORDS, *IDS[:10]))
    if roll < 0.7:
        return [anything(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.9:
        return {text(rng, 8): anything(rng, depth - 1) for _ in range(rng.randint(0, 4))}
    if roll < 0.95:
        return nested(rng, rng.randint(20, 120))
    return long_string(rng)


def dumps(value: Any) -> bytes:
    """JSON as the standard library writes it: NaN and Infinity literals, any int, escaped surrogates."""
    return json.dumps(value, allow_nan=True).encode()


def nested_raw(rng: random.Random) -> bytes:
    """Nesting too deep for recursive encoders (and most decoders), built as text."""
    levels = rng.choice((128, 199, 255, 256, 300, 513, 1000, 5000))
    if rng.random() < 0.5:
        return b"[" * levels + b"]" * levels
    return b'{"a":' * levels + b"0" + b"}" * levels


def raw_body(rng: random.Random, shaped: bytes) -> bytes:
    """Not a well-formed JSON object: a fixed oddity, a cut of the shaped body, or random bytes."""
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(RAW)
    if roll < 0.7 and shaped:
        return shaped[: rng.randrange(len(shaped))]
    if roll < 0.85:
        return nested_raw(rng)
    return rng.randbytes(rng.randint(1, 512))
