"""`jetsched worker --reload` and `--capabilities`: what is watched, what counts as a change, what is served."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from jetsched.cli import reload
from jetsched.cli.__main__ import build_parser
from jetsched.sdk import Job, Tasks

if TYPE_CHECKING:
    from pathlib import Path


def touch(path: Path, text: str = "", mtime_ns: int = 1_000_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


class TestSnapshot:
    def test_python_sources_below_the_root_outside_caches_and_virtualenvs(self, tmp_path: Path) -> None:
        """`.py` files anywhere below count; caches, virtualenvs, hidden directories and other files do not."""
        kept = [touch(tmp_path / "app.py"), touch(tmp_path / "pkg" / "mod.py")]
        for skipped in (
            "__pycache__/app.py",
            ".venv/lib/x.py",
            ".hidden/y.py",
            "site-packages/z.py",
            "notes.txt",
        ):
            touch(tmp_path / skipped)
        assert sorted(reload.snapshot(tmp_path)) == sorted(kept)

    def test_changes_are_additions_removals_and_new_times(self, tmp_path: Path) -> None:
        """A file added, removed or rewritten is a change; an untouched one is not."""
        same, edited, gone = (touch(tmp_path / f"{n}.py") for n in ("same", "edited", "gone"))
        before = reload.snapshot(tmp_path)
        touch(edited, "x = 2", mtime_ns=2_000_000_000)
        gone.unlink()
        added = touch(tmp_path / "added.py")
        assert reload.changes(before, reload.snapshot(tmp_path)) == sorted([added, edited, gone])
        assert same not in reload.changes(before, reload.snapshot(tmp_path))


class TestWatchedRoot:
    def test_a_package_is_watched_from_its_directory(self, tmp_path: Path) -> None:
        """`jetsched worker shop.tasks` watches the `shop/` package, found without importing it."""
        touch(tmp_path / "shopx" / "__init__.py")
        touch(tmp_path / "shopx" / "tasks.py", "raise SystemExit('imported!')")
        assert reload.watched_root("shopx.tasks", tmp_path) == (tmp_path / "shopx").resolve()

    def test_an_unknown_module_falls_back_to_the_working_directory(self, tmp_path: Path) -> None:
        """A module that cannot be found (yet) is watched for from where the worker starts."""
        assert reload.watched_root("no_such_module_here", tmp_path) == tmp_path


class TestCapabilities:
    def test_only_the_named_capabilities(self) -> None:
        """`--capabilities a,b` serves a registry of those handlers alone."""
        tasks = Tasks()
        for name in ("a", "b", "c"):
            tasks.task(name)(lambda job: None)
        args = build_parser().parse_args(["worker", "mod", "--capabilities", "a, c"])
        assert sorted(tasks.only(args.capabilities).handlers) == ["a", "c"]

    def test_an_unknown_capability_is_an_error(self) -> None:
        """Naming a capability the module does not register stops the worker with a clear message."""
        tasks = Tasks()

        @tasks.task("a")
        def a(job: Job) -> None: ...

        with pytest.raises(ValueError, match=r"no handler for b \(registered: a\)"):
            tasks.only(["b"])
