"""One compare-and-set update loop for every KV value: read → decide → write if unchanged → on a lost CAS,
read again and decide again.

The writer that wins the CAS owns the transition (`records.py`); a loser learns nothing from its loss
but that someone else wrote first — the loss may even be spurious (nats-server #7281) — so it re-reads
and re-decides from what is stored, never from what it had. The decision (`verb`) is pure and may refuse
(raise) once it no longer applies to the stored value; that passes through to the caller, as does any
storage error. After `tries` lost CASes in a row the value is too busy to change now: `KeptChanging`,
which each caller turns into what a lost race means for it (an `unavailable` reply, a redelivery, a
re-armed timer).

`stored.StoredModel` reads and writes one key of a `Store` as a pydantic model, for values other than
job records (those go through `Records`, which writes their timer entries too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from jetsched.core.errors import Conflict

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

V = TypeVar("V")
W = TypeVar("W")
R = TypeVar("R")

#: Lost CASes in a row before an update gives up (contention that long means a hot key or a failover).
TRIES = 10


class KeptChanging(Conflict):
    """Every try of a CAS update lost to another writer."""


async def cas_update(
    read: Callable[[], Awaitable[tuple[V, int]]],
    verb: Callable[[V], W],
    write: Callable[[W, int], Awaitable[R]],
    *,
    tries: int = TRIES,
    current: tuple[V, int] | None = None,
    what: str = "the value",
) -> tuple[V, W, R]:
    """Write `verb(value)` if the value is still at the revision it was read at, re-reading on a lost CAS.

    Args:
        read: the stored value and its revision.
        verb: the new value from the stored one; raises to refuse (passed through).
        write: CAS-write the new value at the revision read; raises `Conflict` when it lost.
        tries: lost CASes before giving up.
        current: a value and revision already read (saves the first read).
        what: names the value in `KeptChanging`.

    Returns:
        (the value decided on, the value written, what `write` returned).

    Raises:
        KeptChanging: `tries` CASes in a row were lost.
    """
    value, revision = current if current is not None else await read()
    for attempt in range(tries):
        if attempt:
            value, revision = await read()
        changed = verb(value)
        try:
            return value, changed, await write(changed, revision)
        except Conflict:
            continue
    raise KeptChanging(f"{what}: still changing after {tries} tries")
