"""Accepting a workflow: every step exists before any is visible as started, or none is.

The order, and what a crash between two steps leaves (the client saw no reply and resubmits with its key,
or the reaper's check finishes the job):

1. key entry (`job_keys`, `=workflow.<sha256 of key>` → workflow id), CAS create, as for a keyed submit;
2. the workflow record, `creating` (`workflows` bucket): the API answers `not_found` for it;
   crash point `workflow.submit.after_record`;
3. every step's job, `waiting` (nothing dispatches it), under ids derived from (workflow, step): a
   resubmit creates the same ones again, finding those already there; `workflow.submit.after_steps`;
4. CAS `creating → running`: from here the workflow exists; `workflow.submit.after_cas`;
5. the steps without parents released (`waiting → ready`), as any released step is: if intake dies
   before, the reaper's check releases them (the record says they are released, their jobs wait);
6. the reply.

A resubmit with the key finds the entry and the record: `running` or later → the same workflow,
`duplicate: true`; `creating` → steps 3 to 6 are completed under the stored id.
A `creating` workflow nobody resubmits is cleared by the reaper after a grace (`reaper/abandoned.py`):
its record is purged by CAS, which fences this submit's step 4 — a submitter that slept through the
grace answers `unavailable`, and a keyed resubmit then starts a new workflow under a new id.
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
from jetsched.bus.records import StoreError, encode
from jetsched.bus.workflows import Known
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

CHUNK = 64


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
                return await self._store(request, carrier or None)
            except (NatsError, TimeoutError, StoreError) as exc:
                log.warning("workflow not stored", extra={"error": repr(exc)})
                return ApiError(
                    code=ErrorCode.UNAVAILABLE, message=f"the workflow could not be stored: {exc!r}"
                )
            except Poisoned as exc:
                return ApiError(code=ErrorCode.QUARANTINED, message=str(exc), field="key")

    def _sized(self, record: wf.WorkflowRecord, jobs: list[JobRecord]) -> ApiError | None:
        size = len(record.model_dump_json(exclude_defaults=True)) + wf.growth_bytes(record)
        if size > self.record_bytes:
            return ApiError(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"the workflow's record could grow to {size} bytes; the limit is {self.record_bytes}"
                " (fewer steps, or shorter names)",
                field="steps",
            )
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
        self, request: wf.WorkflowRequest, trace: dict[str, str] | None
    ) -> dict[str, Any] | ApiError:
        now = self.clock.now_ms()
        workflow_id = new_ulid(now)
        entry, entry_revision = None, 0
        if request.key is not None:
            entry = key_id(request.key)
            workflow_id, entry_revision = await self._keyed(entry, workflow_id)
        record, ordered = wf.new_record(request, workflow_id, now, trace)
        jobs = [steps.waiting_job(step, record, n, now, trace) for n, step in enumerate(ordered)]
        problem = self._sized(record, jobs)
        if problem is not None:
            return problem
        try:
            revision = await self.workflows.put(record, 0)
            crashpoint("workflow.submit.after_record")
        except Conflict:
            # Stored before under this key, or half-made by an interrupted submit of it.
            try:
                stored, revision = await self.workflows.get(workflow_id)
            except NotFound:
                if entry is None:
                    raise
                # The key's workflow has expired (its marker fences the id): the key starts a new one.
                record, ordered = wf.new_record(request, new_ulid(now), now, trace)
                jobs = [steps.waiting_job(step, record, n, now, trace) for n, step in enumerate(ordered)]
                await self.keys.put_if(entry, record.id.encode(), entry_revision)
                stored, revision = record, await self.workflows.put(record, 0)
            if stored.state is not wf.WorkflowState.CREATING:
                return reply(stored, duplicate=True)
            log.info("completing a half-made workflow", extra={"workflow": workflow_id})
            record = stored
        created: dict[str, tuple[JobRecord, int]] = {}
        for start in range(0, len(jobs), CHUNK):
            chunk = jobs[start : start + CHUNK]
            revisions = await asyncio.gather(*(self._create(job) for job in chunk))
            created |= {job.id: (job, r) for job, r in zip(chunk, revisions, strict=True) if r is not None}
        crashpoint("workflow.submit.after_steps")
        running = wf.start(record, now)
        try:
            await self.workflows.put(running, revision)
        except Conflict:
            # Its own resubmit raced it there: whichever started it, the workflow is the same.
            try:
                stored, _ = await self.workflows.get(workflow_id)
            except NotFound:
                return ApiError(
                    code=ErrorCode.UNAVAILABLE,
                    message=f"workflow {workflow_id} was cleared as abandoned before it started; submit again",
                )
            return reply(stored, duplicate=True)
        crashpoint("workflow.submit.after_cas")
        # The roots are released from the records just written, without reading them back.
        await self.workflows.carry_out(record, running, now, Known(created.get))
        return reply(running, duplicate=False)

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

    async def _create(self, job: JobRecord) -> int | None:
        """The new record's revision; None if the first, interrupted, submit of this workflow made it."""
        try:
            # Fresh: a step runs only once its workflow has started, which this submit has not yet done.
            return await self.workflows.records.create(job, fresh=True)
        except Conflict:
            return None
