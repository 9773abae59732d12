"""Zones on one machine: run the fault scenarios and print a table (`make chaos-zones`).

    python -m tests.zones.run                         # every scenario, a fresh seed each
    python -m tests.zones.run --seed 7 worker-zombie  # one scenario, replayed

Needs root (network namespaces). Each scenario builds three zones — a node of the deployed 3-node
cluster, a replica of every service and two workers in each — runs keyed load through one fault and its
heal, and checks the outcome from outside (tests/zones/checker.py). The seed picks job durations, arrival
times and ties between targets; the timing of a real machine still differs between runs.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from .harness import Outcome, Phases, run_scenario
from .scenarios import all_scenarios, named

HEADER = (
    f"{'scenario':<27} {'seed':>6} {'target':<34} {'resume':>7} {'stall':>5} {'elected+':>9} {'heal':>5} "
    f"{'jobs/s before/during/after':>26} {'accepted':>8} {'lost':>4} {'rescues':>7} "
    f"{'dups (unexpl.)':>14} {'stale rej.':>10} {'agree':>5} {'wall':>5}  result"
)


def row(o: Outcome) -> str:
    v = o.verdict
    resume = "never" if v.resume_s is None else f"{v.resume_s:.1f}s"
    elected = "-" if v.elected_s is None else f"{v.elected_s:.1f}+{v.after_election_s or 0:.1f}s"
    rates = f"{v.rate_before:.1f}/{v.rate_during:.1f}/{v.rate_after:.1f}"
    dups = f"{v.duplicates} ({len(v.unexplained)})"
    return (
        f"{o.scenario:<27} {o.seed:>6} {o.target[:34]:<34} {resume:>7} {v.max_gap_s:>4.1f}s {elected:>9} {v.heal_gap_s:>4.1f}s "
        f"{rates:>26} {v.accepted:>8} {len(v.lost):>4} {v.rescues:>7} {dups:>14} {o.stale_rejected:>10} "
        f"{'yes' if o.nodes_agree else 'NO':>5} {o.wall_s:>4.0f}s  {'pass' if o.ok else 'FAIL'}"
    )


def details(o: Outcome) -> list[str]:
    lines = [
        f"{o.scenario} (seed {o.seed}, logs in {o.work_dir}; fault at {o.fault_at:.3f}, healed +{o.fault_s:.1f}s):"
    ]
    lines.append(f"  affected: {', '.join(o.affected)}")
    if o.orphaned:
        lines.append(f"  leaderless until elected: {', '.join(o.orphaned)}")
    if o.reelected:
        lines.append(f"  leaderless after the heal: {', '.join(o.reelected)}")
    if o.unelected:
        lines.append(f"  not elected before the heal: {', '.join(o.unelected)}")
    lines += [f"  problem: {p}" for p in o.problems]
    for text in o.verdict.unexplained[:5]:
        lines.append(f"  unexplained: {text}")
    for text in o.verdict.late[:3]:
        lines.append(f"  late work after heal ({len(o.verdict.late)}): {text}")
    if o.zombie_expected:
        lines.append(
            f"  zombie: {o.zombie_expected} attempts finished after being taken from it; "
            f"{o.zombie_rejected} reports rejected as stale, the rest never sent (cancelled on heal)"
        )
    lines.append(
        f"  reports rejected: {o.stale_rejected} of superseded attempts, {o.redelivered} already applied"
    )
    lines.append(f"  service logs: {o.tracebacks} tracebacks")
    if o.events:
        lines.append("  events: " + ", ".join(f"{k} {n}" for k, n in sorted(o.events.items())))
    for name, crashes in sorted(o.crashes.items()):
        kinds = Counter(c.split(" ", 1)[1] for c in crashes)
        span = f"{crashes[0].split()[0]}..{crashes[-1].split()[0]}"
        lines.append(f"  crashes {name} ({span}): " + ", ".join(f"{n}× {k}" for k, n in kinds.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    parser.add_argument(
        "--seed", type=int, help="the same seed for every scenario (default: a fresh one each)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="jobs submitted per second")
    parser.add_argument("--before", type=float, default=6.0)
    parser.add_argument("--fault", type=float, default=12.0, help="seconds the fault lasts")
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the harness's own clients reconnecting through faults
    scenarios = [named(n) for n in args.scenarios] if args.scenarios else all_scenarios()
    phases = Phases(args.before, args.fault, args.after)
    outcomes = []
    for scenario in scenarios:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
        work_dir = Path(tempfile.mkdtemp(prefix=f"jetsched-zones-{scenario.name}-"))
        print(f"{scenario.name}: seed {seed}, logs in {work_dir}", flush=True)
        outcome = run_scenario(scenario, seed, work_dir, phases, args.rate)
        print(row(outcome), flush=True)
        (work_dir / "report.txt").write_text("\n".join([HEADER, row(outcome), *details(outcome)]) + "\n")
        outcomes.append(outcome)
    print()
    print(HEADER)
    for outcome in outcomes:
        print(row(outcome))
    print()
    for outcome in outcomes:
        print("\n".join(details(outcome)))
    sys.exit(0 if all(o.ok for o in outcomes) else 1)


if __name__ == "__main__":
    main()
