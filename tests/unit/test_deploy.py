"""The deploy files refer to what exists and keep the durability settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [*sorted(ROOT.glob("services/*/Dockerfile")), ROOT / "deploy" / "worker.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_copies_existing_paths(dockerfile: Path) -> None:
    """Every COPY source exists in the repository (builds run from its root)."""
    sources = re.findall(r"^COPY (\S+) ", dockerfile.read_text(), flags=re.M)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_nats_configs_sync_always() -> None:
    """Every deployed NATS node fsyncs each write before acknowledging it."""
    configs = sorted((ROOT / "deploy" / "nats").glob("*.conf"))
    assert len(configs) == 4
    for config in configs:
        assert "sync_interval: always" in config.read_text(), config


def test_every_service_deployed() -> None:
    """Each service has a Kubernetes manifest and a compose entry."""
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    for service in ("intake", "timer", "dispatcher", "reaper"):
        assert (ROOT / "deploy" / "k8s" / f"{service}.yaml").exists()
        assert f"services/{service}/Dockerfile" in compose
