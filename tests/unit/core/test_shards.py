"""Shard leases: balance, takeover of expired leases judged by the observer's own clock, release."""

from __future__ import annotations

from jetsched.core.shards import Action, ShardTable, Verb, shard_of

TTL = 2000


def test_shard_of_is_stable_and_spread() -> None:
    """The same key always maps to the same shard; many keys use every shard."""
    assert shard_of("01ABC", 16) == shard_of("01ABC", 16)
    assert {shard_of(f"job-{n}", 8) for n in range(200)} == set(range(8))


def test_alone_takes_every_free_shard() -> None:
    """A lone replica takes all shards, creating their lease keys."""
    table = ShardTable("a", 4, TTL)
    assert table.decide(0) == [Action(Verb.TAKE, s, 0) for s in range(4)]


def test_two_members_split_evenly() -> None:
    """With a second live member, a replica holding everything renews its half and releases the rest."""
    table = ShardTable("a", 4, TTL)
    for shard in range(4):
        table.observe_lease(shard, "a", 10 + shard, 0)
    table.observe_member("b", 1, 0)
    actions = table.decide(100)
    assert [a.verb for a in actions] == [Verb.RENEW, Verb.RENEW, Verb.RELEASE, Verb.RELEASE]
    assert [a.shard for a in actions] == [0, 1, 2, 3]


def test_live_lease_of_another_is_left_alone() -> None:
    """A lease whose revision keeps changing is never taken, whatever time the owner writes."""
    table = ShardTable("b", 1, TTL)
    table.observe_member("a", 1, 0)
    for rev, at in enumerate(range(0, 10_000, 500), start=1):
        table.observe_lease(0, "a", rev, at)
        table.observe_member("a", rev, at)
        assert table.decide(at) == []


def test_expired_lease_is_taken_after_ttl() -> None:
    """A lease unchanged for longer than the TTL (by this replica's clock) is taken over by CAS."""
    table = ShardTable("b", 1, TTL)
    table.observe_lease(0, "a", 7, 1000)
    table.observe_member("a", 3, 1000)
    assert table.decide(1000 + TTL) == []
    assert table.decide(1001 + TTL) == [Action(Verb.TAKE, 0, 7)]


def test_dead_member_share_goes_to_survivors() -> None:
    """When a member stops renewing, the survivors' share grows to cover its shards."""
    table = ShardTable("a", 4, TTL)
    table.observe_member("b", 1, 0)
    for shard in range(4):
        table.observe_lease(shard, "a" if shard < 2 else "b", 1, 0)
    assert table.share(100) == 2
    assert [a.verb for a in table.decide(100)] == [Verb.RENEW, Verb.RENEW]
    later = table.decide(TTL + 1)
    assert [(a.verb, a.shard) for a in later] == [
        (Verb.RENEW, 0),
        (Verb.RENEW, 1),
        (Verb.TAKE, 2),
        (Verb.TAKE, 3),
    ]
