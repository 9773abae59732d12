"""Plain-text rendering of jobs for the terminal."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from jetsched.dashboard.shapes import timeline

if TYPE_CHECKING:
    from jetsched.sdk import JobInfo


def when(ms: int | None, now_ms: int | None = None) -> str:
    """An instant as people read it: absolute (UTC) and relative, `2026-11-29 10:29:19.123Z (3m ago)`."""
    if ms is None:
        return "-"
    now_ms = round(time.time() * 1000) if now_ms is None else now_ms
    absolute = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    delta = now_ms - ms
    relative = f"{span(abs(delta))} ago" if delta >= 0 else f"in {span(-delta)}"
    return f"{absolute} ({relative})"


def span(ms: int) -> str:
    """A duration in its two largest units: `850ms`, `12s`, `3m 20s`, `2h 5m`, `3d 4h`."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // small_size
            return f"{seconds // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{seconds}s"


def fields(result: dict[str, Any]) -> str:
    """A flat reply as `key: value` pairs, values as JSON (not Python reprs)."""
    return "  ".join(
        f"{k}: {orjson.dumps(v).decode()}" if not isinstance(v, str) else f"{k}: {v}"
        for k, v in result.items()
    )


def print_progress(job: JobInfo) -> None:
    """One line on stderr as a waited-for job moves (`submit --wait`): time, state, attempt, why."""
    state, attempt = job.state.value, job.attempt
    line = f"{time.strftime('%H:%M:%S')}  {state}"
    if state == "running":
        worker = job.lease.worker if job.lease else "?"
        line += f" (attempt {attempt} of {job.max_attempts} on {worker})"
    elif state == "scheduled":
        line += f" until {when(round(job.run_at.timestamp() * 1000))}"
    error = job.last_error
    if error is not None and error.attempt == attempt and state != "running":
        line += f" — attempt {attempt}: [{error.kind}] {error.type}: {error.message}"[:300]
    print(line, file=sys.stderr, flush=True)


def print_job(view: dict[str, Any]) -> None:
    job = view["job"]
    rows = [
        ("id", job["id"]),
        ("capability", job["capability"]),
        ("state", job["state"]),
        ("priority", job["priority"]),
        ("attempt", f"{job.get('attempt', 0)} of {job['max_attempts']}"),
        ("run at", when(job.get("run_at_ms"))),
        ("created", when(job.get("created_at_ms"))),
        ("started", when(job.get("started_at_ms"))),
        ("finished", when(job.get("finished_at_ms"))),
    ]
    if view.get("waiting"):
        rows.append(("waiting", view["waiting"]))
    if view.get("progress"):
        progress = view["progress"]
        rows.append(("progress", f"{orjson.dumps(progress['value']).decode()} ({when(progress['at_ms'])})"))
    if job.get("result") is not None:
        rows.append(("result", orjson.dumps(job["result"]).decode()))
    if view.get("last_error"):
        error = view["last_error"]
        rows.append(("last error", f"[{error['kind']}] {error['type']}: {error['message']}"))
    for item in timeline(job):
        rows.append(("attempt", _attempt_line(item)))
        rows += [("", f"  [{e['kind']}] {e['type']}: {e['message']}") for e in item["errors"]]
    for name, value in rows:
        print(f"{name:>11}  {value}")


def _attempt_line(item: dict[str, Any]) -> str:
    """`2  on host-a-4242 (session 01kbz…), claimed 2026-… (3m ago)  error`, as far as the record knows."""
    line = f"{item['attempt']:>2}"
    if item["worker"] is not None:
        line += f"  on {item['worker']} (session {item['session']})"
    if item["claimed_at_ms"] is not None:
        line += f", claimed {when(item['claimed_at_ms'])}"
    return line + f"  {item['outcome'] or '-'}"


JOBS_HEADER = f"{'id':<26}  {'capability':<16}  {'state':<9}  {'pri':>3}  {'att':>3}  created"


def job_row(job: dict[str, Any]) -> str:
    return (
        f"{job['id']:<26}  {job['capability']:<16.16}  {job['state']:<9}  {job['priority']:>3}  "
        f"{job.get('attempt', 0):>3}  {when(job.get('created_at_ms'))}"
    )


def print_bulk(result: dict[str, Any]) -> None:
    """`jetsched dead retry|purge --error-type`: how many, of how many read, and each refusal."""
    verb = "retried" if result["verb"] == "retry" else "purged"
    print(
        f"{verb} {len(result['done']):,} dead letters of type {result['error_type']}"
        f" ({result['scanned']:,} dead letters read)"
    )
    for failure in result["failed"]:
        print(f"not {verb}: {failure['id']}: {failure['code']}: {failure['message']}")


def print_stats(stats: dict[str, Any]) -> None:
    workers = stats["workers"]
    print(f"workers: {workers['sessions']} sessions, {workers['busy']} of {workers['slots']} slots busy")
    print(
        f"{'capability':<24}  " + "  ".join(f"{state:>9}" for state in _STATES) + "  oldest ready  free slots"
    )
    queues = stats.get("queues", {})
    for capability in sorted(set(stats["capabilities"]) | set(queues)):
        counts = stats["capabilities"].get(capability, {})
        signals = queues.get(capability, {})
        age = f"{signals.get('oldest_ready_age_ms', 0) / 1000:.1f}s"
        notes = " paused" if signals.get("paused") else ""
        notes += " NO WORKER" if signals.get("unroutable") else ""
        print(
            f"{capability:<24.24}  "
            + "  ".join(f"{counts.get(state, 0):>9}" for state in _STATES)
            + f"  {age:>12}  {signals.get('free_worker_slots', 0):>10}{notes}"
        )


_STATES = ("scheduled", "ready", "running", "succeeded", "dead", "cancelled")


def print_schedules(result: dict[str, Any]) -> None:
    if "fires" in result:
        print(f"{'UTC':<22}  local ({result['timezone']})")
        for fire in result["fires"]:
            print(f"{fire['utc']:<22}  {fire['local']}")
        return
    if "schedules" in result:
        print(f"{'id':<24}  {'when':<22}  {'zone':<18}  {'capability':<16}  {'fired':>5}  next")
        for view in result["schedules"]:
            record = view["schedule"]
            spec = record["spec"]
            cadence = spec.get("cron") or f"every {spec['every_ms'] / 1000:g}s"
            upcoming = (
                "paused"
                if spec.get("paused")
                else (view["next_fires"][0]["local"] if view["next_fires"] else "-")
            )
            print(
                f"{spec['id']:<24.24}  {cadence:<22.22}  {spec['timezone']:<18.18}  {_template(spec):<16.16}  "
                f"{record.get('fired', 0):>5}  {upcoming}"
            )
        return
    if "schedule" not in result:
        print(fields(result))
        return
    record = result["schedule"]
    spec = record["spec"]
    rows = [
        ("id", spec["id"]),
        ("when", spec.get("cron") or f"every {spec['every_ms'] / 1000:g}s"),
        ("zone", spec["timezone"]),
        ("job", f"{spec['job']['capability']} {spec['job'].get('payload')!r}"),
        (
            "policies",
            f"misfire={spec.get('misfire', 'once')} overlap={spec.get('overlap', 'allow')} "
            f"dst_gap={spec.get('dst_gap', 'shift')} dst_fold={spec.get('dst_fold', 'first')}",
        ),
        ("state", "paused" if spec.get("paused") else "active"),
        ("fired", f"{record.get('fired', 0)} (missed {record.get('missed', 0)})"),
        ("last fire", when(record.get("last_fire_ms"))),
    ]
    rows += [("next", f"{fire['utc']}  ({fire['local']})") for fire in result.get("next_fires", [])]
    for entry in record.get("history", [])[-10:]:
        what = f"job {entry['job_id']}" if entry.get("job_id") else f"missed: {entry['missed']}"
        rows.append(("history", f"{when(entry['nominal_ms'])}  {what}"))
    for name, value in rows:
        print(f"{name:>10}  {value}")


def print_workers(result: dict[str, Any]) -> None:
    print(f"{'session':<28}  {'worker':<24}  {'busy':>9}  {'labels':<20}  capabilities")
    for w in result["workers"]:
        labels = ",".join(f"{k}={v}" for k, v in w["labels"].items()) or "-"
        busy = f"{w['running']}/{w['concurrency']}" + (" D" if w["draining"] else "")
        print(
            f"{w['session']:<28}  {w['worker']:<24.24}  {busy:>9}  {labels:<20.20}  {', '.join(w['capabilities'])}"
        )


def print_quarantined(result: dict[str, Any]) -> None:
    """`jetsched doctor`: one line per item set aside, with why and by whom."""
    items = result["quarantined"]
    if not items:
        print("nothing quarantined")
        return
    for item in items:
        print(
            f"{item['bucket']}/{item['key']} (revision {item['revision']}, {item['service']}): {item['reason']}"
        )
    print(f"{len(items)} quarantined; `jetsched doctor purge BUCKET KEY` removes one")


def _template(spec: dict[str, Any]) -> str:
    """What a schedule's fires make: a job's capability, or a workflow's size."""
    if spec.get("job"):
        return str(spec["job"]["capability"])
    return f"workflow ({len(spec['workflow']['steps'])} steps)"
