from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jetsched.devkit.cluster import NatsCluster

if TYPE_CHECKING:
    from datetime import datetime


def ms(when: datetime | None) -> int:
    """An instant of the SDK's views back in the wire's epoch milliseconds (schedule ledgers use them)."""
    assert when is not None
    return round(when.timestamp() * 1000)


@dataclass
class Executions:
    """What handlers ran, kept outside NATS: (job id, attempt) in order."""

    runs: list[tuple[str, int]] = field(default_factory=list)

    def record(self, job_id: str, attempt: int) -> None:
        self.runs.append((job_id, attempt))

    def per_job(self) -> Counter[str]:
        return Counter(job_id for job_id, _ in self.runs)


@pytest.fixture
def executions() -> Executions:
    return Executions()


#: The deployed cluster's configuration (three nodes).
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """The deployed 3-node cluster, run locally on free ports."""
    running = NatsCluster(sorted(DEPLOY.glob("cluster-*.conf")), tmp_path).start()
    try:
        yield running
    finally:
        running.stop()
