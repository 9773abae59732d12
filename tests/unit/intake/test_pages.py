"""List pages: bounded by bytes, and cursors that say where the next page starts."""

from __future__ import annotations

import pytest

from jetsched.core import states
from jetsched.core.ids import history_cursor, history_sequence
from jetsched.core.models import JobRequest, ListRequest
from jetsched.intake.pages import Page


def record(job_id: str, size: int = 10):  # type: ignore[no-untyped-def]
    return states.accept(JobRequest(payload="x" * size), job_id, "a", 0, None)


IDS = [f"0000000000000000000000000{n}" for n in range(1, 5)]


def test_a_page_ends_before_the_record_that_would_overflow_it() -> None:
    """The cursor is the last record taken, so the refused one opens the next page."""
    page = Page(budget=len(record(IDS[0]).model_dump_json()) * 2 + 10)
    assert page.add(record(IDS[0]), IDS[0])
    assert page.add(record(IDS[1]), IDS[1])
    assert not page.add(record(IDS[2]), IDS[2])
    assert page.reply("unused") == {"jobs": page.jobs, "next": IDS[1]}


def test_one_record_larger_than_the_budget_fills_a_page_alone() -> None:
    """It is still listed, and the next page starts after it."""
    page = Page(budget=10)
    assert not page.add(record(IDS[0]), history_cursor(7))
    assert page.reply(None)["next"] == "history.7"


def test_a_page_with_room_left_continues_at_the_given_cursor() -> None:
    """Not full: the source's own cursor (None when it has no more) is the next page's."""
    page = Page(budget=1 << 20)
    assert page.add(record(IDS[0]), IDS[0])
    assert page.reply(None) == {"jobs": page.jobs, "next": None}


def test_a_job_that_moved_to_history_while_listed_is_shown_once() -> None:
    """The index named it live, and history holds it by the time history is read."""
    page = Page(budget=1 << 20)
    assert page.add(record(IDS[0]), IDS[0])
    assert page.add(record(IDS[0]), history_cursor(3))
    assert [job["id"] for job in page.jobs] == [IDS[0]]


@pytest.mark.parametrize(
    ("cursor", "sequence"), [(None, None), (IDS[0], None), ("history.0", 0), ("history.123", 123)]
)
def test_cursors_name_a_place_in_history_or_a_job(cursor: str | None, sequence: int | None) -> None:
    """A job id continues the live part; `history.<n>` continues history after sequence n."""
    assert history_sequence(cursor) == sequence


@pytest.mark.parametrize("cursor", ["history.", "history.-1", "history.1.2", "HISTORY.1", "history.x"])
def test_other_cursors_are_refused(cursor: str) -> None:
    """Anything else is a structured validation error, never a subject filter."""
    with pytest.raises(ValueError, match="cursor"):
        ListRequest(after=cursor)
