"""A service paused (SIGSTOP) mid-step and resumed after the world moved on acts on nothing it decided
before the pause: no stale work is sent, so no job runs twice without a worker fault."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

pytestmark = pytest.mark.slow


def stopped(proc: procs.Proc) -> bool:
    assert proc.pid is not None
    return Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "T"


async def test_a_resumed_dispatcher_sends_no_stale_work(fleet: Fleet) -> None:
    """Paused between its claim and its send past its shard lease, a dispatcher resumes to find the job
    re-queued and run by its successor: it sends nothing, and the job ran once."""
    paused = fleet.service("dispatcher", env={"JETSCHED_PAUSE_AT": "dispatcher.claim.after_cas"})
    for name in ("intake", "timer", "reaper"):
        fleet.service(name)
    fleet.worker()
    async with Client(fleet.url, timeout=20) as client:
        reply = await client.submit("probe.sleep", 0)
        await eventually(lambda: stopped(paused), timeout=20, what="the dispatcher paused after its claim")
        fleet.service("dispatcher")  # takes the shard once the paused one's lease lapses
        record = await client.wait(reply.id, timeout=30)
        assert record.state == "succeeded"
        assert record.releases == 1  # the unsent claim was handed back, using no attempt
        assert paused.pid is not None
        os.kill(paused.pid, signal.SIGCONT)
        await eventually(
            lambda: "went stale" in paused.log_path.read_text(), timeout=20, what="the stale claim noticed"
        )
        assert paused.alive()
        fresh = await client.submit("probe.sleep", 0)
        assert (await client.wait(fresh.id, timeout=30)).state == "succeeded"
    assert len(fleet.started(reply.id)) == 1
