"""The doctor API on `jetsched.api.doctor.<verb>`: what services have quarantined, and a way to clear it.

`doctor.list` answers the `quarantine` bucket's entries whose item is still as it was quarantined; an
entry whose item has since been rewritten or removed is resolved, and is dropped as it is listed.
`doctor.purge` removes a quarantined item from its bucket (a job id purged this way is never reused,
like a purged dead letter) and then its entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson

from jetsched.bus.records import Store
from jetsched.core import subjects
from jetsched.core.errors import ApiError, Conflict, ErrorCode, NotFound
from jetsched.core.models import EmptyRequest, Model

from .validate import parse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jetsched.bus.direct import Connection

MAX_BYTES = 4096
#: Entries answered at most (each is at most about 1.5 KiB).
MAX_LISTED = 200
Reply = dict[str, Any] | ApiError

Bucket = Literal["jobs", "schedules", "queues", "timers", "outcomes"]
#: Items quarantined from a stream rather than a bucket: nothing is left to purge but the entry.
_STREAMS = {"outcomes"}


class PurgeRequest(Model):
    bucket: Bucket
    key: str


class DoctorApi:
    def __init__(self, nc: Connection, quarantine: Store) -> None:
        self.nc = nc
        self.quarantine = quarantine

    def routes(self) -> dict[str, Callable[[bytes], Awaitable[Reply]]]:
        return {"doctor.list": self.list, "doctor.purge": self.purge}

    async def _keys(self) -> list[str]:
        """The quarantine's keys, from its stream's subject list (one request; no consumer needed)."""
        stream = subjects.kv_stream(subjects.QUARANTINE_BUCKET)
        prefix = f"$KV.{subjects.QUARANTINE_BUCKET}."
        request = orjson.dumps({"subjects_filter": prefix + ">"})
        data, _ = await self.nc.request_raw(f"$JS.API.STREAM.INFO.{stream}", request, 5.0)
        found = orjson.loads(data).get("state", {}).get("subjects") or {}
        return sorted(subject[len(prefix) :] for subject in found)

    async def _entries(self) -> list[tuple[str, dict[str, Any]]]:
        entries = []
        for name in (await self._keys())[:MAX_LISTED]:
            try:
                data, _ = await self.quarantine.get(name)
            except NotFound:
                continue
            entries.append((name, orjson.loads(data)))
        return entries

    async def list(self, data: bytes) -> Reply:
        request = parse(EmptyRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        listed = []
        for name, entry in await self._entries():
            if entry["bucket"] not in _STREAMS and not await self._still(entry):
                await self._forget(name)
                continue
            listed.append(entry)
        return {"quarantined": listed}

    async def _still(self, entry: dict[str, Any]) -> bool:
        """Whether the item is still at the revision that was quarantined (0: unknown, assume so)."""
        try:
            _, revision = await Store(self.nc, entry["bucket"]).get(entry["key"])
        except NotFound:
            return False
        return entry["revision"] in (0, revision)

    async def purge(self, data: bytes) -> Reply:
        request = parse(PurgeRequest, data, MAX_BYTES)
        if isinstance(request, ApiError):
            return request
        name = f"{request.bucket}.{request.key}"
        try:
            await self.quarantine.get(name)
        except NotFound:
            return ApiError(code=ErrorCode.NOT_FOUND, message=f"nothing quarantined as {name}", field="key")
        if request.bucket not in _STREAMS:
            store = Store(self.nc, request.bucket)
            try:
                _, revision = await store.get(request.key)
                await store.purge(request.key, revision)
            except NotFound:
                pass  # already gone
            except Conflict:
                return ApiError(
                    code=ErrorCode.UNAVAILABLE, message="the item changed; list again", field="key"
                )
        await self._forget(name)
        return {"bucket": request.bucket, "key": request.key, "purged": True}

    async def _forget(self, name: str) -> None:
        try:
            _, revision = await self.quarantine.get(name)
            await self.quarantine.purge(name, revision)
        except (NotFound, Conflict):
            pass
