"""Services never import each other; libs never import services; only `bus` (and the SDK) touch nats."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "timer", "dispatcher", "reaper")
PACKAGES = {
    **{name: ROOT / "services" / name / "src" / "jetsched" / name for name in SERVICES},
    **{
        name: ROOT / "libs" / name / "src" / "jetsched" / name
        for name in ("core", "bus", "sdk", "dashboard", "cli", "devkit")
    },
}
#: What each package may import from jetsched.*
ALLOWED = {
    "core": {"core"},
    "bus": {"core", "bus"},
    "sdk": {"core", "bus", "sdk"},
    "dashboard": {"core", "bus", "sdk", "dashboard"},
    "cli": {"core", "bus", "sdk", "dashboard", "cli", "devkit"},
    **{name: {"core", "bus", name} for name in SERVICES},
}


def imports(package: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found.update((path.name, n) for n in names)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_allowed_imports(package: str) -> None:
    """Each package imports only the jetsched packages below it."""
    bad = {
        (file, name)
        for file, name in imports(PACKAGES[package])
        if name.startswith("jetsched.") and name.split(".")[1] not in ALLOWED[package]
    }
    assert not bad


def test_core_is_pure() -> None:
    """The core does no I/O: no nats, no asyncio sleeping in decisions, no wall clock outside clock.py."""
    for file, name in imports(PACKAGES["core"]):
        assert not name.startswith("nats"), file
        if name == "time":
            assert file == "clock.py"
