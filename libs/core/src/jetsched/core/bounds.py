"""What every input and every stored record must fit. Pure.

Everything that arrives over NATS is untrusted (DESIGN.md §7), and what is accepted once is read, copied
and re-sent for the rest of a job's life: a value that a later step cannot encode, or a record that no
longer fits once a lease, an error history and a result are added, would wedge the job and crash-loop the
service that tries. So limits hold at the door, for every later state of a record:

- **JSON values** (payloads, results): nested at most `MAX_JSON_DEPTH` levels, integers within 64-bit
  signed range (what orjson, Go and every service can encode), no NaN or infinities (JSON has none).
- **Strings a worker reports** (error type, message, traceback) are cut to a size in *encoded* bytes, so
  an error history of `MAX_ERRORS` entries has a known worst case whatever characters they hold.
- **A record's growth**: from its creation a record can gain at most `GROWTH_BYTES` (a lease, a full error
  history, a result, trace context); intake refuses a job whose record would not fit the server's message
  limit with that margin to spare.
"""

from __future__ import annotations

import math
from typing import Any

import pydantic_core

#: Levels of arrays and objects a payload or result may nest.
MAX_JSON_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: Largest result stored with a job, in bytes of JSON.
MAX_RESULT_BYTES = 64 * 1024
#: A job keeps this many entries of error history.
MAX_ERRORS = 20
#: A progress report, the whole message (its value is what a handler passed to `job.progress()`).
MAX_PROGRESS_BYTES = 4096
#: Encoded bytes kept of an error's type, message and traceback (the traceback keeps its end).
MAX_ERROR_TYPE_BYTES = 256
MAX_ERROR_MESSAGE_BYTES = 2048
MAX_TRACEBACK_BYTES = 8192
#: Encoded bytes kept of the name of the worker that ran a failed attempt.
MAX_ERROR_WORKER_BYTES = 256
#: Trace context carried in headers and stored with a job: `tracestate` and `baggage` are bounded.
MAX_TRACESTATE_BYTES = 512
MAX_BAGGAGE_BYTES = 8192
#: Headroom for everything else a record or message may gain (lease, last run, timestamps, keys, headers).
SLACK_BYTES = 8192
#: The most one error history entry can take, encoded: its texts and worker name, and 384 bytes for the
#: rest (keys, attempt, times, kind, session id).
ERROR_ENTRY_BYTES = (
    MAX_ERROR_TYPE_BYTES + MAX_ERROR_MESSAGE_BYTES + MAX_TRACEBACK_BYTES + MAX_ERROR_WORKER_BYTES + 384
)
#: The most a record can grow after it was created.
GROWTH_BYTES = (
    MAX_ERRORS * ERROR_ENTRY_BYTES + MAX_RESULT_BYTES + MAX_TRACESTATE_BYTES + MAX_BAGGAGE_BYTES + SLACK_BYTES
)


def check_json(value: Any) -> Any:
    """`value` if it is JSON every component can encode; ValueError naming what is wrong otherwise."""
    # Iterative, so a hostile depth costs a loop, not the stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise ValueError("integers must be within the 64-bit signed range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
    return value


def json_bytes(value: Any) -> int:
    """Bytes `value` takes as compact JSON, encoded as records encode it."""
    return len(pydantic_core.to_json(value))


def clip(text: str, max_bytes: int, keep_end: bool = False) -> str:
    """`text` cut so that it takes at most `max_bytes` as a JSON string (quotes and escapes counted).

    Control characters other than newline and tab become U+FFFD first: they escape to six bytes each.
    """
    cleaned = (
        text if text.isprintable() else "".join(c if c >= " " or c in "\n\t" else "\ufffd" for c in text)
    )
    if json_bytes(cleaned) <= max_bytes:
        return cleaned
    # The longest part that fits, by bisection on its length in characters.
    lo, hi = 0, len(cleaned)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        part = cleaned[-mid:] if keep_end else cleaned[:mid]
        if json_bytes(part) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return cleaned[-lo:] if keep_end and lo else cleaned[:lo]


def record_budget(max_payload: int) -> int:
    """The largest record intake may create when messages may be `max_payload` bytes: room for growth."""
    return max_payload - GROWTH_BYTES
