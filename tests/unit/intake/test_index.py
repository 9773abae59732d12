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
    #: the model: job id → (state, since) as the index was told
    jobs: dict[str, tuple[JobState, int]] = {}
    for revision, (n, state, capability) in enumerate(steps, start=1):
        job_id = f"J{n:03d}"
        capability = capability_of.setdefault(job_id, capability)
        change = (
            Change.deleted(job_id, revision) if state is None else Change(job_id, revision, state, capability)
        )
        index.observe(change, now_ms=revision)
        if state is None:
            jobs.pop(job_id, None)
        else:
            jobs[job_id] = (state, revision)
        expected: dict[str, int] = {}
        for job, (seen_state, since) in jobs.items():
            if seen_state is JobState.READY:
                expected[capability_of[job]] = min(expected.get(capability_of[job], since), since)
        assert index.oldest_ready_ms() == expected
        assert {job: found[0] for job in jobs if (found := index.find(job))} == {
            job: seen_state for job, (seen_state, _) in jobs.items()
        }


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
    assert len(index) == 0
    assert index.stats() == {"a": {"succeeded": 1}}


def test_a_job_is_one_int_under_its_id() -> None:
    """Each job is held as one int under its id, in its state's dict; capabilities are numbered once."""
    index = JobIndex()
    index.observe(Change("J1", 7, JobState.SCHEDULED, "a"))
    index.observe(Change("J2", 8, JobState.SCHEDULED, "b"))
    index.observe(Change("J1", 9, JobState.READY, "a"))
    assert index.find("J1") == (JobState.READY, "a", 9)
    assert index.find("J2") == (JobState.SCHEDULED, "b", 8)
    assert index.capabilities == ["a", "b"]
    assert all(type(v) is int for jobs in index.by_state.values() for v in jobs.values())
    assert index.page(None, "b", 10, None) == (["J2"], None)
    assert index.page(None, "c", 10, None) == ([], None)
    assert index.stats() == {"a": {"ready": 1}, "b": {"scheduled": 1}}
