"""Whether a worker's progress report replaces what is stored for its job (pure).

Progress lives beside the record, in its own bucket, so a stream of reports never contends with the
record's transitions (its CAS writes) nor grows it. A report counts only from the attempt holding the
lease, fenced by its token exactly as an outcome is: a late report from an attempt that was timed out or
rescued, or one forged without the token, changes nothing. Reports may arrive out of order (intake
replicas handle them concurrently), so each carries its attempt's running count and only a newer one
replaces the stored one; the write itself is a CAS on the entry, so two replicas cannot both win.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import states
from .errors import Fenced
from .models import Progress, token_hash

if TYPE_CHECKING:
    from .models import JobRecord, ProgressReport


def accept(
    record: JobRecord, stored: Progress | None, report: ProgressReport, now_ms: int
) -> Progress | None:
    """The entry to store for `report`, or None if it changes nothing (fenced out, or not newer)."""
    try:
        states.fence(record, report.attempt, token_hash(report.token))
    except Fenced:
        return None
    if stored is not None and (stored.attempt, stored.seq) >= (report.attempt, report.seq):
        return None
    return Progress(attempt=report.attempt, seq=report.seq, value=report.value, at_ms=now_ms)


def current(record: JobRecord, stored: Progress | None) -> Progress | None:
    """The stored progress if it belongs to the record's latest attempt (an earlier attempt's is stale)."""
    if stored is None or stored.attempt != record.attempt:
        return None
    return stored
