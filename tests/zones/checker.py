"""The checker: what the zones did, judged from outside — the execution log the workers write to a file,
the records read back from the KV bucket after healing, the submit replies, the services' own logs.

Pure: `judge()` takes those as data and returns a `Verdict`; nothing here touches NATS or the network.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("succeeded", "dead", "cancelled")
#: A job started on a cut-off worker this long after the cut may still have been claimed before it.
GRACE_S = 1.0
#: The majority may stop starting jobs for at most this long during a fault.
RESUME_LIMIT_S = 5.0
#: A pause in starts shorter than this is no stall (load arrives ~20 jobs/s).
STALL_S = 1.0
#: A work message queued for a cut-off worker may reach it this long after the heal (TCP retransmission
#: backs off while a link is down): a run that late on an affected host is still the fault's doing.
LATE_S = 15.0


@dataclass(frozen=True, slots=True)
class Run:
    at: float
    pid: int
    host: str
    job_id: str
    attempt: int
    event: str


def parse_runs(text: str) -> list[Run]:
    rows = []
    for line in text.splitlines():
        at, pid, host, job_id, attempt, event = line.split()
        rows.append(Run(float(at), int(pid), host, job_id, int(attempt), event))
    return rows


@dataclass
class Window:
    """The fault as the harness applied it."""

    fault_at: float
    heal_at: float
    before_s: float
    after_s: float
    #: Hosts cut off, killed or paused, and hosts whose NATS connection went to a node that was.
    affected: set[str]
    #: Worker hosts that are part of the majority (every worker not affected).
    majority: set[str]
    #: Hosts that could not reach the majority at all during the fault.
    cut: set[str] = field(default_factory=set)


@dataclass
class Verdict:
    accepted: int = 0
    succeeded: int = 0
    dead: int = 0
    lost: list[str] = field(default_factory=list)
    rescues: int = 0
    duplicates: int = 0
    explained: int = 0
    unexplained: list[str] = field(default_factory=list)
    same_attempt_twice: list[str] = field(default_factory=list)
    #: Explained duplicates whose earlier run started only after the heal: a claim's work message that
    #: reached the formerly cut-off worker after the job had been rescued and rerun elsewhere.
    late: list[str] = field(default_factory=list)
    stale_accepted: list[str] = field(default_factory=list)
    minority_starts: list[str] = field(default_factory=list)
    #: When the longest stall (≥ `STALL_S`) of the majority during the fault ended, in s after the fault;
    #: 0 if there was none, None if the majority never started a job again before the heal.
    resume_s: float | None = None
    #: The longest time the majority started no job during the fault.
    max_gap_s: float = 0.0
    #: The longest time no worker started a job in the `after_s` after the heal (healing disrupts too).
    heal_gap_s: float = 0.0
    rate_before: float = 0.0
    rate_during: float = 0.0
    rate_after: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def judge(
    runs: list[Run], accepted: dict[str, float], records: dict[str, dict[str, Any]], window: Window
) -> Verdict:
    v = Verdict(accepted=len(accepted))
    v.lost = sorted(j for j in accepted if records.get(j, {}).get("state") not in TERMINAL)
    v.succeeded = sum(r.get("state") == "succeeded" for r in records.values())
    v.dead = sum(r.get("state") == "dead" for r in records.values())
    v.rescues = sum(e.get("kind") == "lost" for r in records.values() for e in r.get("errors", ()))
    starts = [r for r in runs if r.event == "start"]
    _duplicates(v, starts, records, window)
    _stale(v, starts, records)
    _progress(v, starts, accepted, window)
    if v.lost:
        v.problems.append(f"lost {len(v.lost)}: {v.lost[:3]}")
    if v.unexplained:
        v.problems.append(f"unexplained duplicates {len(v.unexplained)}: {v.unexplained[:3]}")
    if v.same_attempt_twice:
        v.problems.append(f"one attempt run twice {len(v.same_attempt_twice)}: {v.same_attempt_twice[:3]}")
    if v.stale_accepted:
        v.problems.append(f"stale completions accepted {len(v.stale_accepted)}: {v.stale_accepted[:3]}")
    if v.minority_starts:
        v.problems.append(f"cut-off hosts started jobs {len(v.minority_starts)}: {v.minority_starts[:3]}")
    if v.resume_s is None or v.max_gap_s > RESUME_LIMIT_S:
        shown = "never" if v.resume_s is None else f"at t+{v.resume_s:.1f}s"
        v.problems.append(
            f"majority started no job for {v.max_gap_s:.1f}s, resumed {shown} (limit {RESUME_LIMIT_S:.0f}s)"
        )
    if v.heal_gap_s > RESUME_LIMIT_S:
        v.problems.append(
            f"after healing, no job started for {v.heal_gap_s:.1f}s (limit {RESUME_LIMIT_S:.0f}s)"
        )
    return v


def _duplicates(v: Verdict, starts: list[Run], records: dict[str, dict[str, Any]], w: Window) -> None:
    """A job run more than once is explained only if every earlier run's executor was hit by the fault
    and that run started before the heal (or its work message was held up by the cut: `LATE_S`)."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in starts:
        by_job[run.job_id].append(run)
    for job_id, runs in by_job.items():
        attempts = Counter(r.attempt for r in runs)
        twice = [a for a, n in attempts.items() if n > 1]
        if twice:
            v.same_attempt_twice.append(f"{job_id} attempt {twice}")
        if len(runs) < 2:
            continue
        v.duplicates += 1
        runs.sort(key=lambda r: (r.attempt, r.at))
        earlier = runs[:-1]
        kinds = {e["attempt"]: e["kind"] for e in records.get(job_id, {}).get("errors", ())}
        if all(r.host in w.affected and r.at < w.heal_at + LATE_S for r in earlier):
            v.explained += 1
            if any(r.at >= w.heal_at for r in earlier):
                v.late.append(f"{job_id}: {_where(runs, kinds, w)}")
            continue
        v.unexplained.append(f"{job_id}: {_where(runs, kinds, w)}")


def _where(runs: list[Run], kinds: dict[int, str], w: Window) -> str:
    return ", ".join(
        f"a{r.attempt}@{r.host}{'' if r.host in w.affected else '(healthy)'} t{r.at - w.fault_at:+.1f}s"
        f" record:{kinds.get(r.attempt, '-')}"
        for r in runs
    )


def _stale(v: Verdict, starts: list[Run], records: dict[str, dict[str, Any]]) -> None:
    """A succeeded record's result must come from its final attempt, run by the process that logged it."""
    ran = {(r.job_id, r.attempt, r.pid) for r in starts}
    for job_id, record in records.items():
        if record.get("state") != "succeeded":
            continue
        result = record.get("result") or {}
        attempt, pid = result.get("attempt"), result.get("pid")
        if attempt != record.get("attempt") or (job_id, attempt, pid) not in ran:
            v.stale_accepted.append(
                f"{job_id}: record attempt {record.get('attempt')}, result from attempt {attempt} pid {pid}"
            )


def _rate(starts: list[Run], hosts: set[str] | None, start: float, end: float) -> float:
    if end <= start:
        return 0.0
    return sum(1 for r in starts if (hosts is None or r.host in hosts) and start <= r.at < end) / (
        end - start
    )


def _longest_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    edges = [start, *sorted(t for t in times if start <= t < end), end]
    return max(itertools.pairwise(edges), key=lambda gap: gap[1] - gap[0])


def _progress(v: Verdict, starts: list[Run], accepted: dict[str, float], w: Window) -> None:
    v.rate_before = _rate(starts, w.majority, w.fault_at - w.before_s, w.fault_at)
    v.rate_during = _rate(starts, w.majority, w.fault_at, w.heal_at)
    v.rate_after = _rate(starts, None, w.heal_at, w.heal_at + w.after_s)
    start, end = _longest_gap([r.at for r in starts if r.host in w.majority], w.fault_at, w.heal_at)
    v.max_gap_s = end - start
    after = _longest_gap([r.at for r in starts], w.heal_at, w.heal_at + w.after_s)
    v.heal_gap_s = after[1] - after[0]
    if end >= w.heal_at:
        v.resume_s = None
    else:
        v.resume_s = end - w.fault_at if v.max_gap_s >= STALL_S else 0.0
    v.minority_starts = [
        f"{r.job_id} a{r.attempt}@{r.host} t{r.at - w.fault_at:+.1f}s"
        for r in starts
        if r.host in w.cut and w.fault_at + GRACE_S < r.at < w.heal_at
    ]
