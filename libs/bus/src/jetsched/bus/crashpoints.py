"""Named crash points: `os._exit` exactly at a step boundary, for crash tests only.

Set `JETSCHED_CRASH_AT=<point>` (or `<point>:<n>` to die on the n-th pass) in a process's environment and
it exits with status 86 — no cleanup, no flush, like `kill -9` — the moment it reaches that point. Unset
(always, outside tests) a crash point costs one global lookup.

Every point names the boundary between two steps that must not be torn apart, e.g.
`dispatcher.claim.after_cas`: the claim is stored, the work message not yet sent.

`JETSCHED_PAUSE_AT=<point>[:<n>]` stops the process there instead (SIGSTOP to itself, as a debugger or an
overloaded host would), for a test to resume with SIGCONT: what it decided before the pause must not be
acted on if the world moved on meanwhile.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_STATUS = 86

POINTS = frozenset(
    {
        "records.after_timer_entry",
        "records.retire.after_history",
        "intake.submit.after_key",
        "intake.submit.after_create",
        "intake.cancel.after_cas",
        "timer.due.before_cas",
        "timer.due.after_cas",
        "timer.fire.after_create",
        "timer.fire.after_steps",
        "timer.fire.after_workflow",
        "dispatcher.claim.before_cas",
        "dispatcher.claim.after_cas",
        "dispatcher.claim.after_send",
        "reaper.outcome.before_cas",
        "reaper.outcome.after_cas",
        "reaper.rescue.after_cas",
        "worker.received",
        "worker.after_run",
        "worker.after_report",
        "workflow.submit.after_key",
        "workflow.submit.after_record",
        "workflow.submit.after_steps",
        "workflow.advance.before_cas",
        "workflow.advance.after_cas",
        "workflow.release.after_cas",
        "workflow.direct.after_release",
        "workflow.expand.after_chunk",
        "workflow.abandon.after_record",
        "workflow.orphan.after_fence",
    }
)


def _parse(spec: str | None, variable: str = "JETSCHED_CRASH_AT") -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{variable} names no crash point: {name!r}")
    return name, int(count or 1)


_target = _parse(os.environ.get("JETSCHED_CRASH_AT"))
_pause = _parse(os.environ.get("JETSCHED_PAUSE_AT"), "JETSCHED_PAUSE_AT")
_passes = {"crash": 0, "pause": 0}


def crashpoint(name: str) -> None:
    """Die (or stop) here if this is the configured point (and its n-th pass)."""
    if _target is not None and _target[0] == name and _reached("crash", _target[1]):
        sys.stderr.write(f"crash point {name} reached: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_STATUS)
    if (
        _pause is not None
        and _pause[0] == name
        and _passes["pause"] < _pause[1]
        and _reached("pause", _pause[1])
    ):
        sys.stderr.write(f"pause point {name} reached: stopping\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)


def _reached(kind: str, n: int) -> bool:
    _passes[kind] += 1
    return _passes[kind] == n if kind == "pause" else _passes[kind] >= n
