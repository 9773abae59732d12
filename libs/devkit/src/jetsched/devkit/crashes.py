"""Crash-point tests' moves: start the services with one set to die at a named point, see it die
there, restart it clean (`jetsched.bus.crashpoints` names the points and the exit status)."""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from jetsched.bus.crashpoints import EXIT_STATUS

from . import procs
from .waiting import eventually

if TYPE_CHECKING:
    from .fleet import Fleet

#: The variable that arms a crash point in a process.
CRASH = "JETSCHED_CRASH_AT"


@overload
def start(fleet: Fleet, crash_service: str, point: str) -> procs.Proc: ...


@overload
def start(fleet: Fleet, crash_service: None, point: str) -> None: ...


def start(fleet: Fleet, crash_service: str | None, point: str) -> procs.Proc | None:
    """The four services, `crash_service` set to die at `point`; that one is returned (None: none)."""
    target = None
    for name in procs.SERVICES:
        proc = fleet.service(name, env={CRASH: point} if name == crash_service else None)
        if name == crash_service:
            target = proc
    return target


async def crashed(proc: procs.Proc) -> None:
    """Until `proc` has died at its crash point (and not otherwise)."""
    await eventually(lambda: not proc.alive(), timeout=30, what=f"{proc.name} reached its crash point")
    assert proc.popen is not None
    assert proc.popen.returncode == EXIT_STATUS


def restart_clean(proc: procs.Proc) -> None:
    """Start `proc` again with its crash point disarmed."""
    proc.env.pop(CRASH, None)
    proc.start()
