"""What the browser gets: records cut down to what a table shows, and a job's attempts as a timeline (pure).

List endpoints send summaries, never whole records: a record may carry a 730 KiB payload and a 64 KiB
result, and a page of 200 of those is not what a dashboard table should download. A job's own page gets
its whole record (bounded by NATS's `max_payload`).
"""

from __future__ import annotations

from typing import Any

#: Texts in summaries are cut to this many characters.
SUMMARY_TEXT = 300


def _cut(text: object, limit: int = SUMMARY_TEXT) -> str:
    value = text if isinstance(text, str) else ""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def last_error(record: dict[str, Any]) -> dict[str, Any] | None:
    errors = record.get("errors") or []
    if not errors or not isinstance(errors[-1], dict):
        return None
    error = errors[-1]
    return {
        "attempt": error.get("attempt"),
        "at_ms": error.get("at_ms"),
        "kind": error.get("kind"),
        "type": _cut(error.get("type")),
        "message": _cut(error.get("message")),
    }


def has_error_type(record: dict[str, Any], error_type: str) -> bool:
    """Whether the job's last error is of `error_type` (what bulk dead-letter actions filter by)."""
    error = last_error(record)
    return error is not None and error["type"] == error_type


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One row of a job table."""
    lease = record.get("lease") if isinstance(record.get("lease"), dict) else None
    workflow = record.get("workflow") if isinstance(record.get("workflow"), dict) else None
    return {
        "id": record.get("id"),
        "capability": record.get("capability"),
        "state": record.get("state"),
        "priority": record.get("priority"),
        "attempt": record.get("attempt"),
        "max_attempts": record.get("max_attempts"),
        "created_at_ms": record.get("created_at_ms"),
        "updated_at_ms": record.get("updated_at_ms"),
        "started_at_ms": record.get("started_at_ms"),
        "finished_at_ms": record.get("finished_at_ms"),
        "run_at_ms": record.get("run_at_ms"),
        "worker": None if lease is None else lease.get("worker"),
        "session": None if lease is None else lease.get("session"),
        "claimed_at_ms": None if lease is None else lease.get("claimed_at_ms"),
        "workflow": None if workflow is None else {"id": workflow.get("id"), "step": workflow.get("step")},
        "schedule_id": record.get("schedule_id"),
        "last_error": last_error(record),
    }


def page(reply: dict[str, Any], error_type: str | None = None) -> dict[str, Any]:
    """A `jobs.list`/`dead.list` reply as summaries, keeping only jobs whose last error has `error_type`."""
    records = [record for record in reply.get("jobs", []) if isinstance(record, dict)]
    if error_type is not None:
        records = [record for record in records if has_error_type(record, error_type)]
    return {"jobs": [summary(record) for record in records], "next": reply.get("next")}


def timeline(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every attempt of a job, oldest first: its errors (with tracebacks), the worker and session that ran
    it and when it was claimed, and how it ended.

    The worker comes from the attempt's error entries, from `last_run` (the latest attempt once its lease
    ended) or from the lease (the attempt running now). The record keeps the last 20 errors; an older
    attempt whose error was pushed out, or that left none (a release), shows only its number, as do
    attempts in records written before errors named their worker."""
    attempts: dict[int, dict[str, Any]] = {}

    def entry(n: int) -> dict[str, Any]:
        return attempts.setdefault(
            n, {"attempt": n, "errors": [], "worker": None, "session": None, "claimed_at_ms": None}
        )

    def run_by(item: dict[str, Any], holder: dict[str, Any]) -> None:
        if holder.get("worker") is not None:
            item.update(
                worker=holder["worker"],
                session=holder.get("session"),
                claimed_at_ms=holder.get("claimed_at_ms"),
            )

    for n in range(1, int(record.get("attempt") or 0) + 1):
        entry(n)
    for error in record.get("errors") or []:
        if isinstance(error, dict) and isinstance(error.get("attempt"), int):
            item = entry(error["attempt"])
            item["errors"].append(error)
            run_by(item, error)
    for holder in (record.get("last_run"), record.get("lease")):
        if isinstance(holder, dict) and isinstance(holder.get("attempt"), int):
            run_by(entry(holder["attempt"]), holder)
    state, last = record.get("state"), int(record.get("attempt") or 0)
    for n, item in attempts.items():
        if item["errors"]:
            item["outcome"] = item["errors"][-1].get("kind")
        elif n == last and state in ("running", "succeeded", "cancelled"):
            item["outcome"] = state
        else:
            item["outcome"] = None
        if n == last and state == "succeeded":
            item["finished_at_ms"] = record.get("finished_at_ms")
    return [attempts[n] for n in sorted(attempts)]
