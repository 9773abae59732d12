"""Bulk dead-letter actions and list paging over a fake control API (pages of at most 250, as intake's)."""

from __future__ import annotations

from typing import Any

import pytest

from jetsched.dashboard import bulk
from jetsched.sdk import JetschedApiError


class FakeApi:
    """`dead.list` pages, `dead.retry`/`dead.purge` of an in-memory dead set; every request is logged."""

    def __init__(self, types: list[str]) -> None:
        self.dead = {
            f"{n:026d}": {"id": f"{n:026d}", "errors": [{"attempt": 1, "type": kind}]}
            for n, kind in enumerate(types)
        }
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def request(self, subject: str, body: dict[str, Any]) -> Any:
        self.requests.append((subject, body))
        if subject == "jetsched.api.dead.list":
            ids = sorted(i for i in self.dead if body.get("after") is None or i > body["after"])
            page = ids[: min(body["limit"], 250)]
            more = len(ids) > len(page)
            return {"jobs": [self.dead[i] for i in page], "next": page[-1] if more else None}
        if body["id"] not in self.dead:
            raise JetschedApiError("invalid_state", "not dead", None)
        del self.dead[body["id"]]
        return {"id": body["id"]}


async def test_finds_every_dead_letter_of_a_type_across_pages() -> None:
    """The scan follows the cursor to the end and keeps only the type asked for."""
    api = FakeApi(["OSError", "ValueError"] * 300)
    tallies: list[tuple[int, int]] = []
    found = await bulk.dead_of_type(api, "OSError", on_page=lambda f: tallies.append((f.scanned, len(f.ids))))
    assert (len(found.ids), found.scanned, found.truncated) == (300, 600, False)
    assert tallies == [(250, 125), (500, 250), (600, 300)]


@pytest.mark.parametrize(
    ("limit", "max_scan", "expected"),
    [(100, None, (100, 250, True)), (300, None, (300, 600, False)), (None, 400, (250, 500, True))],
)
async def test_scan_bounds(limit: int | None, max_scan: int | None, expected: tuple[int, int, bool]) -> None:
    """A scan stops at `limit` matches or after `max_scan` records, and says whether it stopped early."""
    found = await bulk.dead_of_type(
        FakeApi(["OSError", "ValueError"] * 300), "OSError", None, limit, max_scan
    )
    assert (len(found.ids), found.scanned, found.truncated) == expected


async def test_acts_on_each_and_reports_refusals() -> None:
    """Each id is retried once; one already gone is reported, the others still done; progress reaches the
    total."""
    api = FakeApi(["OSError"] * 20)
    ids = [*api.dead, "gone"]
    progress: list[tuple[int, int]] = []
    result = await bulk.act_on_dead(api, "retry", ids, lambda n, total: progress.append((n, total)))
    assert sorted(result["done"]) == ids[:-1]
    assert result["failed"] == [{"id": "gone", "code": "invalid_state", "message": "not dead"}]
    assert progress == [(8, 21), (16, 21), (21, 21)]
    assert not api.dead


async def test_pages_ask_for_no_more_than_wanted() -> None:
    """Listing 300 of 600 reads two pages, the second asking for the 50 still wanted."""
    api = FakeApi(["E"] * 600)
    replies = [reply async for reply in bulk.pages(api, "dead.list", {}, total=300)]
    assert [len(r["jobs"]) for r in replies] == [250, 50]
    assert [body["limit"] for _, body in api.requests] == [250, 50]
    assert replies[-1]["next"] == replies[-1]["jobs"][-1]["id"]
