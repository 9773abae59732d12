"""Schema-shaped bodies for every family, field by field: each valid, or hostile with some probability.

The fields and bounds follow `jetsched.core.models` and docs/protocol.md; the valid choices keep accepted
jobs cheap (short sleeps, capabilities no real worker serves) so the stream can run for 100,000 messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import hostile
from .messages import (
    CONTROL_CAPABILITY,
    FUZZ_CAPABILITIES,
    HOSTILE_TOKENS,
    Gen,
    Targets,
    any_id,
    ascii_text,
    capability,
    one_of,
    session_token,
    shape,
)

if TYPE_CHECKING:
    import random

BACKOFF: dict[str, tuple[Gen, Gen]] = {
    "base_ms": (lambda r: r.choice((0, 10, 1000)), hostile.int_value),
    "factor": (lambda r: r.choice((1.0, 2.0, 10.0)), hostile.float_value),
    "max_ms": (lambda r: r.choice((0, 1000, 600_000)), hostile.int_value),
    "jitter": (lambda r: r.choice((0.0, 0.2, 1.0)), hostile.float_value),
}


def backoff(rng: random.Random) -> Any:
    return shape(rng, BACKOFF)


def labels(rng: random.Random) -> Any:
    if rng.random() < 0.7:
        return {"zone": rng.choice(("a", "b"))}
    return rng.choice(({"x" * 65: "v"}, {f"k{i}": "v" for i in range(17)}, {"k": 5}, {"": ""}, ["a"], "a=b"))


def submit_fields() -> dict[str, tuple[Gen, Gen]]:
    return {
        "payload": (lambda r: r.choice((None, 1, "x", {"n": r.randint(0, 9)})), hostile.anything),
        "priority": (lambda r: r.randint(0, 9), hostile.int_value),
        "delay_ms": (lambda r: r.choice((0, 10, 200, 3_600_000, 366 * 86_400_000)), hostile.int_value),
        "run_at": (
            one_of("2126-01-01T00:00:00Z", "2020-01-01T00:00:00+01:00"),
            lambda r: r.choice(hostile.TIMES),
        ),
        "key": (ascii_text(1, 256), hostile.string_value),
        "max_attempts": (lambda r: r.randint(1, 3), hostile.int_value),
        "timeout_s": (lambda r: r.choice((0.5, 30.0, 300.0)), hostile.float_value),
        "heartbeat_timeout_s": (lambda r: r.choice((1.0, 60.0)), hostile.float_value),
        "expires_in_ms": (lambda r: r.choice((0, 1000, 86_400_000)), hostile.int_value),
        "labels": (lambda r: {}, labels),
        "concurrency_key": (ascii_text(1, 128), hostile.string_value),
        "backoff": (backoff, lambda r: hostile.anything(r, 2)),
    }


def submit_body(rng: random.Random) -> dict[str, Any]:
    return shape(rng, submit_fields())


def job_template(rng: random.Random) -> Any:
    return shape(
        rng,
        {
            "capability": (lambda r: r.choice(FUZZ_CAPABILITIES), lambda r: r.choice(HOSTILE_TOKENS)),
            "payload": (lambda r: None, hostile.anything),
            "priority": (lambda r: r.randint(0, 9), hostile.int_value),
            "max_attempts": (lambda r: 1, hostile.int_value),
            "timeout_s": (lambda r: 30.0, hostile.float_value),
            "backoff": (backoff, lambda r: hostile.anything(r, 2)),
            "labels": (lambda r: {}, labels),
        },
        required=("capability",),
    )


def schedule_spec(rng: random.Random, known: list[str]) -> dict[str, Any]:
    def name(r: random.Random) -> str:
        return (
            r.choice(known) if known and r.random() < 0.3 else "fz-" + ascii_text(1, 20)(r).replace("=", "")
        )

    every = rng.random() < 0.5
    fields: dict[str, tuple[Gen, Gen]] = {
        "id": (name, hostile.string_value),
        "cron" if not every else "every_ms": (
            (one_of("*/5 * * * *", "0 3 * * *", "*/10 * * * * *"), one_of(*hostile.CRONS))
            if not every
            else (one_of(1000, 60_000, 3_600_000), hostile.int_value)
        ),
        "timezone": (one_of("UTC", "Europe/Paris", "America/New_York"), one_of(*hostile.TIMEZONES)),
        "job": (job_template, lambda r: hostile.anything(r, 2)),
        "start_at": (one_of("2026-01-01T00:00:00Z"), one_of(*hostile.TIMES)),
        "end_at": (one_of("2127-01-01T00:00:00Z"), one_of(*hostile.TIMES)),
        "jitter_ms": (lambda r: r.choice((0, 1000)), hostile.int_value),
        "misfire": (one_of("skip", "once", "all"), hostile.string_value),
        "misfire_grace_ms": (lambda r: 60_000, hostile.int_value),
        "catchup_window_ms": (lambda r: 86_400_000, hostile.int_value),
        "overlap": (one_of("allow", "skip", "buffer_one", "cancel_previous"), hostile.string_value),
        "dst_gap": (one_of("shift", "skip"), hostile.string_value),
        "dst_fold": (one_of("first", "second", "both"), hostile.string_value),
        "paused": (lambda r: r.random() < 0.3, hostile.anything),
    }
    body = shape(rng, fields, required=("id", "cron" if not every else "every_ms", "job"))
    if rng.random() < 0.05:
        body["job"] = {
            "capability": "fuzz.a",
            "payload": hostile.nested(rng, rng.choice((150, 194, 195, 196, 197, 198, 199, 250))),
        }
    return body


def api_body(rng: random.Random, name: str, targets: Targets) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A body for `jetsched.api.<name>`, and the job ids it may change."""
    ids = targets.job_ids
    reads = ids + targets.control_ids
    if name == "jobs.get":
        return shape(rng, {"id": (lambda r: any_id(r, reads), hostile.string_value)}, ("id",)), ()
    if name in ("jobs.cancel", "dead.purge", "dead.retry"):
        fields: dict[str, tuple[Gen, Gen]] = {"id": (lambda r: any_id(r, ids), hostile.string_value)}
        if name == "dead.retry":
            fields["attempts"] = (lambda r: r.randint(1, 3), hostile.int_value)
        body = shape(rng, fields, ("id",))
        touched = body.get("id")
        return body, (touched,) if isinstance(touched, str) else ()
    if name in ("jobs.list", "dead.list"):
        fields = {
            "capability": (capability, hostile.string_value),
            "limit": (lambda r: r.choice((1, 100, 1000)), hostile.int_value),
            "after": (lambda r: any_id(r, reads), hostile.string_value),
        }
        if name == "jobs.list":
            fields["state"] = (one_of("scheduled", "ready", "running", "dead"), hostile.string_value)
        return shape(rng, fields), ()
    if name in ("queues.pause", "queues.resume"):
        return shape(rng, {"capability": (capability, hostile.string_value)}, ("capability",)), ()
    if name == "queues.configure":
        return shape(rng, queue_settings(), ("capability",)), ()
    if name == "workers.drain":
        return shape(rng, {"session": (session_token, hostile.string_value)}, ("session",)), ()
    if name in ("schedules.create", "schedules.update"):
        return schedule_spec(rng, targets.schedule_ids), ()
    if name in ("workflows.get", "workflows.cancel", "workflows.retry"):  # ids of nothing, or of jobs
        return shape(rng, {"id": (lambda r: any_id(r, ids), hostile.string_value)}, ("id",)), ()
    if name == "workflows.list":
        fields = {
            "state": (one_of("running", "succeeded", "failed", "cancelled"), hostile.string_value),
            "limit": (lambda r: r.choice((1, 100, 1000)), hostile.int_value),
            "after": (lambda r: any_id(r, ids), hostile.string_value),
        }
        return shape(rng, fields), ()
    if name in ("schedules.get", "schedules.pause", "schedules.resume", "schedules.delete"):
        known = targets.schedule_ids
        return shape(rng, {"id": (lambda r: any_id(r, known), hostile.string_value)}, ("id",)), ()
    if name == "schedules.preview":
        if rng.random() < 0.5:
            preview: dict[str, Any] = {"spec": schedule_spec(rng, [])}
        else:
            preview = {"id": any_id(rng, targets.schedule_ids)}
        preview["count"] = rng.choice((1, 1000, 1001, 0, -1, 10**400, 2**64, "5", 1e308))
        return preview, ()
    return shape(rng, {"verbose": (lambda r: True, hostile.anything)}), ()


def workflow_body(rng: random.Random) -> dict[str, Any]:
    """A `jetsched.workflow.submit` body: a random graph of steps whose parents are sometimes unknown,
    cyclic or repeated, a map over a parent or not, with hostile values in any field."""
    names = [f"s{n}" for n in range(rng.choice((1, 2, 5, 30)))]
    steps = []
    for n, name in enumerate(names):
        parents = rng.sample(names[:n], k=min(n, rng.choice((0, 1, 2)))) if n else []
        if rng.random() < 0.05:
            parents.append(rng.choice((name, "nobody", *names)))  # itself, unknown, or a cycle
        step: dict[str, Any] = {"name": name, "capability": capability(rng), "depends_on": parents}
        if parents and rng.random() < 0.2:
            step["map_over"] = rng.choice(parents)
        fields: dict[str, tuple[Gen, Gen]] = {k: (one_of(v), hostile.anything) for k, v in step.items()}
        steps.append(shape(rng, fields, ("name", "capability", "depends_on")))
    body: dict[str, Any] = {"steps": steps}
    if rng.random() < 0.3:
        body["on_failure"] = rng.choice(("fail_fast", "continue", "explode"))
    if rng.random() < 0.3:
        body["key"] = rng.choice(("k", "x" * 300, "*", ">", "é"))
    return body


def queue_settings() -> dict[str, tuple[Gen, Gen]]:
    return {
        "capability": (lambda r: r.choice(FUZZ_CAPABILITIES), hostile.string_value),
        "paused": (lambda r: r.random() < 0.2, hostile.anything),
        "max_running": (lambda r: r.choice((0, 1, 100)), hostile.int_value),
        "max_running_per_key": (lambda r: r.choice((0, 1, 100)), hostile.int_value),
        "rate_per_s": (lambda r: r.choice((0.5, 10.0, 1000.0)), hostile.float_value),
        "rate_per_key_per_s": (lambda r: r.choice((0.5, 10.0)), hostile.float_value),
        "burst": (lambda r: r.choice((1, 10, 100_000)), hostile.int_value),
        "priority_mode": (one_of("strict", "weighted"), hostile.string_value),
        "aging_ms": (lambda r: r.choice((1, 1000)), hostile.int_value),
    }


def heartbeat_body(rng: random.Random, session: str, targets: Targets) -> dict[str, Any]:
    def caps(r: random.Random) -> Any:
        return [r.choice(FUZZ_CAPABILITIES) for _ in range(r.randint(1, 3))]

    def bad_caps(r: random.Random) -> Any:
        return r.choice(([], ["*"], [">"], ["x" * 300], "fuzz.a", [1], ["fuzz.a"] * 10_000, None))

    def running(r: random.Random) -> Any:
        return [[any_id(r, targets.job_ids), r.randint(1, 3)] for _ in range(r.randint(0, 3))]

    def bad_running(r: random.Random) -> Any:
        return r.choice(
            ([["x"]], [[1, 2]], [["a", 10**400]], [[None, None]], "x", [[f"{i}", 1] for i in range(5000)])
        )

    return shape(
        rng,
        {
            "worker": (lambda r: "fuzz-host", hostile.string_value),
            "session": (lambda r: session, hostile.string_value),
            "capabilities": (caps, bad_caps),
            "labels": (lambda r: {}, labels),
            "concurrency": (lambda r: r.randint(1, 8), hostile.int_value),
            "running": (running, bad_running),
            "draining": (lambda r: False, hostile.anything),
            "interval_ms": (lambda r: r.choice((100, 500, 1000)), hostile.int_value),
        },
        required=("worker", "session", "capabilities", "concurrency", "interval_ms"),
    )


def outcome_body(rng: random.Random, job_id: str, attempt: int) -> dict[str, Any]:
    return shape(
        rng,
        {
            "id": (lambda r: job_id, hostile.string_value),
            "attempt": (lambda r: attempt, hostile.int_value),
            "token": (
                lambda r: "".join(r.choice("0123456789abcdef") for _ in range(32)),
                hostile.string_value,
            ),
            "session": (session_token, hostile.string_value),
            "status": (
                one_of("succeeded", "failed", "fatal", "retry", "timeout", "released"),
                hostile.string_value,
            ),
            "result": (lambda r: r.choice((None, 1, "ok")), hostile.anything),
            "error": (
                lambda r: {"type": "E", "message": "m", "traceback": "t"},
                lambda r: hostile.anything(r, 2),
            ),
            "retry_delay_ms": (lambda r: r.choice((0, 1000)), hostile.int_value),
            "finished_at_ms": (lambda r: 1_795_820_103_000, hostile.int_value),
        },
        required=("id", "attempt", "token", "session", "status", "finished_at_ms"),
    )


def work_body(rng: random.Random, job_id: str) -> dict[str, Any]:
    sleeps: tuple[Any, ...] = (None, 0, 0.001, 0.01, -1, "x", [], {}, 1e-310, 10**400, "nan")
    return shape(
        rng,
        {
            "id": (lambda r: job_id, hostile.string_value),
            "capability": (lambda r: CONTROL_CAPABILITY, hostile.string_value),
            "attempt": (lambda r: r.randint(1, 3), hostile.int_value),
            "token": (lambda r: "00" * 16, hostile.string_value),
            "payload": (lambda r: r.choice(sleeps[:4]), lambda r: r.choice(sleeps)),
            "priority": (lambda r: r.randint(0, 9), hostile.int_value),
            "timeout_s": (lambda r: r.choice((0.5, 5.0)), hostile.float_value),
            "heartbeat_timeout_s": (lambda r: r.choice((None, 1.0)), hostile.float_value),
            "created_at_ms": (lambda r: 1_795_820_100_000, hostile.int_value),
            "run_at_ms": (lambda r: 1_795_820_100_000, hostile.int_value),
        },
        required=(
            "id",
            "capability",
            "attempt",
            "token",
            "priority",
            "timeout_s",
            "created_at_ms",
            "run_at_ms",
        ),
    )


def control_body(rng: random.Random, live: bool, targets: Targets) -> dict[str, Any]:
    ops = ("cancel", "DRAIN", "drain ", "Drain", "stop", "", 1, None, ["drain"], {"drain": True})
    body = shape(
        rng,
        {
            "op": (one_of("cancel") if live else one_of("cancel", "drain"), lambda r: r.choice(ops)),
            "id": (lambda r: any_id(r, targets.job_ids), hostile.string_value),
            "attempt": (lambda r: r.randint(1, 3), hostile.int_value),
        },
        required=("op",),
    )
    if live and body.get("op") == "drain":
        body["op"] = "cancel"
    return body
