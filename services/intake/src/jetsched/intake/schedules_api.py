"""The schedules API on `jetsched.api.schedules.<verb>`: create, get, list, update, pause, resume, delete,
preview. Every change is a CAS on the schedule record; its ledger (last fire, history) is the timer's and
survives updates, which apply from the moment they are made.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from jetsched.bus.cas import KeptChanging, cas_update
from jetsched.bus.records import decoded, encode
from jetsched.core import schedules, steps
from jetsched.core import workflows as wf
from jetsched.core.errors import ApiError, Conflict, ErrorCode, FieldError, NotFound
from jetsched.core.models import EmptyRequest
from jetsched.core.schedules import PreviewRequest, ScheduleIdRequest, ScheduleRecord, ScheduleSpec

from .validate import parse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jetsched.bus.records import Store
    from jetsched.core.clock import Clock

MAX_BYTES = 256 * 1024
_PREVIEWS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jetsched-preview")
CAS_TRIES = 10
Reply = dict[str, Any] | ApiError


class SchedulesApi:
    def __init__(self, store: Store, clock: Clock, record_budget: int) -> None:
        """`record_budget`: the largest job record a fire may create (see `Submitter`)."""
        self.store = store
        self.clock = clock
        self.record_budget = record_budget
        #: Every schedule, from the schedules bucket's feed (for `list`).
        self.known: dict[str, ScheduleRecord] = {}

    def observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        if data is None:
            self.known.pop(key, None)
        else:
            self.known[key] = ScheduleRecord.model_validate_json(data)

    def routes(self) -> dict[str, Callable[[bytes], Awaitable[Reply]]]:
        return {
            "schedules.create": self.create,
            "schedules.get": self.get,
            "schedules.list": self.list,
            "schedules.update": self.update,
            "schedules.pause": lambda data: self._toggle(data, paused=True),
            "schedules.resume": lambda data: self._toggle(data, paused=False),
            "schedules.delete": self.delete,
            "schedules.preview": self.preview,
        }

    def view(self, record: ScheduleRecord) -> dict[str, Any]:
        return {
            "schedule": record.model_dump(mode="json"),
            "next_fires": []
            if record.spec.paused
            else schedules.preview(record, self.clock.now_ms(), schedules.PREVIEW_FIRES),
        }

    def _checked(self, data: bytes) -> ScheduleSpec | ApiError:
        """A valid spec whose fires make jobs that fit (the template's payload is bounded like a submit's)."""
        spec = parse(ScheduleSpec, data, MAX_BYTES)
        if isinstance(spec, ApiError):
            return spec
        now = self.clock.now_ms()
        try:
            schedules.check_evaluable(spec, now)
        except FieldError as exc:
            return ApiError(code=ErrorCode.INVALID_FIELD, message=str(exc), field=exc.field)
        if spec.workflow is not None:
            return self._checked_workflow(spec, now)
        size = len(encode(schedules.fire_job(schedules.new_record(spec, now), now, now)))
        if size > self.record_budget:
            return ApiError(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"each fire's job record would be {size} bytes; the limit is {self.record_budget}",
                field="job.payload",
            )
        return spec

    def _checked_workflow(self, spec: ScheduleSpec, now: int) -> ScheduleSpec | ApiError:
        """Each fire's workflow record and step jobs fit, with room to grow (as for a workflow submit)."""
        # (Its size only: ids are as long whatever the record partitions they are placed in.)
        _, flow, jobs = schedules.fire_workflow(schedules.new_record(spec, now), now, now, 1)
        size = len(flow.model_dump_json(exclude_defaults=True)) + wf.growth_bytes(flow)
        if size > wf.MAX_WORKFLOW_RECORD_BYTES:
            return ApiError(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"each fire's workflow record could grow to {size} bytes;"
                f" the limit is {wf.MAX_WORKFLOW_RECORD_BYTES}",
                field="workflow.steps",
            )
        budget = self.record_budget - steps.STEP_GROWTH_BYTES
        for job in jobs:
            size = len(encode(job))
            if size > budget:
                return ApiError(
                    code=ErrorCode.PAYLOAD_TOO_LARGE,
                    message=f"a step's job record would be {size} bytes; at most {budget} leave room for"
                    " its parents' results, errors and result",
                    field="workflow.steps.payload",
                )
        return spec

    async def create(self, data: bytes) -> Reply:
        spec = self._checked(data)
        if isinstance(spec, ApiError):
            return spec
        record = schedules.new_record(spec, self.clock.now_ms())
        try:
            await self.store.put_if(spec.id, record.model_dump_json().encode(), 0)
        except Conflict:
            return ApiError(
                code=ErrorCode.ALREADY_EXISTS,
                message=f"a schedule '{spec.id}' exists (or existed)",
                field="id",
            )
        return self.view(record)

    async def get(self, data: bytes) -> Reply:
        request = parse(ScheduleIdRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        record, _ = await self._read(request.id)
        return self.view(record)

    async def list(self, data: bytes) -> Reply:
        request = parse(EmptyRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        return {"schedules": [self.view(record) for _, record in sorted(self.known.items())]}

    async def update(self, data: bytes) -> Reply:
        spec = self._checked(data)
        if isinstance(spec, ApiError):
            return spec
        return await self._revise(spec.id, lambda _: spec)

    async def _toggle(self, data: bytes, paused: bool) -> Reply:
        request = parse(ScheduleIdRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        return await self._revise(request.id, lambda spec: spec.model_copy(update={"paused": paused}))

    async def delete(self, data: bytes) -> Reply:
        request = parse(ScheduleIdRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        try:
            await cas_update(
                lambda: self._read(request.id),
                lambda record: record,
                lambda _, revision: self.store.purge(request.id, revision),
                tries=CAS_TRIES,
            )
        except KeptChanging:
            return ApiError(code=ErrorCode.UNAVAILABLE, message="the schedule kept changing; try again")
        return {"id": request.id, "deleted": True}

    async def preview(self, data: bytes) -> Reply:
        request = parse(PreviewRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        now = self.clock.now_ms()
        if request.spec is not None:
            record = schedules.new_record(request.spec, now)
        else:
            assert request.id is not None
            record, _ = await self._read(request.id)
        # A long preview of a busy cron costs up to a few hundred ms of CPU: off the event loop, one at a
        # time, so a burst of them queues up instead of stalling every other request.
        loop = asyncio.get_running_loop()
        fires = await loop.run_in_executor(_PREVIEWS, schedules.preview, record, now, request.count)
        return {"timezone": record.spec.timezone, "fires": fires}

    async def _read(self, schedule_id: str) -> tuple[ScheduleRecord, int]:
        try:
            data, revision = await self.store.get(schedule_id)
        except NotFound:
            raise NotFound(f"schedule {schedule_id}") from None
        return decoded(ScheduleRecord, data, self.store.bucket, schedule_id, revision), revision

    async def _revise(self, schedule_id: str, change: Callable[[ScheduleSpec], ScheduleSpec]) -> Reply:
        try:
            _, revised, _ = await cas_update(
                lambda: self._read(schedule_id),
                lambda record: schedules.revise(record, change(record.spec), self.clock.now_ms()),
                lambda revised, revision: self.store.put_if(
                    schedule_id, revised.model_dump_json().encode(), revision
                ),
                tries=CAS_TRIES,
            )
        except KeptChanging:
            return ApiError(code=ErrorCode.UNAVAILABLE, message="the schedule kept changing; try again")
        return self.view(revised)
