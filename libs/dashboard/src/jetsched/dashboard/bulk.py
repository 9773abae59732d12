"""Many jobs at once over the control API: every page of a list, and dead letters retried or purged by
the type of their last error. Shared by the dashboard's bulk buttons and the CLI (`jetsched jobs --all`,
`jetsched dead retry --error-type …`).

Intake answers a list in pages of at most 250 records (`MAX_PAGE_RECORDS`) and acts on one dead letter per
request, so a bulk action is a scan followed by one request per job. Scanning first, acting after, keeps
the cursor stable (a retried job leaves the dead set under the scan's feet otherwise) and gives the
progress a total. One job's refusal (retried by someone else meanwhile: `invalid_state`) is reported
and does not stop the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from jetsched.core import subjects
from jetsched.sdk import JetschedApiError

from .shapes import has_error_type

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


class Requester(Protocol):
    """What these helpers need of a `jetsched.sdk.Client`: its control API requests."""

    async def request(self, subject: str, body: dict[str, Any]) -> Any: ...


#: Records asked for per page (intake gives at most 250 whatever is asked).
PAGE = 250
#: Dead letters acted on at once: a few requests in flight hide the round trip without crowding intake.
IN_FLIGHT = 8


async def pages(
    client: Requester, name: str, body: dict[str, Any], key: str = "jobs", total: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Each reply of the list API `jetsched.api.<name>`, following its `next` cursor to the end or until
    `total` items (under `key`) came; each page asks for no more than are still wanted."""
    seen = 0
    while True:
        wanted = PAGE if total is None else min(PAGE, total - seen)
        reply: dict[str, Any] = await client.request(subjects.api(name), {**body, "limit": wanted})
        yield reply
        seen += len(reply.get(key, []))
        if reply.get("next") is None or (total is not None and seen >= total):
            return
        body = {**body, "after": reply["next"]}


@dataclass
class Found:
    """Dead letters of one error type: their ids, how many dead letters were read, and whether the scan
    stopped at a limit before the end."""

    ids: list[str] = field(default_factory=list)
    scanned: int = 0
    truncated: bool = False


async def dead_of_type(
    client: Requester,
    error_type: str,
    capability: str | None = None,
    limit: int | None = None,
    max_scan: int | None = None,
    on_page: Callable[[Found], None] | None = None,
) -> Found:
    """Ids of dead letters whose last error is of `error_type`: at most `limit`, found among at most
    `max_scan` (None: no bound); `on_page` sees the tally after each page."""
    found = Found()
    body: dict[str, Any] = (
        {"limit": PAGE} if capability is None else {"limit": PAGE, "capability": capability}
    )
    async for reply in pages(client, "dead.list", body):
        records = reply.get("jobs", [])
        found.scanned += len(records)
        found.ids += [r["id"] for r in records if has_error_type(r, error_type)]
        if on_page is not None:
            on_page(found)
        more = reply.get("next") is not None
        if limit is not None and len(found.ids) >= limit:
            found.truncated = more or len(found.ids) > limit
            found.ids = found.ids[:limit]
            return found
        if max_scan is not None and found.scanned >= max_scan and more:
            found.truncated = True
            return found
    return found


async def act_on_dead(
    client: Requester,
    verb: str,
    ids: list[str],
    on_progress: Callable[[int, int], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`verb` (`retry` or `purge`) each dead letter, with `extra` in each request (`dead.retry`'s
    `attempts`); `{"done": [ids], "failed": [{"id", "code", "message"}]}`. `on_progress(finished, total)`
    is called as they finish."""
    done: list[str] = []
    failed: list[dict[str, str]] = []

    async def one(job_id: str) -> None:
        try:
            await client.request(subjects.api(f"dead.{verb}"), {**(extra or {}), "id": job_id})
            done.append(job_id)
        except JetschedApiError as exc:
            failed.append({"id": job_id, "code": exc.code, "message": exc.message})

    for start in range(0, len(ids), IN_FLIGHT):
        await asyncio.gather(*(one(job_id) for job_id in ids[start : start + IN_FLIGHT]))
        if on_progress is not None:
            on_progress(min(start + IN_FLIGHT, len(ids)), len(ids))
    return {"done": done, "failed": failed}
