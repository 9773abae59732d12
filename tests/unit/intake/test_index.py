"""The intake's job index: paging in id order, and the oldest ready job per capability."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jetsched.core.changes import Change
from jetsched.core.models import JobState
from jetsched.intake.index import JobIndex

STATES = [JobState.READY, JobState.RUNNING, JobState.SUCCEEDED, None]


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(STATES), st.sampled_from(["a", "b"])), max_size=300
    )
)
def test_oldest_ready_matches_a_full_scan(steps: list[tuple[int, JobState | None, str]]) -> None:
    index = JobIndex()
    capability_of: dict[str, str] = {}
    for revision, (n, state, capability) in enumerate(steps, start=1):
        job_id = f"J{n:03d}"
        capability = capability_of.setdefault(job_id, capability)
        change = (
            Change.deleted(job_id, revision) if state is None else Change(job_id, revision, state, capability)
        )
        index.observe(change, now_ms=revision)
        expected: dict[str, int] = {}
        for entry in index.entries.values():
            if entry.state is JobState.READY:
                expected[entry.capability] = min(
                    expected.get(entry.capability, entry.since_ms), entry.since_ms
                )
        assert index.oldest_ready_ms() == expected


def test_pages_walk_every_match_once_in_id_order() -> None:
    index = JobIndex()
    for n in range(250):
        index.observe(Change(f"J{n:04d}", n + 1, JobState.READY, "a" if n % 3 else "b"))
    seen: list[str] = []
    after = None
    while True:
        ids, after = index.page(JobState.READY, "a", 40, after)
        seen += ids
        if after is None:
            break
    assert seen == [f"J{n:04d}" for n in range(250) if n % 3]
    assert index.page(JobState.RUNNING, None, 10, None) == ([], None)


def test_retired_jobs_leave_the_index_but_stay_counted() -> None:
    """A succeeded job that leaves the bucket (retired to history) is dropped but still counted as ended;
    a purged dead letter is no longer counted at all."""
    index = JobIndex()
    index.observe(Change("J1", 1, JobState.SUCCEEDED, "a"))
    index.observe(Change("J2", 2, JobState.DEAD, "a"))
    index.observe(Change.deleted("J1", 3))
    index.observe(Change.deleted("J2", 4))
    assert index.entries == {}
    assert index.stats() == {"a": {"succeeded": 1}}
