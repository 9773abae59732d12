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
#: The majority may stop starting jobs for at most this long during a fault that needs no election.
RESUME_LIMIT_S = 5.0
#: When the fault took a NATS node that led Raft groups, job starts must resume this soon after the
#: last of their new leaders was elected (the election itself is nats-server's: 4–9 s).
ELECTION_SLACK_S = 1.0
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
    #: Each NATS node lost while it led Raft groups: when it was lost, and when the last of those
    #: groups had a new leader (None: not before the heal).
    elections: list[tuple[float, float | None]] = field(default_factory=list)
    #: When the last group the heal left leaderless had a leader again (None: the heal disrupted none).
    reelected: float | None = None


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
    #: Seconds from the fault to the last election it needed, and from there to the majority's next
    #: job start (both None when the fault needed no election).
    elected_s: float | None = None
    after_election_s: float | None = None
    #: From the last re-election the heal caused to the next job start (None: it caused none).
    after_reelection_s: float | None = None
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
    if window.elections:
        _after_elections(v, starts, window)
    elif v.resume_s is None or v.max_gap_s > RESUME_LIMIT_S:
        shown = "never" if v.resume_s is None else f"at t+{v.resume_s:.1f}s"
        v.problems.append(
            f"majority started no job for {v.max_gap_s:.1f}s, resumed {shown} (limit {RESUME_LIMIT_S:.0f}s)"
        )
    if window.reelected is not None:
        end = window.heal_at + window.after_s
        later = sorted(r.at for r in starts if window.reelected <= r.at < end)
        slack = later[0] - window.reelected if later else end - window.reelected
        v.after_reelection_s = slack
        if slack > ELECTION_SLACK_S:
            v.problems.append(
                f"after healing, jobs resumed {slack:.1f}s after the last re-election at "
                f"t+{window.reelected - window.fault_at:.1f}s (limit {ELECTION_SLACK_S:.0f}s)"
            )
    elif v.heal_gap_s > RESUME_LIMIT_S:
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


def _after_elections(v: Verdict, starts: list[Run], w: Window) -> None:
    """After each lost node, starts resume within `ELECTION_SLACK_S` of the last election it needed
    and stall no more until the next node is lost (or the heal)."""
    majority = sorted(r.at for r in starts if r.host in w.majority)
    ends = [at for at, _ in w.elections[1:]] + [w.heal_at]
    for (lost, elected), until in zip(w.elections, ends, strict=True):
        t = lost - w.fault_at
        if elected is None:
            v.problems.append(f"groups led by the node lost at t+{t:.1f}s had no new leader in time")
            continue
        later = [at for at in majority if elected <= at < until]
        slack = later[0] - elected if later else until - elected
        v.elected_s = elected - w.fault_at if v.elected_s is None else v.elected_s
        v.after_election_s = max(v.after_election_s or 0.0, slack)
        if slack > ELECTION_SLACK_S:
            v.problems.append(
                f"majority resumed {slack:.1f}s after the election at t+{elected - w.fault_at:.1f}s"
                f" (node lost at t+{t:.1f}s; limit {ELECTION_SLACK_S:.0f}s)"
            )
        if later:
            start, end = _longest_gap(later, later[0], until)
            if end - start > RESUME_LIMIT_S:
                v.problems.append(f"majority stalled again for {end - start:.1f}s after that election")


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
