"""What one transition the reaper made means for the job counters. Pure: a decision, recorded by the shell.

The reaper ends attempts two ways — an outcome report applied, a rescue — and either can succeed a
job, fail an attempt, queue it again, hand it back unrun or end it dead; the counters follow from the
record before and after, whichever way it went.
"""

from __future__ import annotations

from dataclasses import dataclass

from jetsched.core.models import JobRecord, JobState


@dataclass(frozen=True, slots=True)
class Tally:
    #: Counter name in `bus/instruments.py` → its attributes.
    counts: tuple[tuple[str, dict[str, str]], ...]
    #: The attempt's run time (claim to now, seconds) and its attributes, when an attempt ended.
    run: tuple[float, dict[str, str]] | None


def tally(before: JobRecord, after: JobRecord, now_ms: int) -> Tally:
    capability = {"capability": before.capability}
    counts: list[tuple[str, dict[str, str]]] = []
    ended: str | None = None
    last = after.errors[-1] if after.errors else None
    fresh = last is not None and last.attempt == before.attempt and last != (before.errors or [None])[-1]
    failure = last if fresh else None
    if after.state is JobState.SUCCEEDED:
        counts.append(("succeeded", capability))
        ended = "succeeded"
    elif after.releases > before.releases:
        counts.append(("released", capability))
        ended = "released"
    elif failure is not None:
        counts.append(("failed", {**capability, "kind": failure.kind.value}))
        ended = "failed"
        if after.state in (JobState.READY, JobState.SCHEDULED):
            counts.append(("retried", capability))
    if after.state is JobState.DEAD:
        kind = after.errors[-1].kind.value if after.errors else "unknown"
        counts.append(("dead", {**capability, "kind": kind}))
    started = before.started_at_ms
    run = None
    if ended is not None and started is not None:
        run = (max(0, now_ms - started) / 1000, {**capability, "outcome": ended})
    return Tally(tuple(counts), run)
