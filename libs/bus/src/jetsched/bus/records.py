"""The job records: one KV key per job, every write a compare-and-set on the key's revision.

Why this is safe:
- `create` succeeds only if the key never existed (expected last subject sequence 0), so an id can be
  accepted once. A purged key keeps its purge marker, so a deterministic id cannot be re-created either.
- `update(record, revision)` succeeds only if nobody wrote the key since `revision` was read. The writer
  that wins owns the transition's side effects; the loser gets `Conflict` and must re-read and re-decide.
- A CAS failure may be spurious (nats-server #7281) and a timeout ambiguous (the write may have landed):
  callers never infer anything from the error — they re-read and act on what is stored.

What if the process dies here? Between a successful CAS and its side effect (a message to a worker, an
event), the record already says what happened; the owning service's reconciler re-derives the side effect
from the record (see docs/architecture.md, "crash windows").
"""

from __future__ import annotations

import base64
import contextlib
import re
from typing import TYPE_CHECKING, TypeVar

import orjson
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError

from jetsched.core import subjects
from jetsched.core.changes import headers_of, timer_due
from jetsched.core.errors import Conflict, NotFound, Poisoned, TransitionError
from jetsched.core.models import JobRecord, JobState
from jetsched.core.shards import shard_of

from .cas import cas_update
from .crashpoints import crashpoint
from .direct import parse_headers

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

    from .direct import Connection
    from .history import History

#: The KV key alphabet, in dot-separated tokens: no wildcards, so a key never matches another's subject.
_KEY = re.compile(r"^[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*$")
_EXPECT = "Nats-Expected-Last-Subject-Sequence"
#: "wrong last sequence", as JetStream reports a lost CAS (two codes, depending on the check that failed).
_WRONG_LAST_SEQUENCE = (10071, 10164)
#: "message size exceeds maximum allowed".
_TOO_LARGE = 10054
_DELETED_OPS = ("DEL", "PURGE")


class StoreError(Exception):
    """JetStream refused a write for a reason other than a lost CAS (often passing: no leader yet)."""


class Unstorable(StoreError):
    """JetStream can never take this write: over a size limit, or a key outside the KV alphabet.

    Only this is grounds for setting an item aside; any other `StoreError` is retried."""


class Store:
    """Raw CAS key/value operations on one bucket (bytes in, bytes out)."""

    def __init__(self, nc: Connection, bucket: str, timeout: float = 5.0) -> None:
        self._nc = nc
        self.bucket = bucket
        self._stream = subjects.kv_stream(bucket)
        self._prefix = f"$KV.{bucket}."
        self._get_subject = f"$JS.API.STREAM.MSG.GET.{self._stream}"
        self.timeout = timeout

    async def put_if(
        self, key: str, value: bytes, revision: int, headers: dict[str, str] | None = None
    ) -> int:
        """Write `value` if the key is at `revision` (0: never existed); returns the new revision."""
        return await self._write(key, value, {**(headers or {}), _EXPECT: str(revision)})

    async def send_if(
        self, key: str, value: bytes, revision: int, reply: str, headers: dict[str, str] | None = None
    ) -> None:
        """`put_if` whose JetStream ack (the new revision, or why not) goes to `reply` instead of here.

        Returns once the write is sent; only whoever listens on `reply` learns whether it was stored.
        """
        if not _KEY.match(key):
            raise Unstorable(f"{self.bucket}/{key[:64]!r} is not a valid key")
        try:
            await self._nc.publish(
                self._prefix + key, value, reply, {**(headers or {}), _EXPECT: str(revision)}
            )
        except MaxPayloadError as exc:
            raise Unstorable(f"{self.bucket}/{key}: {exc}") from None

    async def put(self, key: str, value: bytes) -> int:
        """Write `value` whatever the key holds; returns the new revision."""
        return await self._write(key, value, None)

    async def get(self, key: str) -> tuple[bytes, int]:
        """The key's latest value and revision; `NotFound` if absent or deleted.

        Asked of the stream's leader (not a direct get, which any replica may answer from behind), in
        one lean request: a read here decides CAS writes, and must not miss a record just written.
        """
        data, revision = await self.latest(key)
        if data is None:
            raise NotFound(f"{self.bucket}/{key}")
        return data, revision

    async def latest(self, key: str) -> tuple[bytes | None, int]:
        """`get`, telling a key that was removed — (None, its marker's revision): deleted, purged, or
        expired — from one never written (`NotFound`)."""
        if not _KEY.match(key):
            raise NotFound(f"{self.bucket}/{key[:64]!r} (not a valid key)")
        request = orjson.dumps({"last_by_subj": self._prefix + key})
        data, _ = await self._nc.request_raw(self._get_subject, request, self.timeout)
        reply = orjson.loads(data)
        error = reply.get("error")
        if error is not None:
            if error.get("code") == 404:
                raise NotFound(f"{self.bucket}/{key}")
            raise StoreError(f"{self.bucket}/{key}: {error.get('description')}")
        msg = reply["message"]
        headers = parse_headers(base64.b64decode(msg["hdrs"])) if msg.get("hdrs") else None
        if headers and (headers.get("KV-Operation") in _DELETED_OPS or "Nats-Marker-Reason" in headers):
            return None, int(msg["seq"])  # deleted, purged, or expired (a TTL's marker)
        return base64.b64decode(msg.get("data", "")), int(msg["seq"])

    async def purge(self, key: str, revision: int, marker_ttl_s: int | None = None) -> None:
        """Remove the key's value, CAS-guarded. The purge marker keeps the key from being created again —
        forever, or for `marker_ttl_s` (the bucket must allow message TTLs)."""
        headers = {"KV-Operation": "PURGE", "Nats-Rollup": "sub", _EXPECT: str(revision)}
        if marker_ttl_s is not None:
            headers["Nats-TTL"] = str(marker_ttl_s)
        await self._write(key, b"", headers)

    async def _write(self, key: str, value: bytes, headers: dict[str, str] | None) -> int:
        """Publish to the key's subject and read JetStream's ack: the new revision, or why not."""
        if not _KEY.match(key):
            raise Unstorable(f"{self.bucket}/{key[:64]!r} is not a valid key")
        try:
            data, _ = await self._nc.request_raw(self._prefix + key, value, self.timeout, headers)
        except MaxPayloadError as exc:
            raise Unstorable(f"{self.bucket}/{key}: {exc}") from None
        ack = orjson.loads(data)
        error = ack.get("error")
        if error is None:
            return int(ack["seq"])
        if error.get("err_code") in _WRONG_LAST_SEQUENCE:
            raise Conflict(
                f"{self.bucket}/{key}: revision {(headers or {}).get(_EXPECT)} is no longer current"
            )
        kind = Unstorable if error.get("err_code") == _TOO_LARGE else StoreError
        raise kind(f"{self.bucket}/{key}: {error.get('description')}")


#: Final states whose records expire after the retention (dead letters stay until purged or retried); the
#: reaper retires them to history as soon as they are written.
EXPIRING = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})
#: How long the marker a retired record leaves in the bucket fences its id against a create (see
#: `history.py`); every feed replays the markers still there, so it is kept short.
FENCE_S = 120


class Records:
    """Job records as models over a `Store`; succeeded and cancelled records expire after `retention_s`.

    A record that waits for a time (scheduled, or ready with a start deadline) gets its timer entry
    (`timers` bucket: job id → "<due ms> <revision being replaced>") written *before* the record itself,
    so the timer needs no view of every record change, only of these entries. Die between the two
    writes and the entry is merely early or unneeded: the timer reads the record when the entry comes
    due and acts only on what it says — and, while the record is still at the revision the entry names,
    waits for the write it announced (it may land late).

    Every stored update (not the creation: nobody waits on an id before its submit is answered) is then
    announced on `subjects.changed(id)` (core NATS, `{"state", "attempt"}`) for clients waiting on the
    job. Only a hint: die between the write and the announcement and it is never sent, so a waiter
    subscribes first, then reads the record, and re-reads now and then.

    Finished records move on to `history` (`retire`; see `history.py`); `get` finds them there.
    """

    def __init__(
        self,
        stores: Sequence[Store],
        timers: Store,
        retention_s: int = 0,
        announce: Connection | None = None,
        history: History | None = None,
    ) -> None:
        #: One bucket per partition of the records (`subjects.jobs_bucket`); a job's is `store_of` its id.
        self.stores = tuple(stores)
        self.timers = timers
        self.retention_s = retention_s
        self._announce = announce
        self.history = history

    @classmethod
    def open(cls, nc: Connection, retention_s: int = 0, partitions: int = 1) -> Records:
        from .history import History  # here: history.py imports this module's errors

        jobs = [Store(nc, subjects.jobs_bucket(p)) for p in range(partitions)]
        return cls(jobs, Store(nc, subjects.TIMERS_BUCKET), retention_s, nc, History(nc))

    @property
    def partitions(self) -> int:
        return len(self.stores)

    def store_of(self, job_id: str) -> Store:
        """The bucket of the partition a job's record lives in."""
        return self.stores[shard_of(job_id, len(self.stores))]

    def _headers(self, record: JobRecord) -> dict[str, str]:
        headers = headers_of(record)
        if self.retention_s and record.state in EXPIRING:
            # Per-message TTL: with one message per key there is no older revision to come back.
            headers["Nats-TTL"] = str(self.retention_s)
        return headers

    async def get(self, job_id: str) -> tuple[JobRecord, int]:
        """The record and its revision; `NotFound`, or `Poisoned` if what is stored cannot be decoded.

        A record retired to history comes with revision 0: it is no longer in the bucket, so it matches no
        revision a reader holds; it is final (succeeded or cancelled), so no transition applies to it.
        """
        store = self.store_of(job_id)
        try:
            data, revision = await store.get(job_id)
        except NotFound:
            if self.history is None:
                raise
            data, sequence = await self.history.get(job_id)  # after the bucket: see history.py
            return decoded(JobRecord, data, subjects.HISTORY_STREAM, job_id, sequence), 0
        return decoded(JobRecord, data, store.bucket, job_id, revision), revision

    async def create(self, record: JobRecord, data: bytes | None = None, fresh: bool = False) -> int:
        """Store a new record (`data`: its encoding, if already made); `Conflict` if the id was ever used
        (or its job is in history). `fresh`: the caller knows no job of this id can have run (no look in
        history needed for a derived id)."""
        derived = record.schedule_id is not None or record.workflow is not None
        if derived and not fresh and self.history is not None and await self.history.contains(record.id):
            # A cron fire or workflow step created again (a replay) after its job ended and left.
            raise Conflict(f"{record.id} has ended and is in history")
        return await self.update(record, 0, data)

    async def create_acked_to(self, record: JobRecord, data: bytes, reply: str) -> None:
        """`create`, with JetStream's ack sent to `reply` (see `Store.send_if`); returns once sent.
        Only for a new id (never a derived one, whose history `create` checks)."""
        await self._timer_entry(record, 0)
        await self.store_of(record.id).send_if(record.id, data, 0, reply, self._headers(record))

    async def retire(self, record: JobRecord, revision: int, fence_s: int = FENCE_S) -> None:
        """Move a finished record to history: write it there, then purge it here by CAS on `revision`.

        `Conflict` if the record changed since; both steps are idempotent (see history.py)."""
        assert self.history is not None
        assert record.state in EXPIRING
        subject = subjects.history(record.id, record.state.value, record.capability)
        await self.history.put(subject, encode(record), f"{record.id}:{revision}")
        crashpoint("records.retire.after_history")
        await self.store_of(record.id).purge(record.id, revision, marker_ttl_s=fence_s)

    async def update(self, record: JobRecord, revision: int, data: bytes | None = None) -> int:
        """Replace the record if it is still at `revision` (0: create); `Conflict` otherwise."""
        await self._timer_entry(record, revision)
        stored = await self.store_of(record.id).put_if(
            record.id, encode(record) if data is None else data, revision, self._headers(record)
        )
        if self._announce is not None and revision:
            # Best-effort by design: a lost announcement delays a waiter until its next read, no more.
            with contextlib.suppress(NatsError):
                change = orjson.dumps({"state": record.state, "attempt": record.attempt})
                await self._announce.publish(subjects.changed(record.id), change)
        return stored

    async def purge(self, job_id: str, revision: int) -> None:
        await self.store_of(job_id).purge(job_id, revision)

    async def _timer_entry(self, record: JobRecord, revision: int) -> None:
        due = timer_due(record)
        if due is not None:
            await self.timers.put(record.id, f"{due} {revision}".encode())
            crashpoint("records.after_timer_entry")


def encode(record: JobRecord) -> bytes:
    return record.model_dump_json(exclude_defaults=True).encode()


def decode(data: bytes) -> JobRecord:
    return JobRecord.model_validate_json(data)


def decoded(model: type[M], data: bytes, bucket: str, key: str, revision: int) -> M:
    """A stored value read as `model`; `Poisoned`, naming where it is stored, if it cannot be."""
    try:
        return model.model_validate_json(data)
    except ValueError as exc:
        raise Poisoned(bucket, key, revision, f"{type(exc).__name__}: {exc}") from None


async def transition(
    records: Records,
    record: JobRecord,
    revision: int,
    verb: Callable[[JobRecord], JobRecord],
    tries: int = 10,
) -> tuple[JobRecord, JobRecord, int] | None:
    """Apply `verb` by CAS, re-reading and re-deciding on every lost CAS.

    Returns (record before, record after, new revision), or None once `verb` no longer applies to the
    stored record (it raised `TransitionError`) — someone else moved the job on.
    """
    try:
        return await cas_update(
            lambda: records.get(record.id),
            verb,
            records.update,
            tries=tries,
            current=(record, revision),
            what=record.id,
        )
    except TransitionError:
        return None
