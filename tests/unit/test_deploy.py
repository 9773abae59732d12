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


@pytest.mark.parametrize("config", sorted((ROOT / "deploy" / "nats").glob("*.conf")), ids=lambda p: p.name)
def test_nats_configs_authenticate_and_keep_monitoring_local(config: Path) -> None:
    """Every deployed node takes jetsched's users from `auth.conf` and serves monitoring on loopback only."""
    text = config.read_text()
    assert re.search(r'^include "auth\.conf"$', text, flags=re.M), "no authorization"
    assert "http_port" not in text
    monitors = re.findall(r"^\s*(?:http|https|monitor_port):\s*(\S+)", text, flags=re.M)
    assert monitors
    assert all(m.startswith("127.0.0.1:") for m in monitors), monitors


def test_compose_mounts_an_identity_per_process() -> None:
    """Compose runs NATS 2.15 with the generated users, and every jetsched process with its own seed."""
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert "image: nats:2.15-alpine" in compose
    assert compose.count("./creds/auth.conf:/etc/nats/auth.conf:ro") == 3
    for role in ("intake", "timer", "dispatcher", "reaper", "worker-demo"):
        assert f"secrets: [{{source: {role}, target: creds}}]" in compose
        assert f"{role}: {{file: ./creds/{role}.nk}}" in compose


@pytest.mark.parametrize("service", ["intake", "timer", "dispatcher", "reaper"])
def test_k8s_services_take_creds_from_a_secret(service: str) -> None:
    """Each Deployment reads its own seed from its own Secret."""
    manifest = (ROOT / "deploy" / "k8s" / f"{service}.yaml").read_text()
    assert f"{{name: JETSCHED_NATS_CREDS, value: /etc/jetsched/creds/{service}.nk}}" in manifest
    assert f"secretName: jetsched-{service}-creds" in manifest


@pytest.mark.parametrize("service", ["intake", "timer", "dispatcher", "reaper"])
def test_k8s_probes_point_at_the_health_port(service: str) -> None:
    """Liveness and readiness probe the port the service is told to serve them on."""
    manifest = (ROOT / "deploy" / "k8s" / f"{service}.yaml").read_text()
    assert '{name: JETSCHED_HTTP_PORT, value: "8080"}' in manifest
    assert "{name: health, containerPort: 8080}" in manifest
    assert "httpGet: {path: /healthz, port: health}" in manifest
    assert "httpGet: {path: /readyz, port: health}" in manifest
