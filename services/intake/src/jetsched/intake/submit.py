"""Accepting a job: validate, dedup by idempotency key, create the record, reply — in that order.

The reply goes out only after the record is stored, so "accepted" means durable. With a key, a small
key → id entry is created first (CAS create): if it exists, the submit is a duplicate and names the first
job. What if intake dies between the two creates? The key entry then names an id with no record; the
client's retry finds the entry, finds no record, and creates the job under that id — one job, not two.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING

from nats.errors import Error as NatsError
from opentelemetry.trace import SpanKind, get_current_span

from jetsched.bus import instruments, tracing
from jetsched.bus.crashpoints import crashpoint
from jetsched.bus.records import StoreError, encode
from jetsched.core import states, subjects
from jetsched.core.errors import ApiError, Conflict, ErrorCode, NotFound, Poisoned
from jetsched.core.ids import ULID_RE, new_ulid
from jetsched.core.models import JobRequest, SubmitReply

from .validate import header_bytes, parse_batch, parse_submit

if TYPE_CHECKING:
    from jetsched.bus.records import Records, Store
    from jetsched.core.clock import Clock

log = logging.getLogger(__name__)


def key_id(capability: str, key: str) -> str:
    """The idempotency entry's KV key: keys are scoped per capability and hashed into the key alphabet."""
    return f"{capability}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"


class Submitter:
    def __init__(
        self, records: Records, keys: Store, clock: Clock, max_request_bytes: int, record_budget: int
    ) -> None:
        """`record_budget`: the largest record to create, leaving room for what it gains later."""
        self.records = records
        self.keys = keys
        self.clock = clock
        self.max_request_bytes = max_request_bytes
        self.record_budget = record_budget

    async def submit(
        self, capability: str, data: bytes, headers: dict[str, str] | None, ack_to: str = ""
    ) -> SubmitReply | ApiError | None:
        """`ack_to`: where JetStream is to ack an unkeyed job's record (docs/protocol.md, "Replied by the
        store"); None is returned once it is sent, and the ack is the only reply. Otherwise the reply."""
        began = time.perf_counter()
        request = parse_submit(capability, data, self.max_request_bytes, header_bytes(headers))
        if isinstance(request, ApiError):
            instruments.submit_latency.record(time.perf_counter() - began, {"outcome": "refused"})
            return request
        attributes: dict[str, str | int] | None = None
        if tracing.recording():
            attributes = {
                "jetsched.capability": capability,
                **tracing.messaging("process", subjects.submit(capability), request.key or "", len(data)),
            }
        with tracing.span("jetsched submit", headers, SpanKind.CONSUMER, attributes) as carrier:
            reply = await self._stored(capability, request, carrier or None, ack_to)
            if isinstance(reply, SubmitReply):
                get_current_span().set_attribute("jetsched.job_id", reply.id)
        # The capability only once it is known valid: metric attributes must stay a bounded set.
        outcome = {"outcome": "refused"} if isinstance(reply, ApiError) else {"capability": capability}
        instruments.submit_latency.record(time.perf_counter() - began, outcome)
        return reply

    async def submit_many(
        self, capability: str, data: bytes, headers: dict[str, str] | None
    ) -> list[SubmitReply | ApiError] | ApiError:
        """A batch: each valid item stored as its own submit (concurrently); the replies in item order."""
        items = parse_batch(capability, data, self.max_request_bytes)
        if isinstance(items, ApiError):
            return items
        attributes: dict[str, str | int] = {
            "messaging.system": "nats",
            "jetsched.capability": capability,
            "jetsched.jobs": len(items),
        }
        # A key repeated within the batch is stored once, by its first item; the repeats name that job.
        first: dict[str, int] = {}
        for n, item in enumerate(items):
            if isinstance(item, JobRequest) and item.key is not None:
                first.setdefault(item.key, n)
        todo = {
            n: item
            for n, item in enumerate(items)
            if isinstance(item, JobRequest) and (item.key is None or first[item.key] == n)
        }

        async def one(item: JobRequest, batch: dict[str, str]) -> SubmitReply | ApiError:
            # Each job of a batch is a trace of its own, linked to the batch's span.
            with tracing.linked_root("jetsched submit", batch, SpanKind.CONSUMER, attributes) as own:
                reply = await self._stored(capability, item, own or None)
                assert reply is not None, "only a submit acked by the store has no reply from here"
                if isinstance(reply, SubmitReply):
                    get_current_span().set_attribute("jetsched.job_id", reply.id)
                return reply

        with tracing.span("jetsched submit batch", headers, SpanKind.CONSUMER, attributes) as carrier:
            results = await asyncio.gather(*(one(item, carrier) for item in todo.values()))
        done = dict(zip(todo, results, strict=True))
        replies: list[SubmitReply | ApiError] = []
        for n, item in enumerate(items):
            if isinstance(item, ApiError):
                replies.append(item)
            elif item.key is not None and first[item.key] != n:
                original = done[first[item.key]]
                replies.append(
                    original.model_copy(update={"duplicate": True})
                    if isinstance(original, SubmitReply)
                    else original
                )
            else:
                replies.append(done[n])
        return replies

    async def _stored(
        self, capability: str, request: JobRequest, trace: dict[str, str] | None, ack_to: str = ""
    ) -> SubmitReply | ApiError | None:
        try:
            reply = await self._store(capability, request, trace, ack_to)
            if reply is None or (isinstance(reply, SubmitReply) and not reply.duplicate):
                instruments.submitted.add(1, {"capability": capability})
            return reply
        except (NatsError, TimeoutError, StoreError) as exc:
            # Not stored (or not known to be): say so, so the client can retry with its key.
            log.warning("submit not stored", extra={"error": repr(exc)})
            return ApiError(code=ErrorCode.UNAVAILABLE, message=f"the job could not be stored: {exc!r}")
        except Poisoned as exc:
            return ApiError(code=ErrorCode.QUARANTINED, message=str(exc), field="key")

    async def _store(
        self, capability: str, request: JobRequest, trace: dict[str, str] | None, ack_to: str = ""
    ) -> SubmitReply | ApiError | None:
        now = self.clock.now_ms()
        record = states.accept(request, new_ulid(now), capability, now, trace)
        data = encode(record)
        size = len(data)
        if size > self.record_budget:
            return ApiError(
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                message=f"the job's record would be {size} bytes; at most {self.record_budget} leave room"
                " for its lease, errors and result within the server's message limit",
                field="payload",
            )
        if ack_to and request.key is None:
            # The store's own ack is the reply: one hop less, and it cannot come before the record is.
            get_current_span().set_attribute("jetsched.job_id", record.id)
            await self.records.create_acked_to(record, data, f"{ack_to}.{record.id}.{record.state.value}")
            return None
        entry, key_revision = None, 0
        if request.key is not None:
            entry = key_id(capability, request.key)
            try:
                key_revision = await self.keys.put_if(entry, record.id.encode(), 0)
                crashpoint("intake.submit.after_key")
            except Conflict:
                try:
                    data, key_revision = await self.keys.get(entry)
                except NotFound:
                    # The key exists (the write said so) but the read did not see it yet: a read
                    # served while a stream leader moves. Keys are never removed, so this passes.
                    raise StoreError(f"{self.keys.bucket}/{entry} not readable yet") from None
                job_id = data.decode(errors="replace")
                if not ULID_RE.match(job_id):
                    raise Poisoned(self.keys.bucket, entry, key_revision, "the key names no job id") from None
                duplicate = await self._existing(job_id)
                if duplicate is not None:
                    return duplicate
                log.info("completing a half-done keyed submit", extra={"job": job_id})
                record = record.model_copy(update={"id": job_id})
                data = encode(record)
        try:
            await self.records.create(record, data)
            crashpoint("intake.submit.after_create")
        except Conflict:
            # A keyed submit racing its own retry (the other stored the job), or a key whose job has
            # expired (its id is fenced by the expiry marker): then the key starts a new job.
            duplicate = await self._existing(record.id)
            if duplicate is not None:
                return duplicate
            if entry is None:
                raise
            record = record.model_copy(update={"id": new_ulid(now)})
            await self.keys.put_if(entry, record.id.encode(), key_revision)
            await self.records.create(record)
        return SubmitReply(id=record.id, state=record.state)

    async def _existing(self, job_id: str) -> SubmitReply | None:
        try:
            record, _ = await self.records.get(job_id)
        except NotFound:
            return None
        return SubmitReply(id=job_id, state=record.state, duplicate=True)
