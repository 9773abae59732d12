"""The dispatch board: priority order, capacity, balance."""

from __future__ import annotations

from jetsched.core import states
from jetsched.core.changes import Change
from jetsched.core.ids import UlidFactory
from jetsched.core.models import HELD_BEYOND_CONCURRENCY, Heartbeat, JobRecord, JobRequest, QueueSettings
from jetsched.core.workers import WorkerRegistry
from jetsched.dispatcher.queues import Board

NOW = 1_700_000_000_000
ids = UlidFactory()


def job(priority: int = 5, capability: str = "a") -> JobRecord:
    return states.accept(JobRequest(priority=priority), ids.new(NOW), capability, NOW, None)


def registry(*sessions: tuple[str, int, tuple[str, ...]]) -> WorkerRegistry:
    reg = WorkerRegistry()
    for session, concurrency, capabilities in sessions:
        hb = Heartbeat(
            worker="w", session=session, capabilities=capabilities, concurrency=concurrency, interval_ms=500
        )
        reg.observe(hb, NOW)
    return reg


def board_with(*records: JobRecord) -> Board:
    board = Board()
    for revision, record in enumerate(records, start=1):
        board.observe(Change.of(record, revision))
    return board


def test_priority_then_fifo() -> None:
    """Higher priority first; equal priorities in submission order."""
    low, high, mid1, mid2 = job(1), job(9), job(5), job(5)
    board = board_with(low, high, mid1, mid2)
    claims = board.plan(registry(("s1", 10, ("a",))), limit=10, now_ms=NOW)
    assert [c.record.id for c in claims] == [high.id, mid1.id, mid2.id, low.id]


def test_never_more_than_free_slots() -> None:
    """A worker is planned at most its concurrency, counting what it already holds."""
    board = board_with(*(job() for _ in range(5)))
    reg = registry(("s1", 2, ("a",)))
    assert len(board.plan(reg, limit=10, now_ms=NOW)) == 2
    assert board.plan(reg, limit=10, now_ms=NOW) == []


def test_claim_won_then_finished_frees_slot() -> None:
    """A slot comes back when the feed shows the job left running."""
    first, second = job(), job()
    board = board_with(first, second)
    reg = registry(("s1", 1, ("a",)))
    (claim,) = board.plan(reg, limit=10, now_ms=NOW)
    claimed = states.claim(claim.record, "w", "s1", "t", NOW)
    board.settle(claim, 10)
    board.observe(Change.of(claimed, 10))
    assert board.plan(reg, limit=10, now_ms=NOW) == []
    board.observe(Change.of(states.cancel(claimed, NOW), 11))
    assert [c.record.id for c in board.plan(reg, limit=10, now_ms=NOW)] == [second.id]


def test_lost_cas_requeues() -> None:
    """A claim that lost its CAS goes back in line."""
    record = job()
    board = board_with(record)
    reg = registry(("s1", 1, ("a",)))
    (claim,) = board.plan(reg, limit=10, now_ms=NOW)
    board.settle(claim, None)
    assert [c.record.id for c in board.plan(reg, limit=10, now_ms=NOW)] == [record.id]


def test_stale_feed_update_ignored() -> None:
    """An update older than what the board knows changes nothing."""
    record = job()
    board = board_with(record)
    running = states.claim(record, "w", "s1", "t", NOW)
    board.observe(Change.of(running, 5))
    assert not board.observe(Change.of(record, 1))
    assert board.ready == {}


def test_a_scheduled_job_leaves_nothing_on_the_board() -> None:
    """A job waiting for its time is not the dispatcher's: the board keeps nothing of it, and picks it up
    when it becomes ready."""
    delayed = states.accept(JobRequest(delay_ms=60_000), ids.new(NOW), "a", NOW, None)
    board = board_with(delayed)
    assert (board.ready, board.revisions, board.queues) == ({}, {}, {})
    ready = states.due(delayed, NOW + 60_000)
    assert board.observe(Change.of(ready, 2))
    reg = registry(("s1", 1, ("a",)))
    assert [c.record.id for c in board.plan(reg, limit=10, now_ms=NOW)] == [delayed.id]


def test_only_capable_workers() -> None:
    """Jobs go only to sessions with their capability."""
    board = board_with(job(capability="b"))
    assert board.plan(registry(("s1", 5, ("a",))), limit=10, now_ms=NOW) == []
    (claim,) = board.plan(registry(("s2", 5, ("b",))), limit=10, now_ms=NOW)
    assert claim.session.id == "s2"


def test_least_loaded_relative_to_capacity() -> None:
    """Under load a 16-slot worker gets eight times the jobs of a 2-slot one."""
    board = board_with(*(job() for _ in range(18)))
    claims = board.plan(registry(("small", 2, ("a",)), ("big", 16, ("a",))), limit=100, now_ms=NOW)
    counts = {"small": 0, "big": 0}
    for claim in claims:
        counts[claim.session.id] += 1
    assert counts == {"small": 2, "big": 16}


def test_published_outcome_frees_the_slot_before_the_record_moves_on() -> None:
    """The worker's outcome report frees its slot at once; caps keep counting the job until it is final."""
    first, second, third = job(), job(), job()
    board = board_with(first, second, third)
    board.limits.settings["a"] = QueueSettings(max_running=2)
    reg = registry(("s1", 1, ("a",)))
    (claim,) = board.plan(reg, limit=10, now_ms=NOW)
    board.settle(claim, 10)
    assert not board.finish(claim.record.id, "s2")  # someone else's report for it frees nothing
    assert board.finish(claim.record.id, "s1")
    (claim2,) = board.plan(reg, limit=10, now_ms=NOW)
    assert claim2.record.id == second.id
    board.settle(claim2, 11)
    assert board.plan(registry(("s1", 1, ("a",)), ("s3", 5, ("a",))), limit=10, now_ms=NOW) == []  # cap: 2
    board.observe(Change.of(states.cancel(states.claim(first, "w", "s1", "t", NOW), NOW), 12))
    assert board.finished == {}
    assert [c.record.id for c in board.plan(registry(("s3", 5, ("a",))), limit=10, now_ms=NOW)] == [third.id]


def test_outcome_seen_before_the_feed_shows_the_claim() -> None:
    """A claim by another replica that reaches this board after the job's outcome takes no slot."""
    other = states.claim(job(), "w", "s1", "t", NOW)
    board = board_with(job())
    board.finish(other.id, "s1")
    board.observe(Change.of(other, 99))
    assert len(board.plan(registry(("s1", 1, ("a",))), limit=10, now_ms=NOW)) == 1


def test_claims_by_other_replicas_count() -> None:
    """Jobs the feed shows leased to a session (by any replica) count against its slots."""
    other = states.claim(job(), "w", "s1", "t", NOW)
    board = board_with(job())
    board.observe(Change.of(other, 99))
    assert board.plan(registry(("s1", 1, ("a",))), limit=10, now_ms=NOW) == []


def keyed_job(key: str | None, priority: int = 5) -> JobRecord:
    return states.accept(JobRequest(priority=priority, concurrency_key=key), ids.new(NOW), "a", NOW, None)


class TestFairnessAndLimits:
    def test_keys_take_turns_at_equal_priority(self) -> None:
        """One key's big backlog does not delay another key's few jobs: they alternate."""
        board = board_with(*(keyed_job("acme") for _ in range(100)), *(keyed_job("tiny") for _ in range(3)))
        claims = board.plan(registry(("s1", 6, ("a",))), limit=6, now_ms=NOW)
        assert [c.record.concurrency_key for c in claims] == ["acme", "tiny", "acme", "tiny", "acme", "tiny"]

    def test_priority_still_first_across_keys(self) -> None:
        """A higher priority in any key goes before lower ones in others."""
        board = board_with(keyed_job("a", 1), keyed_job("b", 9), keyed_job("c", 5))
        claims = board.plan(registry(("s1", 3, ("a",))), limit=3, now_ms=NOW)
        assert [c.record.priority for c in claims] == [9, 5, 1]

    def test_per_key_cap(self) -> None:
        """max_running_per_key: a key at its cap is passed over; others go on."""
        board = board_with(*(keyed_job("acme") for _ in range(5)), keyed_job("other"))
        board.limits.settings["a"] = QueueSettings(max_running_per_key=2)
        claims = board.plan(registry(("s1", 10, ("a",))), limit=10, now_ms=NOW)
        assert sorted(c.record.concurrency_key or "" for c in claims) == ["acme", "acme", "other"]

    def test_capability_cap_counts_running_jobs(self) -> None:
        """max_running caps the capability fleet-wide, counting jobs already running anywhere."""
        running = states.claim(job(), "w", "elsewhere", "t", NOW)
        board = board_with(*(job() for _ in range(5)))
        board.observe(Change.of(running, 99))
        board.limits.settings["a"] = QueueSettings(max_running=3)
        assert len(board.plan(registry(("s1", 10, ("a",))), limit=10, now_ms=NOW)) == 2

    def test_rate_limit_token_bucket(self) -> None:
        """rate_per_s with a burst: the burst goes now, then one job per 1/rate seconds."""
        board = board_with(*(job() for _ in range(10)))
        board.limits.settings["a"] = QueueSettings(rate_per_s=10, burst=2)
        reg = registry(("s1", 10, ("a",)))
        assert len(board.plan(reg, limit=10, now_ms=NOW)) == 2
        assert board.plan(reg, limit=10, now_ms=NOW + 50) == []
        assert board.limits.next_token_ms() is not None
        assert len(board.plan(reg, limit=10, now_ms=NOW + 100)) == 1


class TestPriorityModes:
    def test_weighted_gives_low_priorities_a_share(self) -> None:
        """weighted: priority 9 and priority 0 both progress, roughly 10 : 1."""
        board = board_with(*(job(9) for _ in range(200)), *(job(0) for _ in range(200)))
        board.limits.settings["a"] = QueueSettings(priority_mode="weighted")
        claims = board.plan(registry(("s1", 110, ("a",))), limit=110, now_ms=NOW)
        lows = sum(c.record.priority == 0 for c in claims)
        assert 8 <= lows <= 12

    def test_strict_never_lets_low_go_first(self) -> None:
        """strict (the default): not one low-priority job while high ones wait."""
        board = board_with(*(job(9) for _ in range(50)), *(job(0) for _ in range(50)))
        claims = board.plan(registry(("s1", 50, ("a",))), limit=50, now_ms=NOW)
        assert {c.record.priority for c in claims} == {9}

    def test_aging_lifts_a_waiting_job(self) -> None:
        """aging_ms: a job that waited long enough outranks fresher higher-priority ones."""
        old = states.accept(JobRequest(priority=2), ids.new(NOW), "a", NOW - 5000, None)
        fresh = [states.accept(JobRequest(priority=6), ids.new(NOW), "a", NOW, None) for _ in range(3)]
        board = board_with(old, *fresh)
        board.limits.settings["a"] = QueueSettings(aging_ms=1000)
        claims = board.plan(registry(("s1", 1, ("a",))), limit=1, now_ms=NOW)
        assert claims[0].record.id == old.id


def test_a_rescued_job_keeps_its_place() -> None:
    """A job whose worker was lost goes back to where it first became ready, ahead of the backlog that
    arrived while it ran — it has waited already."""
    first = job()
    board = board_with(first)
    reg = registry(("s1", 1, ("a",)))
    (claim,) = board.plan(reg, limit=1, now_ms=NOW)
    board.settle(claim, 2)
    claimed = states.claim(first, "w", "s1", "t", NOW)
    board.observe(Change.of(claimed, 2))
    later = [states.accept(JobRequest(), ids.new(NOW + n), "a", NOW + n, None) for n in range(1, 50)]
    for revision, record in enumerate(later, start=3):
        board.observe(Change.of(record, revision))
    rescued = states.lose(claimed, NOW + 5000, 0.5, "worker gone")
    assert rescued.state.value == "ready"
    board.observe(Change.of(rescued, 100))
    claims = board.plan(registry(("s2", 3, ("a",))), limit=3, now_ms=NOW)
    assert [c.record.id for c in claims] == [first.id, later[0].id, later[1].id]


def test_aging_counts_from_first_ready() -> None:
    """In strict mode with aging, a retried job's wait counts from when it first became ready."""
    old = job(priority=1)
    retried = states.release(states.claim(old, "w", "s1", "t", NOW), NOW + 10_000)
    fresh = states.accept(JobRequest(priority=5), ids.new(NOW + 10_000), "a", NOW + 10_000, None)
    board = board_with(fresh)
    board.observe(Change.of(retried, 10))
    board.limits.settings["a"] = QueueSettings(aging_ms=2000)
    reg = WorkerRegistry()
    reg.observe(
        Heartbeat(worker="w", session="s2", capabilities=("a",), concurrency=1, interval_ms=500), NOW + 10_000
    )
    (claim,) = board.plan(reg, limit=1, now_ms=NOW + 10_000)
    assert claim.record.id == old.id  # 1 + 10 s / 2 s = 6 > 5


def test_a_session_listing_reports_it_cannot_store_is_planned_nothing() -> None:
    """A heartbeat listing `concurrency + HELD_BEYOND_CONCURRENCY` jobs: reports are piling up unstored
    (their slots were freed as they were published), and the worker holds no more than `max_listed`: it
    is sent nothing until its list shrinks."""
    board = board_with(*(job() for _ in range(3)))
    reg = WorkerRegistry()

    def beat(listed: int) -> None:
        running = tuple((ids.new(NOW), 1) for _ in range(listed))
        reg.observe(
            Heartbeat(
                worker="w", session="s1", capabilities=("a",), concurrency=2, running=running, interval_ms=500
            ),
            NOW,
        )

    beat(2 + HELD_BEYOND_CONCURRENCY)
    assert board.plan(reg, limit=10, now_ms=NOW) == []
    beat(2 + HELD_BEYOND_CONCURRENCY - 1)
    assert len(board.plan(reg, limit=10, now_ms=NOW)) == 2


class TestCapsThroughLosses:
    def test_a_lost_sessions_jobs_stay_counted_until_they_leave_running(self) -> None:
        """A session presumed lost frees its slots, but its running jobs count against the caps until the
        feed shows them rescued: its worker may only have been slow, and the reaper not have given up."""
        first, second, third = keyed_job("k"), keyed_job("k"), keyed_job("other")
        board = board_with(first, second, third)
        board.limits.settings["a"] = QueueSettings(max_running=2, max_running_per_key=1)
        reg = registry(("s1", 4, ("a",)))
        claims = board.plan(reg, limit=10, now_ms=NOW)
        assert sorted(c.record.id for c in claims) == sorted([first.id, third.id])
        for revision, claim in enumerate(claims, start=10):
            board.settle(claim, revision)
            board.observe(Change.of(states.claim(claim.record, "w", "s1", "t", NOW), revision))
        board.forget_session("s1")
        assert (board.limits.running["a"], board.limits.running_by_key["a", "k"]) == (2, 1)
        assert board.load(reg.sessions["s1"]) == 0
        assert board.plan(reg, limit=10, now_ms=NOW) == []  # the worker was slow, not gone
        rescued = states.lose(states.claim(first, "w", "s1", "t", NOW), NOW, 0.5, "gone")
        board.observe(Change.of(rescued, 20))
        assert (board.limits.running["a"], board.limits.running_by_key["a", "k"]) == (1, 0)
        assert len(board.plan(reg, limit=10, now_ms=NOW)) == 1

    def test_a_lost_claim_leaves_the_winners_hold_and_count(self) -> None:
        """A claim CAS lost to another replica whose claim the feed already showed gives back nothing of
        that claim: the job stays counted and held by the winner's session."""
        record, other = job(), job()
        board = board_with(record, other)
        board.limits.settings["a"] = QueueSettings(max_running=1)
        reg = registry(("s1", 1, ("a",)), ("s2", 1, ("a",)))
        (claim,) = board.plan(reg, limit=10, now_ms=NOW)
        theirs = states.claim(claim.record, "w", "s2", "t", NOW)
        board.observe(Change.of(theirs, 50))
        board.settle(claim, None)
        board.observe(Change.of(theirs, 50))  # the re-read after the lost CAS: not newer
        assert board.limits.running["a"] == 1
        assert board.holder[claim.record.id] == "s2"
        assert board.plan(reg, limit=10, now_ms=NOW) == []

    def test_a_lost_claim_the_feed_did_not_explain_gives_everything_back(self) -> None:
        """Lost with nothing newer seen (a spurious loss, or the feed behind): hold, count and place back."""
        record = job()
        board = board_with(record)
        board.limits.settings["a"] = QueueSettings(max_running=1)
        reg = registry(("s1", 1, ("a",)))
        (claim,) = board.plan(reg, limit=10, now_ms=NOW)
        board.settle(claim, None)
        assert (board.limits.running["a"], board.holder) == (0, {})
        assert [c.record.id for c in board.plan(reg, limit=10, now_ms=NOW)] == [record.id]
