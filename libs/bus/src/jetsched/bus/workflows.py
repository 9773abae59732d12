"""Workflow records (the `workflows` bucket) and the hands that carry out what they decide on step jobs.

The decisions are pure (`core/workflows.py`): a workflow record changes by CAS (`change`), and the
intents between the record before and after are then carried out on the step jobs, each by a CAS guarded
by the job's own state — release only a `waiting` job, cancel only one not final (and not running, unless
the workflow itself is cancelled), collect only a map job still waiting. So carrying out the same intents
twice, or after someone else did, changes nothing.

What if the process dies here? At `workflow.advance.after_cas` the record has decided and no job moved:
the reaper's check re-derives every intent from the record (`repair`) and carries it out. At
`workflow.release.after_cas` some children are queued and others not: the same. Before the record's CAS
nothing was written: the step outcome that prompted it is still in the job records' feed, replayed on
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jetsched.core import bounds, states, steps, subjects
from jetsched.core import workflows as wf
from jetsched.core.errors import Conflict, NotFound, TransitionError
from jetsched.core.models import TERMINAL, Control, JobRecord, JobState

from .cas import cas_update
from .crashpoints import crashpoint
from .records import Store, Unstorable, decoded, transition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from jetsched.core.types import JSON

    from .direct import Connection
    from .records import Records

log = logging.getLogger(__name__)

STATE_HEADER = "Jetsched-Workflow-State"
#: On a running workflow's record that stops starting steps (cancelled, or failing fast): the reaper's
#: check then re-derives its cancellations too, not only its releases.
STOPPING_HEADER = "Jetsched-Workflow-Stopping"
#: On a workflow's record whose step jobs are all in its own record partition (`wf.placed`), with the
#: records in several: the reapers then need to follow only that partition to see them. Written afresh
#: by every write, so a record last written by a version that does not know it shows unplaced.
PLACED_HEADER = "Jetsched-Workflow-Placed"
#: Final workflows that expire after the retention, like succeeded and cancelled jobs (failed ones stay,
#: to be retried, as dead jobs do).
EXPIRING = frozenset({wf.WorkflowState.SUCCEEDED, wf.WorkflowState.CANCELLED})
#: Step jobs read or written at once (a 10,000-instance map is created and collected in chunks).
CHUNK = 64
CAS_TRIES = 20
#: Workflow records a `Workflows` keeps as it last wrote them (`remember=True`), to start its next change
#: of each from there instead of a read.
REMEMBERED = 1024


def _no_job(_: str) -> tuple[JobRecord, int] | None:
    return None


@dataclass(slots=True)
class Known:
    """What a caller already holds, sparing reads when intents are carried out. A stale entry costs only
    a lost CAS and a re-read: every write is still guarded by the job's revision."""

    #: A step job's record and revision, if the caller has seen it (e.g. in the record feed).
    jobs: Callable[[str], tuple[JobRecord, int] | None] = _no_job
    #: Step index → result of its current run, for steps that succeeded (filled as parents are read, so a
    #: fan-out's children share one read of their parent).
    results: dict[int, asyncio.Future[JSON]] = field(default_factory=dict)
    #: Step jobs released here, as written (consulted before `jobs`: the feed may not show them yet).
    moved: dict[str, tuple[JobRecord, int]] = field(default_factory=dict)
    #: Step index → result, of steps that succeeded, kept by the caller from earlier advances (a fan-in's
    #: parents, which ended over many advances, are then not read back one by one).
    kept: Mapping[int, JSON] = field(default_factory=dict)

    def job(self, job_id: str) -> tuple[JobRecord, int] | None:
        return self.moved.get(job_id) or self.jobs(job_id)

    def learn(self, index: int, result: JSON) -> None:
        done: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        done.set_result(result)
        self.results[index] = done


class _Unchanged(Exception):
    """The verb leaves the record as it is: nothing to write."""

    def __init__(self, record: wf.WorkflowRecord) -> None:
        super().__init__(record.id)
        self.record = record


class Workflows:
    """Workflow records over a `Store`, and the executor of their intents on the step jobs (`Records`)."""

    def __init__(
        self, nc: Connection, records: Records, retention_s: int = 0, remember: bool = False
    ) -> None:
        """`remember`: keep each record as last written here and start the next change from it (for the
        one process that writes most changes: the reaper; it must `forget` what others write)."""
        self.nc = nc
        self.store = Store(nc, subjects.WORKFLOWS_BUCKET)
        self.records = records
        self.retention_s = retention_s
        self.remembered: dict[str, tuple[wf.WorkflowRecord, int]] | None = {} if remember else None

    async def get(self, workflow_id: str) -> tuple[wf.WorkflowRecord, int]:
        data, revision = await self.store.get(workflow_id)
        return decoded(wf.WorkflowRecord, data, self.store.bucket, workflow_id, revision), revision

    async def put(self, record: wf.WorkflowRecord, revision: int) -> int:
        """Write the record if it is still at `revision` (0: create); `Conflict` otherwise."""
        headers = {STATE_HEADER: record.state.value}
        if record.state is wf.WorkflowState.RUNNING and wf.stopping(record):
            headers[STOPPING_HEADER] = "1"
        if self.records.partitions > 1 and wf.placed(record, self.records.partitions):
            headers[PLACED_HEADER] = "1"
        if self.retention_s and record.state in EXPIRING:
            headers["Nats-TTL"] = str(self.retention_s)
        data = record.model_dump_json(exclude_defaults=True).encode()
        return await self.store.put_if(record.id, data, revision, headers)

    async def change(
        self,
        workflow_id: str,
        verb: Callable[[wf.WorkflowRecord], wf.WorkflowRecord],
        advancing: bool = False,
    ) -> tuple[wf.WorkflowRecord, wf.WorkflowRecord]:
        """Apply `verb` by CAS (re-reading on every lost CAS); (before, after). `TransitionError` from the
        verb passes through; an unchanged record is not written. `advancing`: the crash points of
        advancement apply."""
        before, after, _ = await self._change(workflow_id, verb, advancing)
        return before, after

    async def _change(
        self,
        workflow_id: str,
        verb: Callable[[wf.WorkflowRecord], wf.WorkflowRecord],
        advancing: bool,
    ) -> tuple[wf.WorkflowRecord, wf.WorkflowRecord, int | None]:
        """`change`, and the revision written (None: unchanged)."""
        remembered = self.remembered.pop(workflow_id, None) if self.remembered is not None else None

        def decide(record: wf.WorkflowRecord) -> wf.WorkflowRecord:
            changed = verb(record)
            if changed == record:
                raise _Unchanged(record)
            return changed

        async def write(changed: wf.WorkflowRecord, revision: int) -> int:
            if advancing:
                crashpoint("workflow.advance.before_cas")
            return await self.put(changed, revision)

        try:
            before, after, written = await cas_update(
                lambda: self.get(workflow_id),
                decide,
                write,
                tries=CAS_TRIES,
                current=remembered,
                what=f"workflow {workflow_id}",
            )
        except _Unchanged as same:
            return same.record, same.record, None
        if advancing:
            crashpoint("workflow.advance.after_cas")
        self._remember(after, written)
        return before, after, written

    def _remember(self, record: wf.WorkflowRecord, revision: int) -> None:
        if self.remembered is None or record.state in wf.WORKFLOW_TERMINAL:
            return
        if len(self.remembered) >= REMEMBERED:
            del self.remembered[next(iter(self.remembered))]  # the longest unchanged
        self.remembered[record.id] = (record, revision)

    async def recall(self, workflow_id: str) -> wf.WorkflowRecord:
        """The record as last written here, or read (and kept, with `remember`)."""
        kept = self.remembered.get(workflow_id) if self.remembered is not None else None
        if kept is not None:
            return kept[0]
        record, revision = await self.get(workflow_id)
        self._remember(record, revision)
        return record

    async def release_directly(
        self,
        record: wf.WorkflowRecord,
        event: wf.StepEvent,
        children: Sequence[int],
        now_ms: int,
        known: Known,
    ) -> None:
        """Release the children `wf.direct_children` found for a step's success, before its record takes
        the success in; what they became is kept in `known.moved` for when it does."""
        known.learn(event.index, event.result)
        await self._run(record, [wf.Release(n) for n in children], now_ms, known)
        crashpoint("workflow.direct.after_release")

    def forget(self, workflow_id: str, revision: int) -> None:
        """The record is at `revision` now (the feed showed it): drop a copy older than that."""
        if self.remembered is not None:
            kept = self.remembered.get(workflow_id)
            if kept is not None and kept[1] < revision:
                del self.remembered[workflow_id]

    async def begin(
        self,
        created: wf.WorkflowRecord,
        running: wf.WorkflowRecord,
        jobs: Sequence[JobRecord],
        now_ms: int,
        points: tuple[Callable[[], None], Callable[[], None]],
        fresh: bool = False,
        revision: int = 0,
    ) -> bool:
        """Start a workflow: every step job (`waiting`) first, then its record, `running` (a CAS on
        `revision`, 0: create), then its first steps released. False, with nothing released: a record is
        there already (a replay's, a racing resubmit's, or the fence of a clearing, `reaper/abandoned.py`).

        Steps before the record, so a record always has its steps: a crash between the two leaves step jobs
        that wait for a record — completed by a replay (a keyed resubmit, a timer's fire), or cleared by
        the reaper once none will come. `points`: the caller's crash points, after the steps and after the
        record.
        `fresh`: no step of this workflow can have run yet (no look in history for its ids)."""
        made: dict[str, tuple[JobRecord, int]] = {}
        for start in range(0, len(jobs), CHUNK):
            chunk = jobs[start : start + CHUNK]
            revisions = await asyncio.gather(*(self._create_step(job, fresh) for job in chunk))
            made |= {job.id: (job, r) for job, r in zip(chunk, revisions, strict=True) if r is not None}
        points[0]()
        try:
            await self.put(running, revision)
        except Conflict:
            return False
        points[1]()
        # The first steps are released from the records just written, without reading them back.
        await self.carry_out(created, running, now_ms, Known(made.get))
        return True

    async def _create_step(self, job: JobRecord, fresh: bool) -> int | None:
        """The new step job's revision; None if it was there already (made before: a replay)."""
        try:
            return await self.records.create(job, fresh=fresh)
        except Conflict:
            return None

    async def advance(
        self, workflow_id: str, events: Sequence[wf.StepEvent], now_ms: int, known: Known | None = None
    ) -> int | None:
        """Apply step outcomes to the workflow and carry out what that decides; the outcomes' results
        are handed to the children they release without reading them back. The revision written (None:
        the outcomes changed nothing)."""
        before, after, written = await self._change(
            workflow_id, lambda r: wf.apply(r, events, now_ms), advancing=True
        )
        known = known or Known()
        for event in events:
            if (
                event.outcome is wf.StepState.SUCCEEDED
                and event.instance is None
                and event.run == after.steps[event.index].run
            ):
                known.learn(event.index, event.result)
        await self.carry_out(before, after, now_ms, known)
        return written

    async def repair(
        self,
        workflow_id: str,
        waiting: set[str] | None,
        now_ms: int,
        seen: int = 0,
        known: Known | None = None,
    ) -> wf.WorkflowRecord:
        """Carry out again everything the record implies (after a crash between its CAS and its intents).

        `waiting`: the step jobs known to be waiting; releases, collections and cancellations of jobs not
        among them are skipped (they happened). None: check every job the intents name. `seen`: the
        latest revision the caller knows of — a record this process wrote at it (or later) is used
        without reading it back: everything it implies is re-derived from it alike.
        """
        kept = self.remembered.get(workflow_id) if self.remembered is not None else None
        record, _ = kept if kept is not None and seen and kept[1] >= seen else await self.get(workflow_id)
        if record.state is wf.WorkflowState.CREATING:
            return record
        todo = wf.intents(wf.blank(record), record)
        if waiting is not None:
            todo = [
                i
                for i in todo
                if record.steps[i.index].job_id in waiting
                or (isinstance(i, wf.Cancel) and wf.stopping(record))
            ]
        await self._run(record, todo, now_ms, known or Known())
        return record

    async def abandon(self, workflow_id: str, waiting: set[str], gone: bool) -> bool:
        """Clear a submit its submitter abandoned (`reaper/abandoned.py`): purge the `creating` record by
        CAS, then every step job of it still waiting. False: not safe to decide yet (look again later).

        `waiting`: the step jobs known to wait; `gone`: the workflows feed showed the record removed (a
        read answering "not found" alone is not trusted: one can be served while a leader moves).
        """
        try:
            record, revision = await self.get(workflow_id)
        except NotFound:
            if not gone:
                return False
            ids = set(waiting)
        else:
            if record.state is not wf.WorkflowState.CREATING:
                return True  # started after all (a keyed resubmit completed it)
            try:
                await self.store.purge(workflow_id, revision)
            except Conflict:
                return True  # it moved on meanwhile; whatever it is now, it is not abandoned
            log.warning("cleared an abandoned workflow submit", extra={"workflow": workflow_id})
            crashpoint("workflow.abandon.after_record")
            ids = {s.job_id for s in record.steps} | waiting
        await self._discard_all(ids, workflow_id)
        return True

    async def clear_unrecorded(self, workflow_id: str, waiting: Sequence[JobRecord]) -> None:
        """Clear step jobs that wait for a record never written — a timer died between a scheduled
        workflow's step jobs and its record — once no timer will write it (the caller knows). The key is
        fenced first (purged at revision 0: a late replay's create fails, and a record written meanwhile
        makes the fence fail, leaving it alone)."""
        try:
            await self.store.purge(workflow_id, 0)
        except Conflict:
            return  # it has a record (or had one): the checks, or the sweep of gone ones, see to it
        log.warning("cleared a scheduled workflow's unstarted steps", extra={"workflow": workflow_id})
        crashpoint("workflow.orphan.after_fence")
        await self._discard_all({j.id for j in waiting}, workflow_id)

    async def _discard_all(self, ids: set[str], workflow_id: str) -> None:
        ordered = sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            await asyncio.gather(*(self._discard(j, workflow_id) for j in ordered[start : start + CHUNK]))

    async def _discard(self, job_id: str, workflow_id: str) -> None:
        """Purge a step job that still waits (a step not created yet: fence its id)."""
        try:
            job, revision = await self.records.get(job_id)
        except NotFound:
            revision = 0
        else:
            if job.state is not JobState.WAITING or job.workflow is None or job.workflow.id != workflow_id:
                return
        with contextlib.suppress(Conflict):  # purged already, or just created: looked at again if waiting
            await self.records.purge(job_id, revision)

    async def carry_out(
        self,
        before: wf.WorkflowRecord,
        after: wf.WorkflowRecord,
        now_ms: int,
        known: Known | None = None,
    ) -> None:
        await self._run(after, wf.intents(before, after), now_ms, known or Known())

    async def _run(
        self, record: wf.WorkflowRecord, todo: Sequence[wf.Intent], now_ms: int, known: Known
    ) -> None:
        for start in range(0, len(todo), CHUNK):
            await asyncio.gather(
                *(self._one(record, intent, now_ms, known) for intent in todo[start : start + CHUNK])
            )

    async def _one(self, record: wf.WorkflowRecord, intent: wf.Intent, now_ms: int, known: Known) -> None:
        step = record.steps[intent.index]
        seen = known.job(step.job_id)
        try:
            job, revision = seen or await self.records.get(step.job_id)
        except NotFound:
            log.warning("a workflow step's job is missing", extra={"workflow": record.id, "step": step.name})
            return
        if isinstance(intent, wf.Release):
            await self._release(record, intent.index, job, revision, now_ms, known)
        elif isinstance(intent, wf.Cancel):
            await self._cancel(record, intent.index, job, revision, intent.running, now_ms)
        elif isinstance(intent, wf.Collect):
            await self._collect(record, intent.index, job, revision, now_ms)
        else:
            await self._fail(record, intent.index, job, revision, "MapFailed", intent.reason, now_ms)

    async def _fail(
        self,
        record: wf.WorkflowRecord,
        index: int,
        job: JobRecord,
        revision: int,
        type: str,
        reason: str,
        now_ms: int,
    ) -> None:
        """End a waiting step's job dead without running (a map step's: its unstarted instances, those
        that exist, are cancelled first); its workflow then settles per its failure policy."""
        if job.workflow is not None and job.workflow.map:
            await self._instances(record, index, self._stopper(record, index, False, now_ms))
        await transition(self.records, job, revision, lambda r: steps.fail(r, type, reason, now_ms))

    async def _parents(self, record: wf.WorkflowRecord, index: int, known: Known) -> dict[str, JSON]:
        """Step name → result of each parent of step `index`: as known, or read from the parents' jobs
        (once per parent, however many children ask at once)."""
        parents = record.steps[index].parents
        results: dict[str, JSON] = {}
        for start in range(0, len(parents), CHUNK):
            chunk = parents[start : start + CHUNK]
            found = await asyncio.gather(*(self._result(record, p, known) for p in chunk))
            for parent, result in zip(chunk, found, strict=True):
                results[record.steps[parent].name] = result
        return results

    def _result(self, record: wf.WorkflowRecord, index: int, known: Known) -> asyncio.Future[JSON]:
        result = known.results.get(index)
        if result is None:
            if index in known.kept:
                known.learn(index, known.kept[index])
                return known.results[index]
            job_id = record.steps[index].job_id
            result = known.results[index] = asyncio.ensure_future(self._read_result(job_id))
        return result

    async def _read_result(self, job_id: str) -> JSON:
        job, _ = await self.records.get(job_id)
        return job.result

    async def _release(
        self, record: wf.WorkflowRecord, index: int, job: JobRecord, revision: int, now_ms: int, known: Known
    ) -> None:
        if job.state is not JobState.WAITING:
            return
        parents = await self._parents(record, index, known)
        step = record.steps[index]
        if step.map_over is None:
            try:
                done = await transition(
                    self.records, job, revision, lambda r: steps.release(r, parents, now_ms)
                )
            except Unstorable as exc:  # refused for good: retried, it would be refused again forever
                reason = f"its job cannot be stored: {exc}"
                await self._fail(record, index, job, revision, "Unstorable", reason, now_ms)
                return
            if done is not None:
                known.moved[job.id] = done[1], done[2]
            crashpoint("workflow.release.after_cas")
            return
        if job.parents is not None:
            return  # expanded already: its instances exist
        source = record.steps[step.map_over].name
        problem = steps.map_problem(job, parents, source, now_ms)
        if problem is not None:  # no instance exists (the same parents failed the same check before)
            await transition(self.records, job, revision, lambda r: steps.fail(r, *problem, now_ms))
            return
        items: list[JSON] = parents[source]
        shared = steps.instance_parents(parents, source)
        try:
            for start in range(0, len(items), CHUNK):
                await asyncio.gather(
                    *(
                        self._create_step(
                            steps.instance(job, n, items[n], shared, now_ms, record.partitions), fresh=False
                        )
                        for n in range(start, min(start + CHUNK, len(items)))
                    )
                )
                crashpoint("workflow.expand.after_chunk")
            await transition(self.records, job, revision, lambda r: steps.expand(r, parents, now_ms))
        except Unstorable as exc:  # refused for good: the instances made so far are cancelled
            reason = f"its job cannot be stored: {exc}"
            await self._fail(record, index, job, revision, "Unstorable", reason, now_ms)

    async def _cancel(
        self, record: wf.WorkflowRecord, index: int, job: JobRecord, revision: int, running: bool, now_ms: int
    ) -> None:
        if job.workflow is not None and job.workflow.map and job.parents is not None:
            await self._instances(record, index, self._stopper(record, index, running, now_ms))

        def verb(r: JobRecord) -> JobRecord:
            if r.state is JobState.RUNNING and not running:
                raise TransitionError(f"{r.id} has started")
            return states.cancel(r, now_ms)

        if job.state in TERMINAL:
            return
        done = await transition(self.records, job, revision, verb)
        if done is not None and done[0].lease is not None:
            lease = done[0].lease
            control = Control(op="cancel", id=job.id, attempt=lease.attempt)
            await self.nc.publish(subjects.control(lease.session), control.model_dump_json().encode())

    def _stopper(
        self, record: wf.WorkflowRecord, index: int, running: bool, now_ms: int
    ) -> Callable[[JobRecord, int], Awaitable[None]]:
        async def stop(instance: JobRecord, revision: int) -> None:
            await self._cancel(record, index, instance, revision, running, now_ms)

        return stop

    async def _instances(
        self, record: wf.WorkflowRecord, index: int, each: Callable[[JobRecord, int], Awaitable[bool | None]]
    ) -> None:
        """Pass a released map step's instance jobs to `each` in order, as read (a chunk at a time); stop
        when `each` returns False. Missing instances are skipped."""
        step = record.steps[index]
        count = step.instances or 0
        for start in range(0, count, CHUNK):
            ids = [
                wf.step_job_id(record.id, index, step.run, n, partitions=record.partitions)
                for n in range(start, min(start + CHUNK, count))
            ]
            read = await asyncio.gather(*(self._get(job_id) for job_id in ids))
            for got in read:
                if got is not None and await each(*got) is False:
                    return

    async def _get(self, job_id: str) -> tuple[JobRecord, int] | None:
        try:
            return await self.records.get(job_id)
        except NotFound:
            return None

    async def _collect(
        self, record: wf.WorkflowRecord, index: int, job: JobRecord, revision: int, now_ms: int
    ) -> None:
        if job.state is not JobState.WAITING:
            return
        results: list[JSON] = []
        size = 0

        async def gather(instance: JobRecord, _: int) -> bool:
            nonlocal size
            if instance.state is not JobState.SUCCEEDED:
                return False
            results.append(instance.result)
            size += bounds.json_bytes(instance.result) + 1
            return size <= bounds.MAX_RESULT_BYTES  # past it, the collection fails as too large anyway

        await self._instances(record, index, gather)
        if size <= bounds.MAX_RESULT_BYTES and len(results) != record.steps[index].instances:
            log.warning("map step not complete yet; not collected", extra={"workflow": record.id})
            return
        await transition(self.records, job, revision, lambda r: steps.collect(r, results, now_ms))
