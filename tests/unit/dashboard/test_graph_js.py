"""The dashboard script's workflow graph, run under Node.js: step names are
data, never object keys that reach the prototype."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources

NODE = shutil.which("node")

HARNESS = """
const src = process.argv[1];
const start = src.indexOf("function graph(steps)");
const end = src.indexOf("\\nfunction ", start + 1);
const node = () => ({ attrs: {}, kids: [], setAttribute(k, v) { this.attrs[k] = v; }, append(...c) { this.kids.push(...c); } });
globalThis.document = { createElementNS: () => node() };
const graph = new Function(src.slice(start, end) + "\\nreturn graph;")();
const svg = graph(JSON.parse(process.argv[2]));
console.log(JSON.stringify({
  width: svg.attrs.width,
  steps: svg.kids.filter((k) => "data-step" in k.attrs).map((k) => k.attrs["data-step"]),
  lines: svg.kids.filter((k) => "x1" in k.attrs).map((k) => Object.values(k.attrs)),
}));
"""


def test_steps_named_like_object_properties() -> None:
    """Steps named `constructor`, `toString`, `__proto__` are laid out like any other: four columns,
    every node drawn, every edge at numeric coordinates (keyed by plain objects, the width was wrong,
    `__proto__` was dropped and edges got NaN)."""
    assert NODE is not None, "this test runs the dashboard's script under Node.js (the machine's `node`)"
    script = (resources.files("jetsched.dashboard") / "static" / "app.js").read_text()
    steps = (
        '{"constructor": {"state": "succeeded"},'
        ' "toString": {"state": "succeeded", "depends_on": ["constructor"]},'
        ' "__proto__": {"state": "running", "depends_on": ["toString"]},'
        ' "valueOf": {"state": "waiting", "depends_on": ["__proto__", "hasOwnProperty"]}}'
    )
    done = subprocess.run(
        [NODE, "-e", HARNESS, script, steps], capture_output=True, text=True, timeout=60, check=True
    )
    drawn = json.loads(done.stdout)
    assert drawn["width"] == str(40 + 4 * 190)
    assert drawn["steps"] == ["constructor", "toString", "__proto__", "valueOf"]
    assert len(drawn["lines"]) == 3
    assert all(value != "NaN" for line in drawn["lines"] for value in line)
