"""The short zone scenario that runs with every `make test` (`make chaos-zones` runs them all).

Needs root for network namespaces, as CI has; without it the harness fails loudly instead of skipping.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .harness import Phases, run_scenario
from .run import details
from .scenarios import NodeKill, WorkerZombie

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(150)]


def test_worker_cut_off_mid_job_is_fenced(tmp_path: Path) -> None:
    """A worker cut off from NATS for 8 s while running jobs: its jobs rerun in the other zones at once,
    nothing is lost, every repeat is the cut's doing, and none of its late reports overwrites a newer
    attempt's outcome; the nodes agree afterwards."""
    seed = random.SystemRandom().randrange(1_000_000)
    outcome = run_scenario(
        WorkerZombie(), seed, tmp_path, Phases(before_s=4, fault_s=8, after_s=3, drain_s=45), rate=15
    )
    print("\n".join(details(outcome)))
    replay = f"replay: python -m tests.zones.run --seed {seed} worker-zombie"
    assert outcome.verdict.accepted > 100
    assert outcome.ok, f"{outcome.problems} ({replay})"
    assert outcome.verdict.stale_accepted == []


def test_stream_leader_node_killed_resumes_within_1s_of_the_election(tmp_path: Path) -> None:
    """The NATS node leading the most streams is `kill -9`ed: job starts resume within 1 s of the
    surviving nodes electing new leaders for everything it led; nothing lost, nobody exits."""
    seed = random.SystemRandom().randrange(1_000_000)
    outcome = run_scenario(
        NodeKill("leader"), seed, tmp_path, Phases(before_s=4, fault_s=11, after_s=3, drain_s=45), rate=15
    )
    print("\n".join(details(outcome)))
    replay = f"replay: python -m tests.zones.run --seed {seed} node-kill-leader"
    assert outcome.orphaned, "the killed node led nothing"
    assert outcome.ok, f"{outcome.problems} ({replay})"
