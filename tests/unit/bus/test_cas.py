"""The CAS update loop (`bus.cas`), against an in-memory key whose writers can be made to race."""

from __future__ import annotations

import pytest

from jetsched.bus.cas import KeptChanging, cas_update
from jetsched.core.errors import Conflict, TransitionError


class FakeKey:
    """One key with a revision; `rivals` writes land between each read and the next write."""

    def __init__(self, value: int, rivals: int = 0) -> None:
        self.value = value
        self.revision = 1
        self.rivals = rivals
        self.reads = 0

    async def read(self) -> tuple[int, int]:
        self.reads += 1
        if self.rivals:
            self.rivals -= 1
            self.value, self.revision = self.value + 100, self.revision + 1  # a rival wrote meanwhile
            return self.value - 100, self.revision - 1
        return self.value, self.revision

    async def write(self, value: int, revision: int) -> int:
        if revision != self.revision:
            raise Conflict("lost")
        self.value, self.revision = value, revision + 1
        return self.revision


class TestCasUpdate:
    async def test_writes_the_decision(self) -> None:
        """Uncontended: one read, one write; returns before, after and the new revision."""
        key = FakeKey(1)
        assert await cas_update(key.read, lambda v: v + 1, key.write) == (1, 2, 2)
        assert (key.value, key.reads) == (2, 1)

    async def test_a_lost_cas_re_reads_and_re_decides(self) -> None:
        """After a rival's write the verb is applied to the rival's value, not the stale one."""
        key = FakeKey(1, rivals=2)
        before, after, _ = await cas_update(key.read, lambda v: v + 1, key.write)
        assert (before, after, key.value, key.reads) == (201, 202, 202, 3)

    async def test_current_saves_the_first_read(self) -> None:
        """A value already read is decided on first."""
        key = FakeKey(1)
        assert await cas_update(key.read, lambda v: v * 10, key.write, current=(1, 1)) == (1, 10, 2)
        assert key.reads == 0

    async def test_gives_up_after_tries(self) -> None:
        """Losing every try raises `KeptChanging` (a `Conflict`), naming the value."""
        key = FakeKey(1, rivals=100)
        with pytest.raises(KeptChanging, match="job 1: still changing after 3 tries"):
            await cas_update(key.read, lambda v: v + 1, key.write, tries=3, what="job 1")
        assert key.reads == 3
        assert issubclass(KeptChanging, Conflict)

    async def test_a_refusing_verb_passes_through(self) -> None:
        """A verb that no longer applies stops the loop with its own error, nothing written."""
        key = FakeKey(1, rivals=1)

        def only_small(v: int) -> int:
            if v > 50:
                raise TransitionError("moved on")
            return v + 1

        with pytest.raises(TransitionError):
            await cas_update(key.read, only_small, key.write)
        assert key.value == 101
