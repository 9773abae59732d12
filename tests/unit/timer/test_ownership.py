"""Timers fire only in the shards held here; the others park until their shard comes (`timer.ownership`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jetsched.core.clock import FakeClock
from jetsched.core.shards import shard_of
from jetsched.timer.driver import WheelDriver
from jetsched.timer.entries import Entry, pack, unpack
from jetsched.timer.ownership import Fired, OwnedTimers

SHARDS = 4


def timers() -> tuple[OwnedTimers, Fired]:
    fired: Fired = []
    clock = FakeClock(1000)
    driver: WheelDriver[str] = WheelDriver(clock, lambda due: owned.fired(due))
    owned = OwnedTimers(driver, SHARDS, fired.extend)
    return owned, fired


def key_in(shard: int) -> str:
    return next(f"job{n}" for n in range(1000) if shard_of(f"job{n}", SHARDS) == shard)


def test_fires_in_owned_shards_with_its_data() -> None:
    """A timer of a shard held here fires with the data it was armed with."""
    owned, fired = timers()
    owned.own({0})
    key = key_in(0)
    owned.want(key, key, 2000, data=12345)
    assert owned.driver.wheel.advance(2000) == [(key, 2000, 12345 << owned.bits)]
    owned.fired([(key, 2000, 12345 << owned.bits)])
    assert fired == [(key, 2000, 12345)]


def test_parks_elsewhere_and_fires_when_the_shard_comes() -> None:
    """A timer come due in a shard held elsewhere waits, then fires at once when the shard moves here."""
    owned, fired = timers()
    owned.own({0})
    key = key_in(1)
    owned.want(key, key, 900, data=7)  # already due: handed over at once
    assert fired == []
    assert key in owned.parked
    owned.own({0, 1})
    assert fired == [(key, 900, 7)]
    assert owned.parked == {}


def test_dropped_while_parked_never_fires() -> None:
    """A parked timer its owner removed is gone for good."""
    owned, fired = timers()
    key = key_in(2)
    owned.want(key, key, 900)
    owned.drop(key)
    owned.own({2})
    assert fired == []


def test_rearmed_while_parked_leaves_the_park() -> None:
    """Arming a parked timer again replaces it: it waits on the wheel for its new time."""
    owned, fired = timers()
    key = key_in(3)
    owned.want(key, key, 900)
    owned.want(key, key, 5000, data=1)
    assert owned.parked == {}
    owned.own({3})
    assert fired == []
    assert key in owned.driver.wheel


@given(revision=st.integers(0, 2**70), seen=st.integers(0, 2**64 - 1), base=st.integers(0, 2**64 - 1))
def test_an_entry_packs_into_one_int_and_back(revision: int, seen: int, base: int) -> None:
    entry = Entry(revision, seen, base)
    assert unpack(pack(entry)) == entry
