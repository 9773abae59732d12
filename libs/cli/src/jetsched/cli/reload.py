"""`jetsched worker MODULE --reload`: restart the worker whenever a source file of the module changes.

For development only. The supervisor imports nothing of the application: it runs the worker as a child
process (the same command without `--reload`), polls the modification times of the `.py` files under the
module's directory every `INTERVAL_S`, and on a change stops the child with SIGTERM — the worker's own
graceful drain — and starts a new one. A child that exits by itself (an import error, a crash) is started
again at the next change, not in a loop. A poll, not inotify, so it needs no dependency and works on
every filesystem; `watchfiles` is not on this machine's package lists anyway.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

log = logging.getLogger("jetsched.worker.reload")

#: How often the files are looked at, in seconds.
INTERVAL_S = 0.5
#: Directories never watched: virtualenvs, caches, version control.
SKIPPED = frozenset({"__pycache__", "site-packages", "node_modules", ".venv", "venv", ".git"})

Snapshot = dict[Path, int]


def watched_root(module: str, cwd: Path) -> Path:
    """The directory to watch for `module`: its package directory, or the directory of a single module
    (found without running it, from `cwd` as `jetsched worker` imports it); `cwd` if it is not found."""
    sys.path.insert(0, str(cwd))
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path.remove(str(cwd))
    if spec is None or spec.origin is None or not spec.has_location:
        return cwd
    return Path(spec.origin).resolve().parent


def _sources(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.is_dir():
            if path.name not in SKIPPED and not path.name.startswith("."):
                yield from _sources(path)
        elif path.suffix == ".py":
            yield path


def snapshot(root: Path) -> Snapshot:
    """Every watched source file under `root` with its modification time (ns)."""
    found: Snapshot = {}
    for path in _sources(root):
        try:
            found[path] = path.stat().st_mtime_ns
        except FileNotFoundError:  # deleted while we looked: the next snapshot says so
            continue
    return found


def changes(before: Snapshot, after: Snapshot) -> list[Path]:
    """Files added, removed or modified between two snapshots, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def supervise(argv: list[str], root: Path) -> int:
    """Run `jetsched <argv>` (a worker command without `--reload`) and restart it on every change under
    `root`, until SIGINT or SIGTERM; returns the exit code."""
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    log.info("watching for changes", extra={"root": str(root)})
    seen = snapshot(root)
    child: subprocess.Popen[bytes] | None = subprocess.Popen([sys.executable, "-m", "jetsched.cli", *argv])
    try:
        while not stop.wait(INTERVAL_S):
            now = snapshot(root)
            changed = changes(seen, now)
            seen = now
            if changed:
                log.info("restarting the worker", extra={"changed": [str(p) for p in changed[:5]]})
                _stop(child)
                child = subprocess.Popen([sys.executable, "-m", "jetsched.cli", *argv])
            elif child is not None and child.poll() is not None:
                log.warning("the worker exited; waiting for a change", extra={"exit_code": child.returncode})
                child = None
    finally:
        _stop(child)
    return 0


def _stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is not None and child.poll() is None:
        child.terminate()
        child.wait()
