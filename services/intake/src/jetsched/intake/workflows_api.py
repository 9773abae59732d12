"""The workflows API on `jetsched.api.workflows.<verb>`: get, list, cancel, retry.

A workflow still `creating` does not exist for the API (`not_found`): nothing of it is visible until its
submit has stored every step. `get` reads the step jobs for their state, attempt, timing and result;
results stop being included once the reply would pass `MAX_REPLY_BYTES` (`result_omitted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from jetsched.bus.workflows import STATE_HEADER
from jetsched.core import steps
from jetsched.core import workflows as wf
from jetsched.core.errors import ApiError, Conflict, ErrorCode, NotFound, TransitionError
from jetsched.core.models import JobId, JobRecord, Model

from .validate import parse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jetsched.bus.workflows import Workflows
    from jetsched.core.clock import Clock

MAX_API_BYTES = 64 * 1024
MAX_REPLY_BYTES = 512 * 1024
CHUNK = 64
Reply = dict[str, Any] | ApiError


class WorkflowIdRequest(Model):
    id: JobId


class WorkflowListRequest(Model):
    state: wf.WorkflowState | None = None
    limit: int = Field(100, ge=1, le=1000)
    after: JobId | None = None


class WorkflowsApi:
    def __init__(self, workflows: Workflows, clock: Clock, max_payload: int) -> None:
        self.workflows = workflows
        self.clock = clock
        self.reply_bytes = min(MAX_REPLY_BYTES, max_payload // 2)
        #: Every workflow's state, from the workflows bucket's feed (for `list`).
        self.known: dict[str, wf.WorkflowState] = {}

    def observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        if data is None:
            self.known.pop(key, None)
        else:
            self.known[key] = wf.WorkflowState((headers or {}).get(STATE_HEADER, "running"))

    def routes(self) -> dict[str, Callable[[bytes], Awaitable[Reply]]]:
        return {
            "workflows.get": self.get,
            "workflows.list": self.list,
            "workflows.cancel": self.cancel,
            "workflows.retry": self.retry,
        }

    async def _visible(self, workflow_id: str) -> wf.WorkflowRecord:
        record, _ = await self.workflows.get(workflow_id)
        if record.state is wf.WorkflowState.CREATING:
            raise NotFound(f"workflow {workflow_id}")
        return record

    async def get(self, data: bytes) -> Reply:
        request = parse(WorkflowIdRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        record = await self._visible(request.id)
        return {"workflow": await self.view(record)}

    async def view(self, record: wf.WorkflowRecord) -> dict[str, Any]:
        """The record with each step's job: state, attempt, timing, and its result while they fit."""
        views: dict[str, Any] = {}
        size = len(record.model_dump_json())
        for start in range(0, len(record.steps), CHUNK):
            chunk = record.steps[start : start + CHUNK]
            jobs = await asyncio.gather(*(self._job(s.job_id) for s in chunk))
            for step, job in zip(chunk, jobs, strict=True):
                view = _step_view(record, step, job)
                if job is not None and job.result is not None:
                    result = orjson.dumps(job.result)
                    if size + len(result) <= self.reply_bytes:
                        view["result"] = job.result
                        size += len(result)
                    else:
                        view["result_omitted"] = True
                views[step.name] = view
                size += 200
        return {
            "id": record.id,
            "state": record.state.value,
            "on_failure": record.on_failure.value,
            "cancel_requested": record.cancel_requested,
            "created_at_ms": record.created_at_ms,
            "updated_at_ms": record.updated_at_ms,
            "finished_at_ms": record.finished_at_ms,
            "steps": views,
        }

    async def _job(self, job_id: str) -> JobRecord | None:
        try:
            job, _ = await self.workflows.records.get(job_id)
        except NotFound:
            return None
        return job

    async def list(self, data: bytes) -> Reply:
        request = parse(WorkflowListRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        matching = (
            (workflow_id, state)
            for workflow_id, state in self.known.items()
            if state is not wf.WorkflowState.CREATING
            and (request.state is None or state is request.state)
            and (request.after is None or workflow_id > request.after)
        )
        found = heapq.nsmallest(request.limit + 1, matching)
        page = found[: request.limit]
        cursor = page[-1][0] if len(found) > request.limit else None
        return {"workflows": [{"id": i, "state": s.value} for i, s in page], "next": cursor}

    async def cancel(self, data: bytes) -> Reply:
        request = parse(WorkflowIdRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        await self._visible(request.id)
        now = self.clock.now_ms()
        try:
            _, after = await self.workflows.change(request.id, lambda r: wf.cancel(r, now))
        except TransitionError as exc:
            return ApiError(code=ErrorCode.INVALID_STATE, message=str(exc), field="id")
        # Every cancellation the record implies, not only this call's: a cancel resent after one that
        # died half-way finishes its work.
        await self.workflows.repair(request.id, None, now)
        return {"id": after.id, "state": after.state.value, "cancel_requested": True}

    async def retry(self, data: bytes) -> Reply:
        request = parse(WorkflowIdRequest, data, MAX_API_BYTES)
        if isinstance(request, ApiError):
            return request
        before = await self._visible(request.id)
        now = self.clock.now_ms()
        try:
            planned = wf.retry(before, now)
        except TransitionError as exc:
            return ApiError(code=ErrorCode.INVALID_STATE, message=str(exc), field="id")
        # The new runs' jobs first (waiting, under ids derived from the run): the record may name them
        # only once they exist. A retry that dies here leaves them waiting; retried again, it finds them.
        for n in wf.retried_steps(before, planned):
            previous = await self._job(before.steps[n].job_id)
            if previous is None:
                return ApiError(
                    code=ErrorCode.INVALID_STATE,
                    message=f"step '{before.steps[n].name}' cannot be re-run: its job has expired",
                    field="id",
                )
            with contextlib.suppress(Conflict):  # made by an interrupted retry
                await self.workflows.records.create(steps.rerun(previous, planned, n, now))
        try:
            old, after = await self.workflows.change(
                request.id, lambda r: planned if r == before else wf.retry(r, now)
            )
        except TransitionError as exc:
            return ApiError(code=ErrorCode.INVALID_STATE, message=str(exc), field="id")
        await self.workflows.carry_out(old, after, now)
        return {
            "id": after.id,
            "state": after.state.value,
            "retried": [after.steps[n].name for n in wf.retried_steps(old, after)],
        }


def _step_view(record: wf.WorkflowRecord, step: wf.Step, job: JobRecord | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "job_id": step.job_id,
        "step_state": step.state.value,
        "depends_on": [record.steps[p].name for p in step.parents],
    }
    if step.map_over is not None:
        view["map_over"] = record.steps[step.map_over].name
    if step.instances is not None:
        view["instances"] = step.instances
        view["instances_done"] = step.finished_instances
    if step.error is not None:
        view["error"] = step.error
    if job is None:
        view["state"] = "missing"
        return view
    view.update(
        state=job.state.value,
        attempt=job.attempt,
        started_at_ms=job.started_at_ms,
        finished_at_ms=job.finished_at_ms,
    )
    if job.errors:
        view["last_error"] = job.errors[-1].model_dump(mode="json")
    return view
