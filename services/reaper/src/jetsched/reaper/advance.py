"""Advancing workflows: each step job that ends moves its workflow on, exactly once per decision.

Where advancement runs: here, in the reaper, from the job records' change feed — not from the outcome
reports. A step ends by many paths (an outcome, a rescue out of attempts, an expired start deadline, a
cancel through the API, a map collected here), and every one of them is a write to the step's record,
which the feed delivers; on start the feed replays the latest record of every job, so an outcome whose
advancement a crash interrupted is seen again. Applying it twice changes nothing (`core/workflows.apply`).

A step's success whose children all have it as their only parent (a chain's link, a fan-out's root)
releases them at once, before the workflow record takes it in (`core/workflows.direct_children`): the
record catches up with the next outcome that needs it to decide — a fan-in, a failure, the last step — or
`CATCH_UP_MS` after the first outcome it has not taken in, whichever comes first. A fast chain so writes its
record once instead of once per step. What if the process dies here (`workflow.direct.after_release`)? The
children are released and the record has not heard of their parent's success: the parent's job is still
in the bucket (it is retired only once the record took it in), so the restarted feed replays its outcome,
which the record then takes in; the release it implies finds the children moved on and does nothing.

Outcomes are coalesced per workflow: the events that arrive while a workflow's last advance is in flight
are applied together, in one read and one CAS of its record — a 1,000-step fan-out that finishes at once
costs a few CAS writes, not a thousand contending ones. A big workflow's outcomes are also gathered for a
while after its last advance (`coalesce_ms`): every advance rewrites the whole record (~90 KB and ~4 ms of
deciding, encoding and storing for 1,000 steps), which would otherwise cost more than the steps. One workflow is advanced by one task at a time
in a process, and by the one replica that holds its id's shard (`owns`, leased like the timer's shards);
the others keep its outcomes until they see them taken in (the step job retired, or the workflow over),
so the replica that takes a dead one's shard finds them and advances it. Two replicas that briefly both
hold a shard race by CAS, and the loser re-reads.

The check: a workflow record that changed is looked at again `CHECK_AFTER_MS` later, if this process's
view still has step jobs of it `waiting`, or its record says it is stopping (cancelled or failing fast: the
`Jetsched-Workflow-Stopping` header): whatever its record decided and no job shows yet — a writer that
died between its CAS and its intents — is carried out again (`Workflows.repair`): releases of waiting
steps, and every cancellation, of waiting, ready or scheduled steps alike. The workflows feed replays on
start too, so every unfinished workflow is checked after a restart. Revisions this process wrote and
carried out itself need no check (were it to die, its restart checks them all), so a workflow whose
every change since its last check was this process's own is not read again.

A step job that ended is retired to history (`retire.py`) only once its workflow's record has taken in
that ending: retired first, a crash before the advance would leave a restart nothing to replay (the
feed shows the job gone, not ended), and the workflow would never move on.

Reads spared: a released step's job is taken from the record feed (its `waiting` record, kept until it
moves on: live work only), and its parents' results from the outcomes being applied (`Known`).

Abandoned submits (a record left `creating`, its steps `waiting`) are cleared after a grace
(`abandoned.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from jetsched.bus.actors import log_failure
from jetsched.bus.records import Store, decoded
from jetsched.bus.workflows import PLACED_HEADER, STATE_HEADER, STOPPING_HEADER, Known
from jetsched.core import bounds, subjects
from jetsched.core import workflows as wf
from jetsched.core.errors import NotFound, Poisoned
from jetsched.core.models import TERMINAL, JobState
from jetsched.core.schedules import ScheduleRecord, may_still_fire
from jetsched.core.workflows import MAX_PARENTS_BYTES

from .abandoned import GRACE_MS, Kind, Unstarted

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from jetsched.bus.feed import KeyFeed, RecordFeed
    from jetsched.bus.quarantine import Quarantine
    from jetsched.bus.workflows import Workflows
    from jetsched.core.changes import Change
    from jetsched.core.clock import Clock
    from jetsched.core.models import JobRecord
    from jetsched.core.types import JSON

log = logging.getLogger(__name__)

#: How long after a workflow record changed its jobs are checked against it (its writer does it first).
CHECK_AFTER_MS = 2000
#: Workflows advanced at once.
PARALLEL = 32
TICK_S = 0.25
#: A workflow's outcomes are gathered for 1 ms per this many bytes of its record after its last advance,
#: for at most `MAX_COALESCE_MS`: nothing for a small workflow, ~90 ms for a 1,000-step one, whose every
#: advance costs ~5–10 ms of deciding, encoding and storing its ~90 KB here (a tenth of a core at most).
COALESCE_BYTES_PER_MS = 1024
#: A record this small (a few dozen steps) is advanced as soon as its outcomes come.
SMALL_RECORD_BYTES = 4096
#: Bytes of succeeded steps' results kept per workflow between advances (what a step's parents may
#: hand it at most), and workflows kept at once.
KEPT_BYTES = MAX_PARENTS_BYTES
KEPT_WORKFLOWS = 256
MAX_COALESCE_MS = 100
#: How long a workflow's record may go without taking in outcomes already acted on (children released
#: directly): the lag of its steps' `step_state` in `workflows.get` (their jobs' states never lag).
CATCH_UP_MS = 1000


def coalesce_ms(record_bytes: int) -> int:
    """How long after its last advance a workflow with a record this big is advanced again."""
    return min(MAX_COALESCE_MS, max(0, record_bytes - SMALL_RECORD_BYTES) // COALESCE_BYTES_PER_MS)


class Advancer:
    """The reaper's workflow actor: step outcomes in (from the record feed), workflow CAS writes out."""

    name = "workflows"

    def __init__(self, workflows: Workflows, clock: Clock, abandon_after_ms: int = GRACE_MS) -> None:
        self.workflows = workflows
        self.schedules = Store(workflows.nc, subjects.SCHEDULES_BUCKET)
        self.clock = clock
        #: Set by the service before it runs: where to set aside what cannot be read, and the feeds whose
        #: replay must be complete before outcomes are judged.
        self.quarantine: Quarantine | None = None
        self.feeds: tuple[RecordFeed, KeyFeed] | None = None
        self.pending: dict[str, list[wf.StepEvent]] = {}
        #: The ended step jobs behind `pending`'s events (the same positions), to retire once these are
        #: applied; and each one's workflow, so that one retired by another replica is dropped here.
        self.ended: dict[str, list[Change]] = {}
        self.ended_in: dict[str, str] = {}
        #: Per workflow, the pending outcomes' jobs seen retired since, dropped from `pending` in bulk.
        self.taken: dict[str, set[str]] = {}
        #: Whether this replica advances a workflow (its id's shard is leased here; `ReaperService.owns`).
        #: Others keep its outcomes until they are taken in — seen as the step job's retirement or the
        #: workflow's end — and advance it if its shard comes here first.
        self.owns: Callable[[str], bool] = lambda _: True
        #: Outcomes whose children were released directly, not yet taken in by their workflow's record;
        #: the ended step jobs behind them; since when; and what releasing them learned.
        self.deferred: dict[str, list[wf.StepEvent]] = {}
        self.deferred_ended: dict[str, list[Change]] = {}
        self.deferred_at: dict[str, int] = {}
        self.known: dict[str, Known] = {}
        #: Results of steps that succeeded, per running workflow, as its advances learnt them (bounded:
        #: `KEPT_BYTES` a workflow, `KEPT_WORKFLOWS` workflows, the longest unchanged dropped first).
        self.kept: dict[str, dict[int, JSON]] = {}
        self.kept_bytes: dict[str, int] = {}
        #: Where an ended step job goes once its workflow took it in (the service's `Retirer`).
        self.retire: Callable[[Change], None] | None = None
        #: Step jobs in `waiting`, per workflow (from the record feed, as last written), and each one's
        #: workflow.
        self.waiting: dict[str, dict[str, Change]] = {}
        self.waiting_in: dict[str, str] = {}
        #: Running workflows whose records say no step may start any more.
        self.stopping: set[str] = set()
        #: With the records in partitions: running workflows whose step jobs may be outside their own
        #: partition (no `PLACED_HEADER`), and whom to tell when there come to be some, or none.
        self.placing = False
        self.unplaced: set[str] = set()
        self.on_unplaced: Callable[[], None] = lambda: None
        self.unstarted = Unstarted(abandon_after_ms)
        #: When to check a workflow's jobs against its record.
        self.checks: dict[str, int] = {}
        #: Per running workflow, the revisions of its record seen in the feed since its last check, and
        #: those this process wrote and carried out itself: a check is needed only for the others.
        self.seen: dict[str, set[int]] = {}
        self.own: dict[str, set[int]] = {}
        #: Per running workflow, its record's size and when it was last advanced here.
        self.sizes: dict[str, int] = {}
        self.advanced_at: dict[str, int] = {}
        self.busy: set[str] = set()
        self.wake = asyncio.Event()
        self.advanced = 0
        self.repaired = 0
        self.abandoned = 0

    def observe_job(self, change: Change) -> None:
        # A deletion names no workflow: the views say whose job it was.
        workflow_id = change.workflow or self.waiting_in.get(change.id) or self.ended_in.get(change.id)
        if workflow_id is None:
            return
        if change.state is None and change.id in self.ended_in:
            self._forget_ended(change.id)  # retired: its workflow took its ending in
        if change.state is JobState.WAITING:
            self.waiting.setdefault(workflow_id, {})[change.id] = change
            self.waiting_in[change.id] = workflow_id
            self.unstarted.waiting(workflow_id, workflow_id in self.seen, self.clock.now_ms())
            return
        self.waiting_in.pop(change.id, None)
        held = self.waiting.get(workflow_id)
        if held is not None:
            held.pop(change.id, None)
            if not held:
                del self.waiting[workflow_id]
        if change.state in TERMINAL:
            event = wf.event_of(change.record())
            if event is not None:
                self.pending.setdefault(workflow_id, []).append(event)
                self.ended.setdefault(workflow_id, []).append(change)
                self.ended_in[change.id] = workflow_id
                self.wake.set()

    def _forget_ended(self, job_id: str) -> None:
        """Drop a pending outcome whose job another replica retired (after its workflow took it in)."""
        workflow_id = self.ended_in.pop(job_id)
        taken = self.taken.setdefault(workflow_id, set())
        taken.add(job_id)
        if 2 * len(taken) >= len(self.ended.get(workflow_id, ())):  # in bulk: no rescan per retirement
            self._prune(workflow_id)

    def _prune(self, workflow_id: str) -> None:
        """Drop the pending outcomes of a workflow whose jobs were seen retired."""
        taken = self.taken.pop(workflow_id, None)
        if not taken:
            return
        kept = [
            (event, change)
            for event, change in zip(
                self.pending.get(workflow_id, ()), self.ended.get(workflow_id, ()), strict=True
            )
            if change.id not in taken
        ]
        if kept:
            self.pending[workflow_id] = [event for event, _ in kept]
            self.ended[workflow_id] = [change for _, change in kept]
        else:
            self.pending.pop(workflow_id, None)
            self.ended.pop(workflow_id, None)

    def observe_workflow(
        self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None
    ) -> None:
        now = self.clock.now_ms()
        self.workflows.forget(key, revision)
        if data is None:
            self.stopping.discard(key)
            self._placed(key, True)
            self._settled(key)
            self.unstarted.observe(key, None, now)
            return
        headers = headers or {}
        state = wf.WorkflowState(headers.get(STATE_HEADER, wf.WorkflowState.RUNNING.value))
        self.unstarted.observe(key, state, now)
        if state is wf.WorkflowState.RUNNING and STOPPING_HEADER in headers:
            self.stopping.add(key)
        else:
            self.stopping.discard(key)
        if self.placing:
            live = state in (wf.WorkflowState.RUNNING, wf.WorkflowState.CREATING)
            self._placed(key, not live or PLACED_HEADER in headers)
        if state is wf.WorkflowState.RUNNING:
            if self.owns(key):
                self.seen.setdefault(key, set()).add(revision)
            else:
                self.seen[key] = {revision}  # another replica's to check: that a check is due is enough
            # The feed is headers-only: JetStream then names the record's size in a header.
            self.sizes[key] = int(headers.get("Nats-Msg-Size", len(data)))
            self.checks.setdefault(key, now + CHECK_AFTER_MS)
        else:
            self._settled(key)
            if not self.owns(key):
                # Final: every outcome it had was taken in by its owner (a retry's new runs bring new ones).
                # Their jobs go to this replica's retirer, like any finished job: its owner retires them
                # — or, if it dies first, whichever replica its shard goes to, this one included.
                taken = self.taken.pop(key, set())
                for change in self.ended.pop(key, []):
                    self.ended_in.pop(change.id, None)
                    if change.id not in taken:
                        self._retire([change])
                self.pending.pop(key, None)

    def forget(self, shards_of: Callable[[str], bool]) -> None:
        """Drop the step jobs and outcomes of the workflows `shards_of` names: their shards went to another
        replica, whose feed replays them. (Outcomes whose children were released here stay: the record
        that takes them in is this replica's to write — `_due`.)"""
        for jobs in (self.waiting_in, self.ended_in):
            for job_id in [j for j, w in jobs.items() if shards_of(w)]:
                del jobs[job_id]
        for view in (self.pending, self.ended, self.taken, self.waiting, self.known):
            for workflow_id in [w for w in view if shards_of(w)]:
                del view[workflow_id]

    def _placed(self, workflow_id: str, placed: bool) -> None:
        before = bool(self.unplaced)
        if placed:
            self.unplaced.discard(workflow_id)
        else:
            self.unplaced.add(workflow_id)
        if bool(self.unplaced) != before:
            self.on_unplaced()

    def _keep(self, workflow_id: str, known: Known) -> None:
        """Keep the results an advance learnt, for the next ones (a fan-in's parents)."""
        kept = self.kept.pop(workflow_id, {})  # re-inserted: the most recently used last
        size = self.kept_bytes.pop(workflow_id, 0)
        for index, result in known.results.items():
            if index in kept or not result.done() or result.cancelled() or result.exception() is not None:
                continue
            value = result.result()
            grown = size + bounds.json_bytes(value)
            if grown > KEPT_BYTES:
                break
            kept[index], size = value, grown
        self.kept[workflow_id], self.kept_bytes[workflow_id] = kept, size
        while len(self.kept) > KEPT_WORKFLOWS:
            oldest = next(iter(self.kept))
            del self.kept[oldest], self.kept_bytes[oldest]

    def _settled(self, workflow_id: str) -> None:
        """Forget a workflow that is no longer running (final, or gone) — on every replica, its owner's
        or not: a check set for another replica's workflow is never due here, and would stay."""
        self.checks.pop(workflow_id, None)
        self.seen.pop(workflow_id, None)
        self.own.pop(workflow_id, None)
        self.sizes.pop(workflow_id, None)
        self.advanced_at.pop(workflow_id, None)
        self.kept.pop(workflow_id, None)
        self.kept_bytes.pop(workflow_id, None)

    def _job(self, job_id: str) -> tuple[JobRecord, int] | None:
        """A waiting step job as the feed last showed it."""
        workflow_id = self.waiting_in.get(job_id)
        change = self.waiting.get(workflow_id, {}).get(job_id) if workflow_id else None
        return (change.record(), change.revision) if change is not None else None

    async def run(self) -> None:
        assert self.feeds is not None
        await asyncio.gather(*(feed.caught_up.wait() for feed in self.feeds))
        tasks: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(PARALLEL)
        sleep_s = TICK_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), sleep_s)
            self.wake.clear()
            now = self.clock.now_ms()
            for workflow_id, kind in self.unstarted.due(self.waiting, now):
                if workflow_id in self.busy or not self.owns(workflow_id):
                    self.unstarted.again(workflow_id, kind, now)
                    continue
                await self._spawn(tasks, slots, workflow_id, self._abandon(workflow_id, kind))
            due, soonest = self._due()
            for workflow_id in due:
                if workflow_id not in self.busy:
                    await self._spawn(tasks, slots, workflow_id, self._turn(workflow_id))
            sleep_s = TICK_S if soonest is None else min(TICK_S, max(0, soonest - now) / 1000)

    async def _spawn(
        self,
        tasks: set[asyncio.Task[None]],
        slots: asyncio.Semaphore,
        workflow_id: str,
        work: Coroutine[None, None, None],
    ) -> None:
        self.busy.add(workflow_id)
        await slots.acquire()
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(lambda _: slots.release())

    def _due(self) -> tuple[list[str], int | None]:
        """The workflows to advance or check now, and when the soonest one held back to gather more
        outcomes is due."""
        now = self.clock.now_ms()
        due: list[str] = []
        soonest: int | None = None
        for w in self.pending:
            if w in self.busy or not self.owns(w):
                continue
            at = self.advanced_at.get(w, 0) + coalesce_ms(self.sizes.get(w, 0))
            if at <= now:
                due.append(w)
            else:
                soonest = at if soonest is None else min(soonest, at)
        for w, since in self.deferred_at.items():
            at = since + CATCH_UP_MS
            if w in self.busy or w in self.pending:
                continue  # (even if its shard moved: the children it released here are its to record)
            if at <= now:
                due.append(w)
            else:
                soonest = at if soonest is None else min(soonest, at)
        due += [
            w
            for w, at in self.checks.items()
            if at <= now
            and w not in self.busy
            and w not in self.pending
            and w not in self.deferred_at
            and self.owns(w)
        ]
        return due, soonest

    async def _turn(self, workflow_id: str) -> None:
        """Advance one workflow by its pending outcomes, or check it; then look again if more came."""
        try:
            self._prune(workflow_id)
            events = self.pending.pop(workflow_id, [])
            ended = self.ended.pop(workflow_id, [])
            for change in ended:
                self.ended_in.pop(change.id, None)
            now = self.clock.now_ms()
            # Even for a workflow the feed showed final: the two feeds are not ordered with each other,
            # and a retried workflow's first outcome may arrive before its record's return to running.
            # After a restart the feed replays the final step jobs still in the bucket: those not yet
            # taken in (the others were retired to history) and dead ones, which stay until retried or
            # purged — each costs a read of its workflow's record, which then changes nothing.
            if events or workflow_id in self.deferred_at:
                try:
                    if events and await self._released_directly(workflow_id, events, now):
                        self.deferred.setdefault(workflow_id, []).extend(events)
                        self.deferred_ended.setdefault(workflow_id, []).extend(ended)
                        self.deferred_at.setdefault(workflow_id, now)
                        return
                    # The record catches up with every outcome acted on before.
                    events[:0] = self.deferred.pop(workflow_id, [])
                    ended[:0] = self.deferred_ended.pop(workflow_id, [])
                    self.deferred_at.pop(workflow_id, None)
                    known = self.known.pop(workflow_id, None) or Known(self._job)
                    known.kept = self.kept.get(workflow_id, {})
                    written = await self.workflows.advance(workflow_id, events, now, known)
                    self._keep(workflow_id, known)
                    if written is not None:
                        self.own.setdefault(workflow_id, set()).add(written)
                        if workflow_id in self.sizes:  # still running, as far as the feed has shown
                            self.advanced_at[workflow_id] = self.clock.now_ms()
                    self.advanced += 1
                    self._retire(ended)
                except (NotFound, Poisoned) as exc:
                    self._set_aside(workflow_id, exc)
                    self._retire(ended)  # no workflow to take them in: they must not stay forever
                except Exception:
                    # Storage passing through a failover, a CAS lost too often: the outcomes come back.
                    self.pending.setdefault(workflow_id, [])[:0] = events
                    self.ended.setdefault(workflow_id, [])[:0] = ended
                    self.ended_in.update((change.id, workflow_id) for change in ended)
                    log_failure(log, "workflow not advanced yet; retrying", {"workflow": workflow_id})
                    await self.clock.sleep(0.5)
            elif self.checks.get(workflow_id, now + 1) <= now:
                del self.checks[workflow_id]
                await self._check(workflow_id, now)
        finally:
            self.busy.discard(workflow_id)
            if workflow_id in self.pending:
                self.wake.set()

    async def _released_directly(self, workflow_id: str, events: list[wf.StepEvent], now: int) -> bool:
        """Release the children of these successes without the record, if they allow it
        (`wf.direct_children`); False: the record decides them all (nothing was released)."""
        if workflow_id in self.stopping or any(
            e.outcome is not wf.StepState.SUCCEEDED or e.instance is not None for e in events
        ):
            return False
        try:
            record = await self.workflows.recall(workflow_id)
        except Exception:  # the advance reads it again and deals with what it finds
            return False
        plans = []
        for event in events:  # the first that needs the record settles it (a fan-in's outcomes: at once)
            children = wf.direct_children(record, event)
            if children is None:
                return False
            plans.append(children)
        known = self.known.setdefault(workflow_id, Known(self._job))
        for event, children in zip(events, plans, strict=True):
            await self.workflows.release_directly(record, event, children, now, known)
        return True

    def _retire(self, ended: list[Change]) -> None:
        if self.retire is not None:
            for change in ended:
                self.retire(change)

    async def _abandon(self, workflow_id: str, kind: Kind) -> None:
        """Clear a submit nobody finished, or a fire no timer will (`abandoned.py`)."""
        try:
            waiting = self.waiting.get(workflow_id, {})
            if kind is Kind.UNRECORDED:
                jobs = [c.record() for c in waiting.values()]
                done = not await self._fires_again(jobs)
                if done:
                    await self.workflows.clear_unrecorded(workflow_id, jobs)
            else:
                done = await self.workflows.abandon(workflow_id, set(waiting), kind is Kind.GONE)
            if done:
                self.abandoned += 1
            else:
                self.unstarted.again(workflow_id, kind, self.clock.now_ms())
        except Poisoned as exc:
            self._set_aside(workflow_id, exc)
        except Exception:
            log_failure(log, "abandoned workflow not cleared yet", {"workflow": workflow_id})
            self.unstarted.again(workflow_id, kind, self.clock.now_ms())
        finally:
            self.busy.discard(workflow_id)

    async def _fires_again(self, jobs: list[JobRecord]) -> bool:
        """Whether the schedule whose fire made these step jobs may yet execute that fire (a timer's
        replay then writes their workflow's record)."""
        for job in jobs:
            if job.schedule_id is None or job.fire_at_ms is None:
                continue
            try:
                data, revision = await self.schedules.get(job.schedule_id)
            except NotFound:
                return False  # deleted: nothing fires it again
            schedule = decoded(ScheduleRecord, data, self.schedules.bucket, job.schedule_id, revision)
            return may_still_fire(schedule, job.fire_at_ms)
        return False

    async def _check(self, workflow_id: str, now: int) -> None:
        seen, own = set(self.seen.get(workflow_id, ())), set(self.own.get(workflow_id, ()))
        waiting = self.waiting.get(workflow_id)
        if (waiting or workflow_id in self.stopping) and not seen <= own:
            # Not every change since the last check was this process's own, carried out: look.
            try:
                await self.workflows.repair(
                    workflow_id, set(waiting or ()), now, max(seen, default=0), Known(self._job)
                )
            except (NotFound, Poisoned) as exc:
                self._set_aside(workflow_id, exc)
                return
            except Exception:
                log_failure(log, "workflow check failed; checking again", {"workflow": workflow_id})
                self.checks[workflow_id] = now + CHECK_AFTER_MS
                return
            self.repaired += 1
        # Revisions that came while the check ran stay for the next one.
        self.seen.get(workflow_id, set()).difference_update(seen)
        self.own.get(workflow_id, set()).difference_update(own)

    def _set_aside(self, workflow_id: str, exc: Exception) -> None:
        if isinstance(exc, Poisoned) and self.quarantine is not None:
            self.quarantine.report(exc.bucket, exc.key, exc.revision, exc.reason)
        else:
            log.warning("step outcome for an unknown workflow dropped", extra={"workflow": workflow_id})
