"""The short chaos soak that runs with every `make test` (`make chaos` runs the long one)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .soak import soak

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(300)]


async def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    """20 s of load (jobs and workflows) with random kills of services, workers and nats-server: nothing
    lost, repeats explained, every workflow ended with its steps in order and its results passed along."""
    report = await soak(
        seconds=20, seed=random.SystemRandom().randrange(1_000_000), rate=30, work_dir=tmp_path
    )
    print("\n".join(report.lines()))
    assert report.accepted > 100
    assert report.lost == [], f"lost jobs (replay with --seed {report.seed})"
    assert "unexplained" not in report.twice.values(), f"replay with --seed {report.seed}"
    assert report.schedule_fires >= 10
    assert (report.schedule_duplicates, report.schedule_gaps) == (0, 0), f"replay with --seed {report.seed}"
    flows = report.workflows
    assert flows.accepted >= 10
    assert flows.unfinished == [], f"unfinished workflows (replay with --seed {report.seed})"
    assert flows.violations == [], f"replay with --seed {report.seed}"
    assert "unexplained" not in flows.twice.values(), f"replay with --seed {report.seed}"
