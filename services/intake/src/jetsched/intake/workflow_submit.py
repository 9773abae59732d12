"""Accepting a workflow: every step exists before any is visible as started, or none is.

The order, and what a crash between two steps leaves (the client saw no reply and resubmits with its key,
or the reaper finishes the job):

1. key entry (`job_keys`, `=workflow.<sha256 of key>` → workflow id), CAS create, as for a keyed submit;
   crash point `workflow.submit.after_key`;
2. every step's job, `waiting` (nothing dispatches it), under ids derived from (workflow, step): a
   resubmit creates the same ones again, finding those already there; `workflow.submit.after_steps`;
3. the workflow record, `running`, created by CAS (revision 0): from here the workflow exists;
   `workflow.submit.after_record`;
4. the steps without parents released (`waiting → ready`), as any released step is: if intake dies
   before, the reaper's check releases them (the record says they are released, their jobs wait);
5. the reply.

Steps first and one write of the record (`Workflows.begin`, shared with a schedule's fire), so a record
always has its steps. A resubmit with the key finds the entry: a record `running` or later → the same
workflow, `duplicate: true`; none yet → steps 2 to 5 again under the stored id. Step jobs whose record
never comes (no resubmit) are cleared by the reaper after a grace (`reaper/abandoned.py`): it first
purges the record's key at revision 0, which fences step 3 — a submitter that slept through the grace
answers `unavailable`, and a keyed resubmit then starts a new workflow under a new id. (An intake of an
earlier version wrote the record first, `creating`: a resubmit completes such a record, and the reaper
clears it after the grace as before.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsError
from opentelemetry.trace import SpanKind

from jetsched.bus import tracing
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.records import StoreError, decoded, encode
from jetsched.bus.workflows import CHUNK
from jetsched.core import steps
from jetsched.core import workflows as wf
from jetsched.core.errors import ApiError, Conflict, ErrorCode, NotFound, Poisoned
from jetsched.core.ids import ULID_RE, new_ulid

from .validate import header_bytes, parse

if TYPE_CHECKING:
    from jetsched.bus.records import Store
    from jetsched.bus.workflows import Workflows
    from jetsched.core.clock import Clock
    from jetsched.core.models import JobRecord

log = logging.getLogger(__name__)

#: A step job's record holds at most this many times the bytes of its request (numbers written short
#: are stored long: `9e15` is `9000000000000000.0`, 4.5 times as many bytes, the worst of any JSON token),
#: plus what no request spells out (ids, the workflow link, times, a trace context). A request that small
#: next to a step's budget cannot make a step job over it, so its jobs are not encoded to be measured.
RECORD_GROWTH = 5
RECORD_OVERHEAD_BYTES = 8192
#: Bytes of workflow submits one intake works on at once (as `Subscriber` weighs them): a submit's work
#: grows with its size — the largest, 2,000 steps, takes ~0.3 s of CPU in stretches between which other
#: requests are served — and each one taken at once would lengthen every other request's wait by a
#: stretch. One of the largest at a time, or many small ones; the rest wait in order, small ones in a
#: lane of their own.
BYTES_IN_FLIGHT = wf.MAX_WORKFLOW_REQUEST_BYTES
#: Seconds a workflow submit may wait for its turn before it is answered `unavailable` instead: the SDK
#: gives up after 5 s, and the largest submit takes ~0.3-0.6 s once begun (seconds in a storage failover),
#: so one begun later would likely be done for a client that saw a timeout — and an unkeyed one, resent,
#: made twice.
MAX_WAIT_S = 3.0


def key_id(key: str) -> str:
    """The idempotency entry of a workflow key; `=` is in no capability, so it meets no job's key."""
    return f"=workflow.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def reply(record: wf.WorkflowRecord, duplicate: bool) -> dict[str, Any]:
    return {
        "id": record.id,
        "state": record.state.value,
        "steps": {s.name: s.job_id for s in record.steps},
        "duplicate": duplicate,
    }


class WorkflowSubmitter:
    def __init__(
        self, workflows: Workflows, keys: Store, clock: Clock, max_payload: int, record_budget: int
    ) -> None:
        """`record_budget`: the largest job record to create (see `Submitter`)."""
        self.workflows = workflows
        self.keys = keys
        self.clock = clock
        self.max_bytes = min(wf.MAX_WORKFLOW_REQUEST_BYTES, max_payload)
        self.record_bytes = min(wf.MAX_WORKFLOW_RECORD_BYTES, max_payload - 8192)
        self.step_budget = record_budget - steps.STEP_GROWTH_BYTES

    async def submit(self, data: bytes, headers: dict[str, str] | None) -> dict[str, Any] | ApiError:
        request = parse(wf.WorkflowRequest, data, self.max_bytes, header_bytes(headers))
        if isinstance(request, ApiError):
            return request
        attributes: dict[str, str | int] = {"messaging.system": "nats", "jetsched.steps": len(request.steps)}
        with tracing.span("jetsched workflow submit", headers, SpanKind.CONSUMER, attributes) as carrier:
            try:
                return await self._store(request, len(data), carrier or None)
            except (NatsError, TimeoutError, StoreError) as exc:
                log.warning("workflow not stored", extra={"error": repr(exc)})
                return ApiError(
                    code=ErrorCode.UNAVAILABLE, message=f"the workflow could not be stored: {exc!r}"
                )
            except Poisoned as exc:
                return ApiError(code=ErrorCode.QUARANTINED, message=str(exc), field="key")

    def _sized(self, record: wf.WorkflowRecord, jobs: list[JobRecord], request_bytes: int) -> ApiError | None:
        size = len(record.model_dump_json(exclude_defaults=True)) + wf.growth_bytes(record)
        if size > self.record_bytes:
            return ApiError(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"the workflow's record could grow to {size} bytes; the limit is {self.record_bytes}"
                " (fewer steps, or shorter names)",
                field="steps",
            )
        if request_bytes * RECORD_GROWTH + RECORD_OVERHEAD_BYTES <= self.step_budget:
            return None
        for job in jobs:
            size = len(encode(job))
            if size > self.step_budget:
                assert job.workflow is not None
                return ApiError(
                    code=ErrorCode.PAYLOAD_TOO_LARGE,
                    message=f"step '{job.workflow.step}' would be a {size}-byte job record; at most"
                    f" {self.step_budget} leave room for its parents' results, errors and result",
                    field="steps.payload",
                )
        return None

    async def _store(
        self, request: wf.WorkflowRequest, request_bytes: int, trace: dict[str, str] | None
    ) -> dict[str, Any] | ApiError:
        now = self.clock.now_ms()
        workflow_id = new_ulid(now)
        revision = 0
        if request.key is not None:
            entry = key_id(request.key)
            proposed = workflow_id
            workflow_id, entry_revision = await self._keyed(entry, proposed)
            # A new key (the proposed id stored under it) has nothing stored yet.
            data, revision = (None, 0) if workflow_id == proposed else await self._stored(workflow_id)
            if data is None and revision:
                # The key's workflow has expired (or was cleared as abandoned; its marker fences the id):
                # the key starts a new one.
                workflow_id, revision = new_ulid(now), 0
                await self.keys.put_if(entry, workflow_id.encode(), entry_revision)
            elif data is not None:
                stored = decoded(wf.WorkflowRecord, data, self.workflows.store.bucket, workflow_id, revision)
                if stored.state is not wf.WorkflowState.CREATING:
                    return reply(stored, duplicate=True)
                # Half-made by an intake of an earlier version (record first): completed under its id.
                log.info("completing a half-made workflow", extra={"workflow": workflow_id})
        await asyncio.sleep(0)  # a turn between validating the request and building its records
        created, ordered = wf.new_record(
            request, workflow_id, now, trace, partitions=self.workflows.records.partitions
        )
        jobs = await self._waiting_jobs(created, ordered, now, trace)
        problem = self._sized(created, jobs, request_bytes)
        if problem is not None:
            return problem
        running = wf.start(created, now)
        # Fresh: a step runs only once its workflow has started, which no submit of this id has done.
        points = (
            lambda: crashpoint("workflow.submit.after_steps"),
            lambda: crashpoint("workflow.submit.after_record"),
        )
        if await self.workflows.begin(created, running, jobs, now, points, fresh=True, revision=revision):
            return reply(running, duplicate=False)
        # Its own resubmit raced it there (whichever started it, the workflow is the same), or the reaper
        # cleared its steps as abandoned while this submit was stalled, fencing the id.
        try:
            stored, _ = await self.workflows.get(workflow_id)
        except NotFound:
            return ApiError(
                code=ErrorCode.UNAVAILABLE,
                message=f"workflow {workflow_id} was cleared as abandoned before it started; submit again",
            )
        return reply(stored, duplicate=True)

    @staticmethod
    async def _waiting_jobs(
        created: wf.WorkflowRecord, ordered: list[wf.StepRequest], now: int, trace: dict[str, str] | None
    ) -> list[JobRecord]:
        """The step jobs, `CHUNK` at a time with a turn of the loop between: 2,000 of them take tens of
        milliseconds, which other requests would otherwise wait out."""
        jobs: list[JobRecord] = []
        for start in range(0, len(ordered), CHUNK):
            await asyncio.sleep(0)
            chunk = enumerate(ordered[start : start + CHUNK], start)
            jobs += [steps.waiting_job(step, created, n, now, trace) for n, step in chunk]
        return jobs

    async def _stored(self, workflow_id: str) -> tuple[bytes | None, int]:
        """A keyed workflow's record as stored: (None, 0) if never written, (None, revision) if removed."""
        try:
            return await self.workflows.store.latest(workflow_id)
        except NotFound:
            return None, 0

    async def _keyed(self, entry: str, workflow_id: str) -> tuple[str, int]:
        """The workflow id a key stands for (`workflow_id` if the key is new) and the entry's revision."""
        try:
            revision = await self.keys.put_if(entry, workflow_id.encode(), 0)
            crashpoint("workflow.submit.after_key")
            return workflow_id, revision
        except Conflict:
            data, revision = await self.keys.get(entry)
        known = data.decode(errors="replace")
        if not ULID_RE.match(known):
            raise Poisoned(self.keys.bucket, entry, revision, "the key names no workflow id")
        return known, revision
