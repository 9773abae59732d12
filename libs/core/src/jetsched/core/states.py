"""The job state machine: pure verbs from one record to the next.

    scheduled ──due──▶ ready ──claim──▶ running ──complete──▶ succeeded
        ▲                ▲                 │
        └──── fail/lose (backoff > 0) ─────┤──fail/lose (out of attempts, fatal)──▶ dead ──revive──▶ ready
                         └── release, or fail with no delay
    any non-terminal ──cancel──▶ cancelled

Each verb takes the record as read (with its revision held by the caller) and returns the record to write
with a compare-and-set on that revision. A verb raises `TransitionError` when it does not apply; the caller
then acts on the record as it is (a lost CAS means: re-read and decide again). Verbs never do I/O.

Fencing: a report (complete, fail, release) must name the attempt and token of the record's current lease.
`attempt` only ever grows — a claim increments it — so a worker that lost its lease (timed out, presumed
dead) can never overwrite the outcome of the attempt that replaced it. The record keeps only the token's
hash, so reading a record does not let anyone report for its attempt.

Bounds: what a worker reports is cut to size here, where it is applied (error texts by encoded bytes, a
result over `MAX_RESULT_BYTES` or not encodable fails the attempt instead), so a record stays within the
growth that intake left room for (`bounds.py`), whatever the worker sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from . import backoff, bounds
from .errors import Fenced, NotDue, TransitionError
from .models import (
    TERMINAL,
    ErrorInfo,
    ErrorKind,
    JobRecord,
    JobRequest,
    JobState,
    Lease,
    Outcome,
    OutcomeError,
    OutcomeStatus,
    Run,
    token_hash,
)

if TYPE_CHECKING:
    from .types import JSON

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def accept(
    request: JobRequest, job_id: str, capability: str, now_ms: int, trace: dict[str, str] | None
) -> JobRecord:
    """The record a valid submit creates: `ready` now, or `scheduled` for later."""
    if request.run_at is not None:
        # Exact, and rounded up: a job never starts before its run_at, not even by a fraction of a ms.
        micros = (request.run_at - _EPOCH) // timedelta(microseconds=1)
        run_at_ms = -(-micros // 1000)
    else:
        run_at_ms = now_ms + (request.delay_ms or 0)
    ready = run_at_ms <= now_ms
    return JobRecord(
        id=job_id,
        capability=capability,
        payload=request.payload,
        priority=request.priority,
        state=JobState.READY if ready else JobState.SCHEDULED,
        ready_since_ms=run_at_ms if ready else None,
        max_attempts=request.max_attempts,
        timeout_s=request.timeout_s,
        heartbeat_timeout_s=request.heartbeat_timeout_s,
        labels=request.labels,
        concurrency_key=request.concurrency_key,
        expires_at_ms=None if request.expires_in_ms is None else run_at_ms + request.expires_in_ms,
        backoff=request.backoff,
        run_at_ms=run_at_ms,
        key=request.key,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
        trace=trace,
    )


def due(rec: JobRecord, now_ms: int) -> JobRecord:
    """scheduled → ready, once the due time has passed (a timer may wake early; this checks)."""
    _require(rec, JobState.SCHEDULED, "due")
    if now_ms < rec.run_at_ms:
        raise NotDue(f"{rec.id} is due at {rec.run_at_ms}, now is {now_ms}")
    first = rec.ready_since_ms if rec.ready_since_ms is not None else rec.run_at_ms
    return rec.model_copy(update={"state": JobState.READY, "updated_at_ms": now_ms, "ready_since_ms": first})


def claim(
    rec: JobRecord, worker: str, session: str, token: str, now_ms: int, incarnation: str | None = None
) -> JobRecord:
    """ready → running: lease the next attempt to one worker session (as announced by `incarnation`)."""
    _require(rec, JobState.READY, "claim")
    # A ready job's due time has passed on the servers' clock (the timer saw it go by), so it bounds
    # the servers' time from below as well as our own reading does: the later of the two is the better
    # stamp, and a claim is never recorded before the due time it honoured.
    now_ms = max(now_ms, rec.run_at_ms)
    attempt = rec.attempt + 1
    lease = Lease(
        worker=worker,
        session=session,
        attempt=attempt,
        token_hash=token_hash(token),
        claimed_at_ms=now_ms,
        incarnation=incarnation,
    )
    return rec.model_copy(
        update={
            "state": JobState.RUNNING,
            "attempt": attempt,
            "lease": lease,
            "started_at_ms": now_ms,
            "updated_at_ms": now_ms,
        }
    )


#: Claims a job may hand back unrun (drains, over-delivery, lost work messages) before it ends dead:
#: a job that no worker ever keeps is a fault to look at, not a loop to run forever.
MAX_RELEASES = 100


def fence(rec: JobRecord, attempt: int, hashed_token: str) -> None:
    """Raise `Fenced` unless (attempt, token hash) hold the record's current lease."""
    lease = rec.lease
    if (
        rec.state is not JobState.RUNNING
        or lease is None
        or lease.attempt != attempt
        or lease.token_hash != hashed_token
    ):
        raise Fenced(
            f"{rec.id}: attempt {attempt} does not hold the lease (state {rec.state}, attempt {rec.attempt})"
        )


def error_info(
    attempt: int,
    now_ms: int,
    kind: ErrorKind,
    type: str,
    message: str,
    traceback: str | None = None,
    lease: Lease | None = None,
) -> ErrorInfo:
    """An error history entry, its texts cut to their bounds (the traceback keeps its end), naming the
    worker of the attempt's `lease` when it had one."""
    return ErrorInfo(
        attempt=attempt,
        at_ms=now_ms,
        kind=kind,
        type=bounds.clip(type, bounds.MAX_ERROR_TYPE_BYTES),
        message=bounds.clip(message, bounds.MAX_ERROR_MESSAGE_BYTES),
        traceback=bounds.clip(traceback, bounds.MAX_TRACEBACK_BYTES, keep_end=True) if traceback else None,
        worker=None if lease is None else bounds.clip(lease.worker, bounds.MAX_ERROR_WORKER_BYTES),
        session=None if lease is None else lease.session,
        claimed_at_ms=None if lease is None else lease.claimed_at_ms,
    )


def result_problem(result: JSON) -> str | None:
    """Why a handler's result cannot be stored, or None if it can."""
    try:
        bounds.check_json(result)
    except ValueError as exc:
        return f"the result cannot be stored: {exc}"
    size = bounds.json_bytes(result)
    if size > bounds.MAX_RESULT_BYTES:
        return f"the result is {size} bytes of JSON; the limit is {bounds.MAX_RESULT_BYTES}"
    return None


def apply_outcome(rec: JobRecord, outcome: Outcome, now_ms: int, rand: float) -> JobRecord:
    """running → the state a worker's fenced report leads to."""
    fence(rec, outcome.attempt, token_hash(outcome.token))
    status = outcome.status
    if status is OutcomeStatus.SUCCEEDED:
        problem = result_problem(outcome.result)
        if problem is None:
            return _finish(rec, JobState.SUCCEEDED, now_ms, result=outcome.result)
        info = error_info(
            outcome.attempt, now_ms, ErrorKind.ERROR, "ResultRejected", problem, lease=rec.lease
        )
        return fail(rec, info, now_ms, rand)
    if status is OutcomeStatus.RELEASED:
        return release(rec, now_ms)
    if status is OutcomeStatus.SNOOZED:
        return snooze(rec, now_ms, outcome.retry_delay_ms or 0)
    err = outcome.error or OutcomeError()
    info = error_info(
        outcome.attempt, now_ms, _KINDS[status], err.type, err.message, err.traceback, rec.lease
    )
    return fail(rec, info, now_ms, rand, retry_delay_ms=outcome.retry_delay_ms)


def release(rec: JobRecord, now_ms: int) -> JobRecord:
    """running → ready without using an attempt; dead once the job was handed back `MAX_RELEASES` times."""
    _require(rec, JobState.RUNNING, "release")
    if rec.releases >= MAX_RELEASES:
        info = error_info(
            rec.attempt,
            now_ms,
            ErrorKind.RELEASED,
            "TooManyReleases",
            f"handed back unrun {rec.releases + 1} times (the limit is {MAX_RELEASES}): workers keep"
            " refusing or never receiving it — check their capacity, labels and drains",
            lease=rec.lease,
        )
        return _finish(rec, JobState.DEAD, now_ms, errors=(*rec.errors, info)[-bounds.MAX_ERRORS :])
    return _requeue(rec, now_ms, now_ms, releases=rec.releases + 1)


def snooze(rec: JobRecord, now_ms: int, delay_ms: int) -> JobRecord:
    """running → scheduled (or ready) after `delay_ms`, without using an attempt: the handler asked to run
    later (a rate limit, a resource not ready). Nothing is added to the errors: nothing failed.

    The start deadline (`expires_at_ms`) is dropped: the job did start, which is all it promised.
    """
    _require(rec, JobState.RUNNING, "snooze")
    return _requeue(rec, now_ms, now_ms + delay_ms, snoozes=rec.snoozes + 1, expires_at_ms=None)


_KINDS = {
    OutcomeStatus.FAILED: ErrorKind.ERROR,
    OutcomeStatus.FATAL: ErrorKind.FATAL,
    OutcomeStatus.RETRY: ErrorKind.RETRY,
    OutcomeStatus.TIMEOUT: ErrorKind.TIMEOUT,
}


def fail(
    rec: JobRecord, info: ErrorInfo, now_ms: int, rand: float, retry_delay_ms: int | None = None
) -> JobRecord:
    """running → scheduled/ready for a retry after backoff, or dead when out of attempts or fatal."""
    _require(rec, JobState.RUNNING, "fail")
    errors = (*rec.errors, info)[-bounds.MAX_ERRORS :]
    if info.kind is ErrorKind.FATAL or rec.attempts_used >= rec.max_attempts:
        return _finish(rec, JobState.DEAD, now_ms, errors=errors)
    delay = (
        retry_delay_ms
        if retry_delay_ms is not None
        else backoff.delay_ms(rec.backoff, rec.attempts_used, rand)
    )
    return _requeue(rec, now_ms, now_ms + delay, errors=errors)


def lose(rec: JobRecord, now_ms: int, rand: float, message: str) -> JobRecord:
    """running → retry or dead because the worker session holding it vanished (counts as an attempt).

    The first loss retries at once: it is most likely the infrastructure's doing (a crash, a deploy, a
    node lost), and the job should run again within seconds. Further losses back off like failures, so a
    job that keeps killing its workers (a poison pill) slows down and ends dead after `max_attempts`.
    """
    info = error_info(rec.attempt, now_ms, ErrorKind.LOST, "WorkerLost", message, lease=rec.lease)
    first_loss = not any(e.kind is ErrorKind.LOST for e in rec.errors)
    return fail(rec, info, now_ms, rand, retry_delay_ms=0 if first_loss else None)


def orphan(rec: JobRecord, now_ms: int) -> JobRecord:
    """running → ready without using an attempt: the claimed job never reached its (live) worker."""
    return release(rec, now_ms)


def expired(rec: JobRecord, now_ms: int) -> bool:
    """Whether a job that has never started is past its start deadline."""
    return rec.expires_at_ms is not None and rec.attempts_used == 0 and now_ms > rec.expires_at_ms


def expire(rec: JobRecord, now_ms: int) -> JobRecord:
    """ready/scheduled → dead: the first attempt could not start before the job's deadline."""
    if rec.state not in (JobState.READY, JobState.SCHEDULED) or not expired(rec, now_ms):
        raise TransitionError(f"{rec.id} is not an unstarted job past its deadline")
    info = error_info(
        rec.attempt,
        now_ms,
        ErrorKind.EXPIRED,
        "Expired",
        f"not started by its deadline ({rec.expires_at_ms} ms)",
    )
    return _finish(rec, JobState.DEAD, now_ms, errors=(*rec.errors, info)[-bounds.MAX_ERRORS :])


def time_out(rec: JobRecord, now_ms: int, rand: float) -> JobRecord:
    """running → retry or dead: the attempt outlived its timeout and its worker did not report it."""
    info = error_info(
        rec.attempt,
        now_ms,
        ErrorKind.TIMEOUT,
        "TimeoutError",
        f"ran past its timeout of {rec.timeout_s}s without a report (stopped by the reaper)",
        lease=rec.lease,
    )
    return fail(rec, info, now_ms, rand)


def cancel(rec: JobRecord, now_ms: int) -> JobRecord:
    """Any non-terminal state → cancelled. A running attempt's later report is then fenced out."""
    if rec.state in TERMINAL:
        raise TransitionError(f"{rec.id} is already {rec.state}")
    return _finish(rec, JobState.CANCELLED, now_ms)


def revive(rec: JobRecord, now_ms: int, attempts: int | None = None) -> JobRecord:
    """dead → ready with a fresh chance: a new budget of attempts (by default the job's own max_attempts),
    no start deadline, and `MAX_RELEASES` releases again — else a job that died of either would die of it
    again at once (its deadline is still past; one more release is one too many).

    `releases` starts again from 0, so the claims handed back before count as attempts used from now on
    (`attempt` only grows: it fences reports); `max_attempts` is set from the attempts used counted that
    way, so the grant is whole.
    """
    _require(rec, JobState.DEAD, "revive")
    extra = attempts if attempts is not None else rec.max_attempts
    return rec.model_copy(
        update={
            "state": JobState.READY,
            "releases": 0,
            "max_attempts": rec.attempt - rec.snoozes + extra,
            "expires_at_ms": None,
            "run_at_ms": now_ms,
            "finished_at_ms": None,
            "updated_at_ms": now_ms,
        }
    )


def _require(rec: JobRecord, state: JobState, verb: str) -> None:
    if rec.state is not state:
        raise TransitionError(f"cannot {verb} {rec.id}: it is {rec.state}, not {state}")


def _end_lease(rec: JobRecord) -> dict[str, object]:
    """Clear the lease, keeping who ran the attempt as `last_run`."""
    lease = rec.lease
    if lease is None:
        return {"lease": None}
    run = Run(
        attempt=lease.attempt, worker=lease.worker, session=lease.session, claimed_at_ms=lease.claimed_at_ms
    )
    return {"lease": None, "last_run": run}


def _requeue(rec: JobRecord, now_ms: int, run_at_ms: int, **changes: object) -> JobRecord:
    state = JobState.SCHEDULED if run_at_ms > now_ms else JobState.READY
    first = rec.ready_since_ms if rec.ready_since_ms is not None else rec.run_at_ms
    return rec.model_copy(
        update={
            "state": state,
            **_end_lease(rec),
            "run_at_ms": run_at_ms,
            "updated_at_ms": now_ms,
            "ready_since_ms": first,
            **changes,
        }
    )


def _finish(
    rec: JobRecord, state: JobState, now_ms: int, result: JSON = None, **changes: object
) -> JobRecord:
    update = {"state": state, **_end_lease(rec), "finished_at_ms": now_ms, "updated_at_ms": now_ms, **changes}
    if state is JobState.SUCCEEDED:
        update["result"] = result
    return rec.model_copy(update=update)
