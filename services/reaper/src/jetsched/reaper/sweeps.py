"""Which running jobs need rescuing, decided from the lease index and the heartbeats. Pure.

- **lost**: the session holding the job has gone silent past its deadline (or was never heard from, a
  deadline's worth of time after this reaper first saw the job). The attempt counts as failed
  (`states.lose`): retried with backoff, or dead when out of attempts — a job that keeps killing its
  workers ends dead instead of looping (poison pill).
- **lost** too: the session is alive but announced by another process than the one it was claimed for
  (`incarnation`): a worker that keeps its session id across restarts came back without the attempt.
- **orphan** (a suspect here, confirmed by the shell): the session is alive, but a heartbeat sent well
  after the claim does not list the job, and no outcome report for it is pending in the outcomes stream —
  the work message never arrived (a dispatcher died between its CAS and its send, or the message was
  dropped). The job goes back to ready without using an attempt (`states.orphan`). A worker lists a job
  from receipt until its report is durably stored, so a finished job is always in one place or the other;
  the rescue is a fenced CAS, so a report applied meanwhile wins.
- **timeout**: the session is alive and holds the job, but the attempt has run past the job's timeout
  plus a grace without a report — a worker that does not enforce timeouts itself, or a handler stuck in
  a thread. The attempt fails as timed out (`states.time_out`) and the worker is told to stop it. Only
  the job's own declared timeout does this: a healthy long job is never rescued by wall-clock time.

Times are this process's own clock readings (when it first saw the claim, when it heard each heartbeat),
never another host's, so clock skew between hosts cannot rescue a healthy job early.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.core.models import JobRecord
    from jetsched.core.workers import WorkerRegistry

#: A claim older than this (seen here) must appear in its live session's heartbeats.
ORPHAN_GRACE_MS = 1500
#: A session never heard from is presumed lost this long after we first saw it hold a job.
UNSEEN_SESSION_MS = 2000


#: How long past its timeout an attempt may run before the reaper fails it (the worker normally reports first).
TIMEOUT_GRACE_MS = 2000


class Verdict(StrEnum):
    LOST = "lost"
    ORPHAN = "orphan"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class Running:
    record: JobRecord
    revision: int
    seen_ms: int


def sweep(
    running: dict[str, Running], registry: WorkerRegistry, now_ms: int, started_ms: int
) -> list[tuple[Running, Verdict]]:
    """Running jobs whose session is lost, or that their live session does not hold, or that ran past
    their timeout — counted from the claim (the dispatcher's reading of the servers' clock, as this
    one's is) or from when this replica first saw it, whichever is earlier: a job whose partition moved
    here, or that a restart replayed, is not given its whole timeout again."""
    found: list[tuple[Running, Verdict]] = []
    for entry in running.values():
        lease = entry.record.lease
        if lease is None:
            continue
        watched_since = max(entry.seen_ms, started_ms)
        session = registry.sessions.get(lease.session)
        if session is None or not registry.alive(lease.session, now_ms):
            known_dead = session is not None or lease.session in registry.lost
            if known_dead or now_ms - watched_since > UNSEEN_SESSION_MS:
                found.append((entry, Verdict.LOST))
        elif lease.incarnation is not None and session.heartbeat.incarnation not in (None, lease.incarnation):
            found.append((entry, Verdict.LOST))
        elif session.last_seen_ms - watched_since > ORPHAN_GRACE_MS and not _lists(
            session.heartbeat.running, lease.attempt, entry.record.id
        ):
            found.append((entry, Verdict.ORPHAN))
        elif (
            now_ms - min(entry.seen_ms, lease.claimed_at_ms)
            > entry.record.timeout_s * 1000 + TIMEOUT_GRACE_MS
        ):
            found.append((entry, Verdict.TIMEOUT))
    return found


def _lists(running: tuple[tuple[str, int], ...], attempt: int, job_id: str) -> bool:
    return (job_id, attempt) in running


#: A job a session lists without holding its lease for this long is confirmed against the record.
STALE_GRACE_MS = 1000


def stale_holdings(
    running: dict[str, Running],
    registry: WorkerRegistry,
    suspects: dict[tuple[str, str, int], int],
    now_ms: int,
    seen: Callable[[str], bool] = lambda _: True,
) -> list[tuple[str, str, int]]:
    """(session, job id, attempt) that a live session still runs though the lease is no longer its own.

    That happens when a job was cancelled, rescued from a session presumed lost that came back, or timed
    out server-side: the worker must be told to stop. A listing that disagrees with this view only briefly
    is normal (the view lags the claim), so a holding becomes a verdict after `STALE_GRACE_MS`, and the
    shell confirms it against the stored record before telling the worker. `suspects` carries first
    sightings between sweeps; entries that resolve are dropped. `seen(job_id)`: whether `running` shows
    that job's partition (the others are left to their replicas).
    """
    listed: set[tuple[str, str, int]] = set()
    for session in registry.sessions.values():
        for job_id, attempt in session.heartbeat.running:
            if not seen(job_id):
                continue
            entry = running.get(job_id)
            lease = entry.record.lease if entry is not None else None
            if lease is not None and lease.attempt == attempt and lease.session == session.id:
                continue
            listed.add((session.id, job_id, attempt))
    for key in list(suspects):
        if key not in listed:
            del suspects[key]
    found = []
    for key in listed:
        first = suspects.setdefault(key, now_ms)
        if now_ms - first >= STALE_GRACE_MS:
            found.append(key)
            suspects[key] = now_ms  # ask again after another grace period if it keeps running
    return found
