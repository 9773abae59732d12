"""Every python and sh block of README.md and docs/*.md runs as written, against one real stack.

A document's blocks run in order, in one scratch directory of its own:

- a block whose first line is a comment naming a file (`# tasks.py`, `# pyproject.toml`) is written to that
  file, for the blocks after it to use (a python one is compiled too);
- any other python block runs as a script, an sh block under `bash -euo pipefail`; each must exit 0;
- `<!-- background -->` just before a block starts it and keeps it running (a worker, say) until the
  document's last block has run; it must still be running then;
- `<!-- not-run: reason -->` just before a block skips it, for what cannot run here (an install from the
  package index, a deployment's own files, a tool that is not a Python package) — with the reason.

The one thing changed is the server's address: `nats://127.0.0.1:4222` becomes the test server's, in the
blocks and in `JETSCHED_NATS_URL`. Blocks of other languages (json, yaml, plain) are not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_URL = "nats://127.0.0.1:4222"
RUN = {"python", "sh"}
BLOCK_TIMEOUT_S = 60
FENCE = re.compile(
    r"(?:^ *<!-- (?P<directive>[^\n]*?) -->\n)?^(?P<indent> *)```(?P<lang>\w*)\n(?P<code>.*?)^(?P=indent)```$",
    re.M | re.S,
)
FILE_HEADER = re.compile(r"# ([\w./-]+\.\w+)\n")

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True, slots=True)
class Block:
    where: str
    lang: str
    code: str
    directive: str | None

    @property
    def file(self) -> str | None:
        match = FILE_HEADER.match(self.code)
        return match.group(1) if match else None

    @property
    def runs(self) -> bool:
        return self.lang in RUN or self.file is not None


def blocks(document: Path) -> list[Block]:
    text = document.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("indent")) + 1
        code = textwrap.dedent(match["code"]) if match["indent"] else match["code"]
        found.append(Block(f"{document.name}:{line}", match["lang"], code, match["directive"]))
    return [b for b in found if b.runs]


def runnable(document: Path) -> bool:
    return any(b.directive is None or b.directive == "background" for b in blocks(document))


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One nats-server and the four service processes, shared by every document."""
    work = tmp_path_factory.mktemp("docs-stack")
    server = NatsServer(work / "jetstream").start()
    fleet = Fleet(server.url, work).start_services()
    try:

        async def answering() -> None:
            # timeout=30: the client resends while nobody answers yet (for 5 s by default, which a
            # loaded machine, busy with other tests, can take to start intake).
            async with Client(server.url, timeout=30) as client:
                await eventually(client.stats, timeout=30, what="intake answers")

        asyncio.run(answering())
        yield server.url
    finally:
        fleet.stop()
        server.stop()


class TestDirectives:
    @pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
    def test_known_and_explained(self, document: Path) -> None:
        """A block is marked only `background` or `not-run: <reason>`, and a file block names a file."""
        for block in blocks(document):
            directive = block.directive
            assert directive in (None, "background") or re.fullmatch(r"not-run: \S.{9,}", directive or ""), (
                f"{block.where}: {directive!r}"
            )


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if runnable(d)], ids=lambda p: p.name)
def test_examples_run_as_written(document: Path, server_url: str, tmp_path: Path) -> None:
    """Each runnable block of the document exits 0 in order; its background blocks are still running at the end."""
    env = {
        **os.environ,
        "JETSCHED_NATS_URL": server_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    background: list[tuple[Block, subprocess.Popen[bytes]]] = []
    try:
        for block in blocks(document):
            if block.directive is not None and block.directive.startswith("not-run:"):
                continue
            code = block.code.replace(DOCUMENTED_URL, server_url)
            if block.file is not None:
                (tmp_path / block.file).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / block.file).write_text(code)
                if block.lang == "python":
                    compile(code, block.where, "exec")
                continue
            command = (
                [sys.executable, "-c", code]
                if block.lang == "python"
                else ["bash", "-euo", "pipefail", "-c", code]
            )
            if block.directive == "background":
                background.append((block, subprocess.Popen(command, cwd=tmp_path, env=env)))
                continue
            done = subprocess.run(
                command, cwd=tmp_path, env=env, capture_output=True, timeout=BLOCK_TIMEOUT_S, check=False
            )
            output = (done.stdout + done.stderr).decode()[-3000:]
            assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{output}"
        for block, proc in background:
            assert proc.poll() is None, f"{block.where} (background) exited {proc.returncode}"
    finally:
        for _, proc in background:
            proc.terminate()
        for _, proc in background:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
