"""The Kubernetes files: valid objects, the hardening every pod needs, and the pieces agreeing with each other.

Each object is validated against the Kubernetes OpenAPI schemas of 1.32 and 1.37 (strict: unknown
fields fail) that kubernetes-validate ships in its wheel, so no cluster or network is needed; `kubectl
kustomize` builds the kustomization. What no schema says is checked by hand: probes, securityContext, resources, topology
spread, a PodDisruptionBudget per workload, the worker's grace period against its drain timeout, and
that the NATS chart values render a configuration nats-server accepts.

XX: `helm template` cannot run here (no helm binary from the package registries), so the NATS
configuration below is rendered by `chart_config()`, a stand-in for the chart's `files/config/*.yaml`
(chart 2.14.2) limited to the values nats-values.yaml sets.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jetsched.cli.durations import parse_duration
from jetsched.core.permissions import WORKER_NAME_RE
from tests.unit.test_deploy import check_nats_config, nats_minor

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NOT_MANIFESTS = {"kustomization.yaml", "nats-values.yaml"}
OPT_IN = {"worker-autoscaling.yaml"}
SERVICES = ("intake", "timer", "dispatcher", "reaper")
# An older release that managed clusters still run, and the newest kubernetes-validate knows.
KUBERNETES = ("1.32.0", "1.37.0")

Obj = dict[str, Any]


@functools.cache
def manifests() -> list[tuple[str, Obj]]:
    """Every object of every manifest, parsed once (the tests only read them)."""
    return [
        (path.name, obj)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name not in NOT_MANIFESTS
        for obj in yaml.safe_load_all(path.read_text())
    ]


def objects(kind: str) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for _, obj in manifests() if obj["kind"] == kind}


def workloads() -> dict[str, Obj]:
    return {**objects("Deployment"), **objects("StatefulSet")}


def env(container: Obj) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


@functools.cache
def values() -> Obj:
    loaded: Obj = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    return loaded


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize(("file", "obj"), manifests(), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_matches_the_kubernetes_schema(file: str, obj: Obj, version: str) -> None:
    """Every object is valid for these Kubernetes releases, unknown fields included."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{file}: {'.'.join(map(str, error.path))}: {error.message}")


def test_kustomization_applies_every_manifest_but_the_opt_in_ones() -> None:
    """kustomization.yaml lists every manifest except the autoscaling example, and kubectl builds it."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS - OPT_IN
    assert set(kustomization["resources"]) == files
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is part of this machine's image"
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=20, check=True
    )
    kinds = [obj["kind"] for obj in yaml.safe_load_all(built.stdout)]
    assert len(kinds) == sum(1 for file, _ in manifests() if file in files)
    assert all(
        obj["metadata"].get("namespace") == kustomization["namespace"]
        for obj in yaml.safe_load_all(built.stdout)
        if obj["kind"] != "Namespace"
    )


@pytest.mark.parametrize("name", sorted(workloads()))
class TestEveryWorkload:
    def test_is_hardened(self, name: str) -> None:
        """Non-root with the default seccomp profile; no privilege escalation, no capabilities, a read-only root."""
        pod = workloads()[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0, "a numeric user lets the kubelet check runAsNonRoot"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        mounts = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            assert container["workingDir"] in {
                m["mountPath"] for m in container["volumeMounts"] if m["name"] in mounts
            }, "start in a writable directory that exists"
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }

    def test_requests_resources_and_limits_memory(self, name: str) -> None:
        """Every container requests CPU and memory and has a memory limit."""
        for container in workloads()[name]["spec"]["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]

    def test_spreads_across_zones(self, name: str) -> None:
        """Replicas spread over zones, counted by the workload's own pods."""
        spec = workloads()[name]["spec"]
        constraints = {c["topologyKey"]: c for c in spec["template"]["spec"]["topologySpreadConstraints"]}
        zone = constraints["topology.kubernetes.io/zone"]
        assert zone["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert zone["maxSkew"] == 1

    def test_has_a_disruption_budget(self, name: str) -> None:
        """A PodDisruptionBudget selects exactly the workload's pods."""
        budget = objects("PodDisruptionBudget")[name]
        assert budget["spec"]["selector"] == workloads()[name]["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1

    def test_reads_the_shared_settings(self, name: str) -> None:
        """Common settings come from the jetsched-config ConfigMap, which exists."""
        for container in workloads()[name]["spec"]["template"]["spec"]["containers"]:
            assert {"configMapRef": {"name": "jetsched-config"}} in container["envFrom"]
        assert "jetsched-config" in objects("ConfigMap")

    def test_selector_matches_its_pods(self, name: str) -> None:
        """The selector's labels are on the pod template."""
        spec = workloads()[name]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("service", SERVICES)
class TestServices:
    def test_takes_its_identity_from_its_secret(self, service: str) -> None:
        """Each service reads its own seed from its own Secret."""
        pod = workloads()[f"jetsched-{service}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        creds = Path(env(container)["JETSCHED_NATS_CREDS"])
        assert creds.name == f"{service}.nk"
        assert volumes[mounts[str(creds.parent)]]["secret"]["secretName"] == f"jetsched-{service}-creds"

    def test_probes_the_port_it_serves_them_on(self, service: str) -> None:
        """Liveness and readiness call /healthz and /readyz on JETSCHED_HTTP_PORT."""
        (container,) = workloads()[f"jetsched-{service}"]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == int(env(container)["JETSCHED_HTTP_PORT"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


class TestWorker:
    @staticmethod
    def statefulset() -> Obj:
        return objects("StatefulSet")["jetsched-worker"]

    @staticmethod
    def container() -> Obj:
        containers: list[Obj] = TestWorker.statefulset()["spec"]["template"]["spec"]["containers"]
        (container,) = containers
        return container

    def flag(self, name: str) -> str:
        args: list[str] = self.container()["args"]
        (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
        return value

    def test_outlives_its_drain_timeout(self) -> None:
        """The grace period is longer than --drain-timeout, so a drain is never cut short by SIGKILL."""
        grace = self.statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > parse_duration(self.flag("drain-timeout"))

    def test_each_pod_is_its_own_identity(self) -> None:
        """A pod's session is its own (stable, unique) name, and it reads the seed of that name."""
        container = self.container()
        (pod_name,) = [e for e in container["env"] if e["name"] == "POD_NAME"]
        assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert self.flag("session") == "$(POD_NAME)"
        assert env(container)["JETSCHED_NATS_CREDS"] == "/etc/jetsched/creds/worker-$(POD_NAME).nk"
        assert WORKER_NAME_RE.match(f"{self.statefulset()['metadata']['name']}-0")

    def test_autoscaling_stays_within_the_documented_seeds(self) -> None:
        """The HPA scales the StatefulSet no further than the seeds docs/operations.md tells you to create."""
        (hpa,) = objects("HorizontalPodAutoscaler").values()
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": "jetsched-worker",
        }
        documented = re.search(
            r"security init creds --workers (\S+)", (ROOT / "docs" / "operations.md").read_text()
        )
        assert documented
        seeds = documented.group(1).split(",")
        assert seeds == [f"jetsched-worker-{i}" for i in range(len(seeds))]
        assert self.statefulset()["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= len(seeds)


def chart_config(config: Obj) -> str:
    """nats.conf as chart 2.14.2 renders it from these `config` values (files/config/config.yaml)."""
    jetstream, cluster = config["jetstream"], config["cluster"]
    assert not config["monitor"]["enabled"]
    assert not jetstream["memoryStore"]["enabled"]
    rendered: Obj = {
        "server_name": "<< $SERVER_NAME >>",
        "lame_duck_grace_period": "<< 10s >>",
        "lame_duck_duration": "<< 30s >>",
        "pid_file": "/var/run/nats/nats.pid",
        "port": 4222,
        "cluster": {
            "name": "nats",
            "port": 6222,
            "no_advertise": True,
            "routes": [f"nats://nats-{i}.nats-headless:6222" for i in range(cluster["replicas"])],
        },
        "jetstream": {
            "max_memory_store": 0,
            "store_dir": jetstream["fileStore"]["dir"],
            "max_file_store": f"<< {jetstream['fileStore']['pvc']['size']} >>",
            **jetstream["merge"],
        },
        **config["merge"],
    }
    text = json.dumps(rendered, indent=4, sort_keys=True)
    text = re.sub(r'".*\$include": "(.*)",?', r"include \1;", text)
    return re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", text)


class TestNatsChartValues:
    def test_renders_a_configuration_nats_server_accepts(self, tmp_path: Path) -> None:
        """The configuration the values make, with jetsched's auth.conf, passes `nats-server -t`."""
        check_nats_config(chart_config(values()["config"]), tmp_path, {**os.environ, "SERVER_NAME": "nats-0"})

    def test_is_a_durable_authenticated_cluster(self) -> None:
        """Three JetStream nodes on disk, fsync on every write, jetsched's users included."""
        config = values()["config"]
        assert config["cluster"] == {"enabled": True, "replicas": 3}
        assert config["jetstream"]["enabled"]
        assert config["jetstream"]["fileStore"]["pvc"]["enabled"]
        assert config["jetstream"]["merge"]["sync_interval"] == "always"
        assert [v for k, v in config["merge"].items() if k.endswith("$include")] == ["auth.conf"]
        jetsched = objects("ConfigMap")["jetsched-config"]["data"]
        assert jetsched["JETSCHED_REPLICAS"] == str(config["cluster"]["replicas"])
        assert jetsched["JETSCHED_NATS_URL"] == "nats://nats.nats.svc:4222"

    def test_keeps_monitoring_in_the_pod(self) -> None:
        """Monitoring listens on loopback only, no Service exposes it, and the probes call it from inside."""
        chart = values()
        assert chart["config"]["monitor"]["enabled"] is False
        assert chart["config"]["merge"]["http"].startswith("127.0.0.1:")
        assert chart["service"]["ports"]["monitor"] == {"enabled": False}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = chart["container"]["merge"][probe]["exec"]["command"]
            assert command[-1].startswith(f"http://{chart['config']['merge']['http']}/healthz")

    def test_runs_the_tested_release_hardened(self) -> None:
        """The image is the nats-server release the tests run; pods are non-root and spread over zones."""
        chart = values()
        assert chart["container"]["image"]["tag"].startswith(f"{nats_minor()}.")
        pod = chart["podTemplate"]["merge"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in (chart["container"], chart["reloader"]):
            assert container["merge"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert container["merge"]["securityContext"]["readOnlyRootFilesystem"] is True
        assert "topology.kubernetes.io/zone" in chart["podTemplate"]["topologySpreadConstraints"]
        assert "memory" in chart["container"]["resources"]["limits"]
        assert chart["podDisruptionBudget"]["enabled"] is True
