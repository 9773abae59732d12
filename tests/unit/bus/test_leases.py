"""What a lease watcher takes from the lease bucket: only keys of the shapes replicas write."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from jetsched.bus.leases import ShardLeaser
from jetsched.core.clock import FakeClock
from jetsched.core.ids import new_ulid

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from jetsched.bus.direct import Connection


def test_only_replicas_keys_count() -> None:
    """A made-up member (what a JetStream ack sent to a forged reply subject once left: `member.<id>.ready`)
    or shard key is ignored, not counted as a live replica, and never raises."""
    clock = FakeClock()
    me = new_ulid(clock.now_ms()).lower()
    leaser = ShardLeaser(
        cast("Connection", None), cast("JetStreamContext", None), "dispatcher", me, 16, clock, lambda _: None
    )
    other = new_ulid(clock.now_ms() + 1).lower()
    leaser._observe(f"dispatcher.member.{other}", 1, b"{}", None)
    for n, key in enumerate(
        (
            f"dispatcher.member.{other.upper()}",
            f"dispatcher.member.{other}.ready",
            "dispatcher.member.x",
            "dispatcher.shard.99",
            "dispatcher.shard.-1",
            "dispatcher.shard.one",
            "dispatcher.other.1",
        ),
        start=2,
    ):
        leaser._observe(key, n, b'{"owner": "x"}', None)
    assert set(leaser.table.members) == {other}
    assert leaser.table.leases == {}


def test_a_jetstream_ack_written_over_a_lease_key_is_no_replica_and_no_owner() -> None:
    """A worker may make JetStream write its publish's ack to a reply subject it names — a lease key
    (docs/security.md): such a value is no live member and holds no shard."""
    from jetsched.bus.leases import _member, _owner

    ack = b'{"stream":"JETSCHED_OUTCOMES","seq":12}'
    member = "01jzzzzzzzzzzzzzzzzzzzzzzz"
    assert _member(member, b"{}")
    assert _member(member, None)  # removed
    assert not _member(member, ack)
    assert _owner(b'{"owner":"01jzzzzzzzzzzzzzzzzzzzzzzz"}') == member
    assert _owner(ack) is None
    assert _owner(b"[1]") is None
    assert _owner(b"not json") is None
