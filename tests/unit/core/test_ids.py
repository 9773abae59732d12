"""ULIDs."""

from __future__ import annotations

import random

from jetsched.core.ids import ULID_RE, UlidFactory, encode, timestamp_ms


def test_monotonic_within_a_millisecond() -> None:
    """Ids made in the same millisecond still sort in creation order."""
    factory = UlidFactory()
    ids = [factory.new(1_700_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_time_sortable_and_decodable() -> None:
    """Later milliseconds sort later; the timestamp decodes back; the alphabet is Crockford's."""
    factory = UlidFactory()
    a, b = factory.new(1_700_000_000_000), factory.new(1_700_000_000_001)
    assert a < b
    assert timestamp_ms(a) == 1_700_000_000_000
    assert ULID_RE.match(a)


def test_clock_going_back_stays_monotonic() -> None:
    """A clock stepping backwards never makes a smaller id."""
    factory = UlidFactory()
    a = factory.new(2_000)
    assert factory.new(1_000) > a


def test_encode_is_base32_of_the_low_130_bits() -> None:
    """`encode` writes the low 130 bits, five at a time, most significant first, in Crockford's alphabet."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    rng = random.Random(7)
    values = [0, 1, 31, 32, (1 << 128) - 1, (1 << 130) - 1, 1 << 130, (1 << 135) + 9]
    values += [rng.getrandbits(rng.choice([10, 48, 80, 128, 130])) for _ in range(2000)]
    for value in values:
        expected = "".join(alphabet[(value >> (5 * n)) & 31] for n in reversed(range(26)))
        assert encode(value) == expected
