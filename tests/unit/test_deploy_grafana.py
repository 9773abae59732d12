"""The Grafana dashboard in deploy/ queries only metrics jetsched exports, by their Prometheus names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from jetsched.bus.instruments import PROMETHEUS
from jetsched.intake.metrics import GAUGES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "jetsched.json"


def exported() -> set[str]:
    """Prometheus names of every series jetsched exports (histograms as their three series)."""
    names = {"jetsched_quarantined_total"}
    for name in PROMETHEUS.values():
        names |= {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    for name, (_, unit, _, _) in GAUGES.items():
        names.add(name.replace(".", "_") + ("_seconds" if unit == "s" else ""))
    return names


def test_every_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for q in queries for m in re.findall(r"\bjetsched_[a-z_]+", q)}
    assert len(used) >= 15, used
    assert used <= exported(), used - exported()
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))
