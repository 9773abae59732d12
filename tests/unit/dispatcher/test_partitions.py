"""Dispatch partitions: one capability split among replicas by job id, each partition in strict order,
with its own share of every worker's slots."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable

import pytest

from jetsched.core import states
from jetsched.core import workflows as wf
from jetsched.core.changes import Change
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobRecord, QueueSettings
from jetsched.core.shards import shard_of
from jetsched.dispatcher import partitions
from jetsched.dispatcher.queues import Board

from .test_queues import NOW, job, registry


def partitioned(count: int, *records: JobRecord) -> Board:
    board = Board(partition_count=lambda capability: count if capability == "a" else 1)
    for revision, record in enumerate(records, start=1):
        board.observe(Change.of(record, revision))
    return board


def owner_of(number: int) -> Callable[[str], bool]:
    return lambda queue: queue == f"a#{number}"


def test_parse() -> None:
    assert partitions.parse("") == {}
    assert partitions.parse("emails.send=3, b=1") == {"emails.send": 3, "b": 1}
    for bad in ("a", "a=", "a=0", "a=x", "=2", f"a={partitions.MAX_PARTITIONS + 1}"):
        with pytest.raises(ValueError, match=r"a=|partitions"):
            partitions.parse(bad)


def test_a_limited_queue_is_not_partitioned() -> None:
    """A cap or a start rate is one counter: such a queue is dispatched whole."""
    assert partitions.count(4, QueueSettings(), 16) == 4
    assert partitions.count(40, QueueSettings(), 16) == 16
    for limit in ({"max_running": 5}, {"rate_per_s": 10.0}, {"max_running_per_key": 1}):
        assert partitions.count(4, QueueSettings.model_validate(limit), 16) == 1


def test_partitions_lease_shards_spread_around_the_ring() -> None:
    """P partitions are P distinct shards, evenly spaced; one partition is the capability's own shard."""
    shards = {partitions.shard("hot", k, 4, 16) for k in range(4)}
    assert len(shards) == 4
    assert partitions.shard("hot", 0, 1, 16) == partitions.shard("hot", 0, 4, 16)
    ring = sorted(shards)
    assert [b - a for a, b in itertools.pairwise(ring)] == [4, 4, 4]


def test_slot_shares_add_up_and_spread_the_remainder() -> None:
    """Each session's slots are split among the partitions without overlap; the remainders tile the
    ring, so small workers together serve every partition they can — all of them, with P slots or more
    in the fleet (a hash of the session id left one out in 11% of fleets of three workers of two slots,
    P=3, and in 91% of four of one, P=4)."""
    for concurrency in (1, 2, 3, 7, 200):
        for offset in range(3):
            assert sum(partitions.slots(concurrency, offset, k, 3) for k in range(3)) == concurrency
    rng = random.Random(3)
    for _ in range(2_000):
        count = rng.randint(1, 8)
        fleet = [(f"s{rng.random()}", rng.randint(1, 5)) for _ in range(rng.randint(1, 6))]
        at = partitions.offsets(fleet, count)
        served = {k for s, c in fleet for k in range(count) if partitions.slots(c, at[s], k, count)}
        assert len(served) == min(count, sum(c for _, c in fleet)), (count, fleet)


def test_small_workers_serve_every_partition() -> None:
    """Four workers of one slot, four partitions: each partition's owner has a slot to start its head
    on, and no two owners plan on one worker."""
    records = [job() for _ in range(80)]
    reg = registry(*((f"s{n}", 1, ("a",)) for n in range(4)))
    planned = [partitioned(4, *records).plan(reg, 10, NOW, dispatches=owner_of(k)) for k in range(4)]
    assert [len(claims) for claims in planned] == [1, 1, 1, 1]
    assert len({c.session.id for claims in planned for c in claims}) == 4


def test_an_owner_dispatches_only_its_partition_in_strict_order() -> None:
    """A replica holding one partition hands out only that partition's jobs, highest priority first."""
    rng = random.Random(7)
    records = [job(rng.randrange(10)) for _ in range(60)]
    board = partitioned(2, *records)
    mine = [r for r in records if partitions.queue_of("a", r.id, 2) == "a#0"]
    assert 0 < len(mine) < len(records)
    claims = board.plan(registry(("s1", 100, ("a",))), limit=100, now_ms=NOW, dispatches=owner_of(0))
    assert [c.record.id for c in claims] == [
        r.id for r in sorted(mine, key=lambda r: (-r.priority, r.queued_at, r.id))
    ][: len(claims)]
    assert len(claims) == min(len(mine), 50)  # its half of the session's 100 slots


def test_two_owners_never_plan_more_than_a_session_holds() -> None:
    """Two replicas, one partition each, planning from the same feed: together no more than the
    worker's concurrency, and each within its share."""
    records = [job() for _ in range(40)]
    first, second = partitioned(2, *records), partitioned(2, *records)
    reg = registry(("s1", 5, ("a",)))
    a = first.plan(reg, limit=100, now_ms=NOW, dispatches=owner_of(0))
    b = second.plan(reg, limit=100, now_ms=NOW, dispatches=owner_of(1))
    assert len(a) + len(b) == 5
    assert {len(a), len(b)} == {2, 3}
    assert not {c.record.id for c in a} & {c.record.id for c in b}


def test_a_partition_slot_comes_back_when_its_job_ends() -> None:
    records = [job() for _ in range(20)]
    board = partitioned(2, *records)
    reg = registry(("s1", 2, ("a",)))
    (claim,) = board.plan(reg, limit=10, now_ms=NOW, dispatches=owner_of(0))
    claimed = states.claim(claim.record, "w", "s1", "t", NOW)
    board.settle(claim, 100)
    board.observe(Change.of(claimed, 100))
    assert board.plan(reg, limit=10, now_ms=NOW, dispatches=owner_of(0)) == []
    board.observe(Change.of(states.cancel(claimed, NOW), 101))
    assert len(board.plan(reg, limit=10, now_ms=NOW, dispatches=owner_of(0))) == 1


def test_repartition_moves_ready_jobs_between_queues() -> None:
    """A queue whose partition count changes (a limit set) is sorted again: no job is left behind."""
    records = [job() for _ in range(10)]
    count = {"a": 2}
    board = Board(partition_count=lambda c: count.get(c, 1))
    for revision, record in enumerate(records, start=1):
        board.observe(Change.of(record, revision))
    assert set(board.queues) == {"a#0", "a#1"}
    count["a"] = 1
    board.repartition("a")
    assert set(board.queues) == {"a"}
    claims = board.plan(registry(("s1", 100, ("a",))), limit=100, now_ms=NOW)
    assert {c.record.id for c in claims} == {r.id for r in records}


def test_a_workflows_steps_spread_over_dispatch_partitions() -> None:
    """Steps share their workflow's record partition (`wf.step_job_id`); a map's instances must still
    spread over every dispatch partition, whatever the two counts."""
    workflow_id = "01KB0000000000000000000000"  # fixed: the counts below are exact, not a flake's
    for records, dispatch in ((4, 4), (3, 3), (4, 2), (8, 4), (6, 4), (32, 64)):
        ids = [wf.step_job_id(workflow_id, 1, 0, n, partitions=records) for n in range(2000)]
        used = Counter(partitions.number(i, dispatch, step=True) for i in ids)
        assert set(used) == set(range(dispatch)), (records, dispatch)
        assert min(used.values()) > 2000 / dispatch / 3  # roughly even


def test_a_plain_jobs_dispatch_partition_is_its_record_partition() -> None:
    """With as many dispatch partitions as record partitions, each dispatcher claims from one leader."""
    for n in range(200):
        job_id = new_ulid(1_800_000_000_000 + n)
        assert partitions.number(job_id, 4) == shard_of(job_id, 4)
