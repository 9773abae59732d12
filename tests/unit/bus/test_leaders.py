"""Spreading stream leaders: the decider (`leaders.move`) and reading a stream's info."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from jetsched.bus.leaders import Led, led, move

NODES = ("n1", "n2", "n3")


def loads(streams: list[Led]) -> Counter[str]:
    return Counter(s.leader for s in streams if s.leader is not None)


def test_bunched_leaders_move_one_at_a_time_to_the_least_loaded_peer() -> None:
    streams = [Led(f"KV_jobs-{n}", "n1", NODES) for n in range(3)]
    assert move(streams) == ("KV_jobs-0", "n2")
    streams[0] = Led("KV_jobs-0", "n2", NODES)
    assert move(streams) == ("KV_jobs-1", "n3")
    streams[1] = Led("KV_jobs-1", "n3", NODES)
    assert move(streams) is None


def test_an_even_spread_or_a_difference_of_one_is_left_alone() -> None:
    assert move([Led("a", "n1", NODES), Led("b", "n2", NODES)]) is None
    assert (
        move([Led("a", "n1", NODES), Led("b", "n1", NODES), Led("c", "n2", NODES), Led("d", "n3", NODES)])
        is None
    )
    assert move([Led("a", "n1", ("n1",)), Led("b", "n1", ("n1",)), Led("c", "n1", ("n1",))]) is None


def test_a_stream_moves_only_to_its_own_current_peers() -> None:
    # n1 leads three streams; n3 leads none, but only replicates the first.
    streams = [Led("a", "n1", ("n1", "n3")), Led("b", "n1", ("n1",)), Led("c", "n1", ("n1",))]
    assert move(streams) == ("a", "n3")


def test_no_leader_no_move() -> None:
    assert move([Led("a", None, ()), Led("b", None, NODES)]) is None


@given(
    st.lists(
        st.tuples(st.sampled_from(NODES), st.sets(st.sampled_from(NODES), min_size=0, max_size=2)),
        min_size=1,
        max_size=32,
    )
)
def test_moves_end_with_no_stream_two_ahead_of_a_peer(spec: list[tuple[str, set[str]]]) -> None:
    streams = [
        Led(f"s{n}", leader, (leader, *sorted(others - {leader}))) for n, (leader, others) in enumerate(spec)
    ]
    for _ in range(len(streams) * len(NODES)):  # each move lowers the spread: it ends
        found = move(streams)
        if found is None:
            break
        name, to = found
        streams = [Led(s.stream, to, s.peers) if s.stream == name else s for s in streams]
    else:
        raise AssertionError("the moves did not end")
    load = loads(streams)
    assert all(load[s.leader] - min(load[p] for p in s.peers) <= 1 for s in streams if s.leader)


def test_a_stream_info_reply_is_read_leader_and_current_replicas() -> None:
    info = {
        "cluster": {
            "leader": "n1",
            "replicas": [
                {"name": "n2", "current": True},
                {"name": "n3", "current": False},
                {"name": "n4", "current": True, "offline": True},
            ],
        }
    }
    assert led("s", info) == Led("s", "n1", ("n1", "n2"))
    assert led("s", {}) == Led("s", None, ())
