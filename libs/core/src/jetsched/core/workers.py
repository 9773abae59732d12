"""Which worker sessions are alive and what they can run, as told by their heartbeats. Pure.

A session is presumed lost when it has been silent for `misses` heartbeat intervals plus a margin that
absorbs scheduling hiccups; the interval comes from the worker's own heartbeat, so a worker configured to
beat slowly is not declared dead early. Everything here compares only the *receiver's* clock readings, so
clock skew between hosts never matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Heartbeat

DEFAULT_MISSES = 3
DEFAULT_MARGIN_MS = 500
LOST_MEMORY_MS = 10 * 60_000


@dataclass(slots=True)
class Session:
    heartbeat: Heartbeat
    first_seen_ms: int
    last_seen_ms: int

    @property
    def id(self) -> str:
        return self.heartbeat.session

    def deadline_ms(self, misses: int, margin_ms: int) -> int:
        return self.last_seen_ms + self.heartbeat.interval_ms * misses + margin_ms


class WorkerRegistry:
    """Live worker sessions indexed by capability."""

    def __init__(self, misses: int = DEFAULT_MISSES, margin_ms: int = DEFAULT_MARGIN_MS) -> None:
        self.misses = misses
        self.margin_ms = margin_ms
        self.sessions: dict[str, Session] = {}
        #: Sessions expired recently, with when: their jobs are lost now, not after a wait for news.
        self.lost: dict[str, int] = {}

    def observe(self, hb: Heartbeat, now_ms: int) -> Session:
        """Record a heartbeat; returns the session (new or refreshed)."""
        session = self.sessions.get(hb.session)
        self.lost.pop(hb.session, None)
        if session is None:
            session = self.sessions[hb.session] = Session(hb, now_ms, now_ms)
        else:
            session.heartbeat = hb
            session.last_seen_ms = now_ms
        return session

    def alive(self, session_id: str, now_ms: int) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and now_ms <= session.deadline_ms(self.misses, self.margin_ms)

    def expire(self, now_ms: int) -> list[Session]:
        """Remove and return the sessions silent past their deadline."""
        lost = [s for s in self.sessions.values() if now_ms > s.deadline_ms(self.misses, self.margin_ms)]
        for s in lost:
            del self.sessions[s.id]
            self.lost[s.id] = now_ms
        for session_id, at in list(self.lost.items()):
            if now_ms - at > LOST_MEMORY_MS:
                del self.lost[session_id]
        return lost

    def extend_all(self, now_ms: int) -> None:
        """Treat every known session as just heard from: after this process was itself cut off from NATS,
        silence says nothing about the workers."""
        for session in self.sessions.values():
            session.last_seen_ms = max(session.last_seen_ms, now_ms)

    def capable(self, capability: str, now_ms: int) -> list[Session]:
        """Sessions that declared `capability`, are not draining, and beat recently enough to send work to.

        "Recently enough" is stricter than alive: `misses` intervals without the margin. So a dispatcher
        stops sending work to a silent session before a reaper declares it lost, and a job rescued from a
        dead session is not handed straight back to it.
        """
        return [
            s
            for s in self.sessions.values()
            if capability in s.heartbeat.capabilities
            and not s.heartbeat.draining
            and now_ms <= s.last_seen_ms + s.heartbeat.interval_ms * self.misses
        ]

    def waiting_reason(
        self, capability: str, now_ms: int, labels: dict[str, str] | None = None
    ) -> str | None:
        """Why a ready job of `capability` would not be dispatched now, or None if some worker can take it."""
        sessions = self.capable(capability, now_ms)
        if not sessions:
            return f"no live worker with capability '{capability}'"
        if labels and not any(matches(s, labels) for s in sessions):
            wanted = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            return f"no live worker with capability '{capability}' and labels {wanted}"
        return None


def matches(session: Session, labels: dict[str, str]) -> bool:
    """Whether a session announces every label a job requires."""
    announced = session.heartbeat.labels
    return all(announced.get(k) == v for k, v in labels.items())
