"""Which capable session gets the next job: the least loaded relative to its declared capacity. Pure.

Relative load (held / concurrency) spreads work in proportion to capacity, so under load a 16-slot
worker carries about eight times the jobs of a 2-slot one; ties go to the larger free capacity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from jetsched.core.workers import Session


def pick(sessions: Sequence[Session], load: Callable[[Session], int]) -> Session:
    def key(session: Session) -> tuple[float, int]:
        held = load(session)
        capacity = session.heartbeat.concurrency
        return held / capacity, held - capacity

    return min(sessions, key=key)
