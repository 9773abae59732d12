"""The message generators as hypothesis strategies, for property tests of anything that reads the wire.

`st.randoms(use_true_random=False)` hands the generators a `Random` whose every call is a hypothesis choice,
so hypothesis drives, replays and shrinks the same generators the bulk driver runs from a seeded `Random`:
one definition of "hostile", two ways to draw from it.

    @given(fuzz.strategies.messages(family="api.jobs.get"))
    def test_validate_never_raises(message): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from . import hostile
from .messages import Message, Targets
from .stream import generate, hostile_headers, shaped

if TYPE_CHECKING:
    import random

    from hypothesis.strategies import SearchStrategy


def _randoms() -> SearchStrategy[random.Random]:
    return st.randoms(use_true_random=False, note_method_calls=False)


def messages(targets: Targets | None = None, family: str | None = None) -> SearchStrategy[Message]:
    """Hostile messages: any family by weight with every layer, or one family's schema-shaped bodies with
    hostile headers."""
    known = targets or Targets()
    if family is None:
        return _randoms().map(lambda rng: generate(rng, known))

    def one(rng: random.Random) -> Message:
        message = shaped(rng, family, known)
        headers, attack = hostile_headers(rng, message)
        return Message(family, message.subject, message.body, headers, message.request, tuple(attack))

    return _randoms().map(one)


def values() -> SearchStrategy[object]:
    """Any hostile JSON value (NaN, huge ints, deep nesting, odd strings)."""
    return _randoms().map(hostile.anything)


def raw_bodies() -> SearchStrategy[bytes]:
    """Bodies that are not well-formed JSON objects."""
    return _randoms().map(lambda rng: hostile.raw_body(rng, b'{"id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE"}'))
