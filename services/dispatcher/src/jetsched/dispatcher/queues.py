"""The dispatch board: ready jobs in priority order per capability, and which session holds what. Pure.

Fed by the record feed (`observe`) and by the dispatcher's own claims (`reserve` / `settle`), it answers
one question — what to claim next for whom (`plan`) — without I/O:

- Ready jobs of one capability sit in ten lanes per concurrency key, one per priority, each in the order
  its jobs *first* became ready (`JobRecord.queued_at`): a job rescued from a lost, timed-out or released
  attempt, or retried, goes back to its old place, not behind everything submitted since — it has waited
  already. Entries are deleted lazily: a lane head whose job is no longer ready (or is being claimed) is
  dropped when looked at.
- A session's load is the jobs leased to it as the feed reports them (whichever replica claimed them),
  plus this board's claims in flight, minus the jobs whose outcome the worker has already published
  (`finish`: its slot is free before the reaper's CAS of the outcome comes back on the feed). A worker is
  never planned more jobs than its declared concurrency minus that load. (Its heartbeat's own list is up
  to an interval stale, so it is not used here; two replicas racing for one slot are settled by the
  worker handing the extra job back.) The one exception: a session whose heartbeat lists `concurrency +
  HELD_BEYOND_CONCURRENCY` jobs or more is planned nothing. Its reports are not being stored (the outcomes
  stream failing over, full) — their slots were freed as they were published — and a worker holds at most
  `max_listed` jobs, dropping work beyond them. Fleet-wide concurrency caps keep counting a job until its
  record leaves `running` — also when its session is presumed lost, which frees the session's slots only.
- A capability split in partitions (`partitions.py`) has one queue per partition (`cap#k`), each with
  its share of every session's slots, counted per (session, partition).
- Revisions only move forward: an update older than what the board knows (a late feed message after the
  board's own CAS) is ignored. The board knows revisions only of the jobs it holds (ready, running) and
  keeps nothing at all for a job that waits for a time or for its workflow (scheduled, waiting) — those
  can be millions, for hours (docs/scaling.md, "Pending jobs"). Forgetting is safe: the feed delivers a
  key's revisions in order, so only the board's own re-read after a lost claim can be ahead of it, and an
  older revision applied after a forgotten newer one is undone by the feed's next message, at the cost
  of at most one failed claim CAS.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jetsched.core.models import HELD_BEYOND_CONCURRENCY, TERMINAL, JobRecord, JobState
from jetsched.core.workers import matches

from . import partitions
from .limits import Limits
from .routing import pick

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.core.changes import Change
    from jetsched.core.workers import Session, WorkerRegistry


#: Outcomes remembered for jobs not (yet) seen running; the oldest are forgotten past this.
MAX_FINISHED = 100_000
#: States of jobs the board keeps nothing for: not the dispatcher's until they become ready.
UNTRACKED = frozenset({JobState.SCHEDULED, JobState.WAITING}) | TERMINAL


@dataclass(slots=True)
class Claim:
    record: JobRecord
    revision: int
    session: Session


@dataclass
class Board:
    ready: dict[str, tuple[JobRecord, int]] = field(default_factory=dict)
    #: capability → concurrency key ("" for none) → ten lanes, one per priority: heaps of (first ready, id)
    queues: dict[str, dict[str, list[list[tuple[int, str]]]]] = field(default_factory=dict)
    #: capability → per-level credit of the smooth weighted round-robin (weighted priority mode)
    credit: dict[str, list[float]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    held: dict[str, set[str]] = field(default_factory=dict)
    holder: dict[str, str] = field(default_factory=dict)
    claiming: set[str] = field(default_factory=set)
    limits: Limits = field(default_factory=Limits)
    #: job id → (capability, concurrency key) of jobs counted as running
    counted: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: (capability, key) → when it was last served, for round-robin between keys of equal priority
    served: dict[tuple[str, str], int] = field(default_factory=dict)
    #: job id → session that published its outcome while the record still says running
    finished: dict[str, str] = field(default_factory=dict)
    #: capability → the partitions its ready jobs are split in (`partitions.py`; 1: not split)
    partition_count: Callable[[str], int] = lambda _: 1
    #: (session, partition queue) → jobs of that partition it holds, and each held job's partition queue
    held_in: dict[tuple[str, str], int] = field(default_factory=dict)
    held_queue: dict[str, str] = field(default_factory=dict)
    _turn: int = 0

    def observe(self, change: Change) -> bool:
        """Apply a feed update; True when it may make new dispatches possible."""
        job_id, revision, state = change.id, change.revision, change.state
        if revision <= self.revisions.get(job_id, 0):
            return False
        self.revisions[job_id] = revision
        self._release(job_id)
        self.ready.pop(job_id, None)
        if state is not JobState.RUNNING:
            self.finished.pop(job_id, None)
        if state is None or state in UNTRACKED:
            self.revisions.pop(job_id, None)
            return True
        if state is JobState.READY:
            record = change.record()
            self.ready[job_id] = (record, revision)
            self._push(record)
            return True
        if state is JobState.RUNNING:
            if change.session is not None:
                step = change.workflow is not None
                self._hold(job_id, change.session, change.capability, change.concurrency_key, step)
            return False
        return True

    def finish(self, job_id: str, session_id: str) -> bool:
        """A worker published a job's outcome: its slot is free (True if that frees one now)."""
        self.finished[job_id] = session_id
        while len(self.finished) > MAX_FINISHED:  # outcomes for jobs the feed never showed here
            del self.finished[next(iter(self.finished))]
        if self.holder.get(job_id) != session_id:
            return False
        self._free_slot(job_id)
        return True

    def load(self, session: Session) -> int:
        return len(self.held.get(session.id, ()))

    def free(self, session: Session, queue: str | None = None, offset: int = 0) -> int:
        """Slots of the session free — for one partition queue, of that partition's share (the session's
        remainder starting at `offset`: `partitions.offsets`)."""
        heartbeat = session.heartbeat
        if len(heartbeat.running) >= heartbeat.concurrency + HELD_BEYOND_CONCURRENCY:
            return 0  # holding that many, it has reports it cannot store: sent more, it would drop them
        free = heartbeat.concurrency - self.load(session)
        if queue is None or partitions.SEPARATOR not in queue:
            return free
        capability, number = partitions.split(queue)
        share = partitions.slots(
            session.heartbeat.concurrency, offset, number, self.partition_count(capability)
        )
        return min(free, share - self.held_in.get((session.id, queue), 0))

    def repartition(self, capability: str) -> None:
        """Sort a capability's ready jobs into its queues again (its partition count changed)."""
        for queue in [q for q in self.queues if partitions.split(q)[0] == capability]:
            del self.queues[queue]
        for record, _ in self.ready.values():
            if record.capability == capability:
                self._push(record)

    def plan(
        self,
        registry: WorkerRegistry,
        limit: int,
        now_ms: int,
        dispatches: Callable[[str], bool] = lambda _: True,
    ) -> list[Claim]:
        """Reserve up to `limit` claims: highest priority first, each to the least-loaded capable session.

        `dispatches(capability)` says whether this replica hands out a capability (its shard is leased
        here and the queue is not paused). Within a capability, jobs of different concurrency keys take
        turns at equal priority (one key's backlog never starves another's), and the queue's limits apply:
        a key at its cap or out of rate tokens is passed over, a capability at its cap stops. A job whose
        required labels no free session announces is passed over too, never blocking lower priorities.
        """
        claims: list[Claim] = []
        for queue, keyed in self.queues.items():
            if not dispatches(queue):
                continue
            capability = partitions.split(queue)[0]
            capable = registry.capable(capability, now_ms)
            offsets = (
                partitions.offsets(
                    ((s.id, s.heartbeat.concurrency) for s in capable), self.partition_count(capability)
                )
                if partitions.SEPARATOR in queue
                else {}
            )
            sessions = [s for s in capable if self.free(s, queue, offsets.get(s.id, 0)) > 0]
            passed: list[tuple[str, int, tuple[int, str]]] = []
            while sessions and len(claims) < limit and self.limits.capability_open(capability, now_ms):
                chosen = self._next(queue, capability, keyed, now_ms)
                if chosen is None:
                    break
                key, level = chosen
                head = heapq.heappop(keyed[key][level])
                record, revision = self.ready[head[1]]
                fitting = [s for s in sessions if matches(s, record.labels)] if record.labels else sessions
                if not fitting:
                    passed.append((key, level, head))
                    continue
                session = pick(fitting, self.load)
                claims.append(Claim(record, revision, session))
                self.claiming.add(record.id)
                self._hold(
                    record.id, session.id, capability, record.concurrency_key, record.workflow is not None
                )
                self.limits.start(capability, record.concurrency_key, now_ms)
                self._turn += 1
                self.served[queue, key] = self._turn
                if self.free(session, queue, offsets.get(session.id, 0)) <= 0:
                    sessions.remove(session)
            for key, level, head in passed:
                heapq.heappush(keyed[key][level], head)
        return claims

    def _next(
        self, queue: str, capability: str, keyed: dict[str, list[list[tuple[int, str]]]], now_ms: int
    ) -> tuple[str, int] | None:
        """The (key, priority level) whose head goes next, by the queue's priority mode.

        strict: the highest (aged) priority; weighted: smooth weighted round-robin over the levels present,
        level p weighing p + 1. Ties between keys go to the one served longest ago.
        """
        settings = self.limits.of(capability)
        heads: list[tuple[int, str, int]] = []  # (effective priority, key, level)
        for key, levels in keyed.items():
            if not self.limits.key_open(capability, key or None, now_ms):
                continue
            for level in range(9, -1, -1):
                lane = levels[level]
                while lane and (lane[0][1] not in self.ready or lane[0][1] in self.claiming):
                    heapq.heappop(lane)
                if lane:
                    heads.append((self._effective(lane[0][0], level, settings.aging_ms, now_ms), key, level))
        if not heads:
            return None
        if settings.priority_mode == "weighted":
            credit = self.credit.setdefault(queue, [0.0] * 10)
            present = {level for _, _, level in heads}
            for level in present:
                credit[level] += level + 1
            best_level = max(present, key=lambda lv: (credit[lv], lv))
            credit[best_level] -= sum(lv + 1 for lv in present)
            heads = [h for h in heads if h[2] == best_level]
        top = max(p for p, _, _ in heads)
        _, key, level = min(
            ((self.served.get((queue, k), 0), -lv, k), k, lv) for p, k, lv in heads if p == top
        )
        return key, level

    def _effective(self, queued_at_ms: int, level: int, aging_ms: int | None, now_ms: int) -> int:
        if aging_ms is None:
            return level
        waited = now_ms - queued_at_ms
        return min(9, level + max(0, waited) // aging_ms)

    def drop(self, job_id: str) -> None:
        """Offer a ready job no more until the feed shows a newer revision of it (it cannot be claimed)."""
        self.ready.pop(job_id, None)

    def settle(self, claim: Claim, new_revision: int | None) -> None:
        """A claim's CAS finished: won (`new_revision`) or lost (None: the feed will say what happened).

        A lost claim gives back its hold and cap count and its place in line — unless the feed has shown
        a newer revision of the job since it was planned: that update already dropped them, and what the
        board holds now is the feed's (another replica's claim, whose hold and count must stay).
        """
        job_id = claim.record.id
        self.claiming.discard(job_id)
        if new_revision is None:
            if self.revisions.get(job_id) == claim.revision:
                self._release(job_id)
                entry = self.ready.get(job_id)
                if entry is not None:
                    self._push(entry[0])
            return
        self.ready.pop(job_id, None)
        self.revisions[job_id] = max(new_revision, self.revisions.get(job_id, 0))

    def forget_session(self, session_id: str) -> None:
        """A session is presumed lost: its slots are freed, but its jobs stay counted by the caps until the
        feed shows their records leave running. Its worker may only have been slow (and run them on), and
        the reaper, which rescues them, decides on its own clock: until it has, they still run."""
        for job_id in list(self.held.get(session_id, ())):
            self._free_slot(job_id)

    def _queue(self, capability: str, job_id: str, step: bool) -> str:
        return partitions.queue_of(capability, job_id, self.partition_count(capability), step)

    def _push(self, record: JobRecord) -> None:
        queue = self._queue(record.capability, record.id, record.workflow is not None)
        keyed = self.queues.setdefault(queue, {})
        levels = keyed.get(record.concurrency_key or "")
        if levels is None:
            levels = keyed[record.concurrency_key or ""] = [[] for _ in range(10)]
        heapq.heappush(levels[record.priority], (record.queued_at, record.id))

    def _hold(self, job_id: str, session_id: str, capability: str, key: str | None, step: bool) -> None:
        if self.finished.get(job_id) != session_id and self.holder.get(job_id) != session_id:
            self._free_slot(job_id)  # held elsewhere as last seen: it moved
            self.holder[job_id] = session_id
            self.held.setdefault(session_id, set()).add(job_id)
            queue = self._queue(capability, job_id, step)
            if partitions.SEPARATOR in queue:
                self.held_queue[job_id] = queue
                self.held_in[session_id, queue] = self.held_in.get((session_id, queue), 0) + 1
        if job_id not in self.counted:
            self.counted[job_id] = (capability, key)
            self.limits.count(capability, key, +1)

    def _release(self, job_id: str) -> None:
        counted = self.counted.pop(job_id, None)
        if counted is not None:
            self.limits.count(*counted, -1)
        self._free_slot(job_id)

    def _free_slot(self, job_id: str) -> None:
        session_id = self.holder.pop(job_id, None)
        if session_id is not None:
            queue = self.held_queue.pop(job_id, None)
            if queue is not None:
                left = self.held_in.get((session_id, queue), 0) - 1
                if left > 0:
                    self.held_in[session_id, queue] = left
                else:
                    self.held_in.pop((session_id, queue), None)
            jobs = self.held.get(session_id)
            if jobs is not None:
                jobs.discard(job_id)
                if not jobs:
                    del self.held[session_id]
