"""Scaling signals per capability: what autoscalers (KEDA, HPA) read, from the job index and the live
worker fleet. Pure: the API and the gauges (`metrics.py`) ask it with the index's figures and `now`.

- `ready` and `running`: jobs per state;
- `unroutable`: ready jobs that no live, undrained worker can take at all — visible, not silently stuck
  (the number to scale a capability up from zero on);
- `oldest_ready_age_ms`: how long the oldest ready job has waited (0 when none waits);
- `free_worker_slots`: idle slots of the sessions that declared the capability;
- `paused`: whether its queue is paused (ready jobs wait, whatever the fleet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection

    from jetsched.core.workers import WorkerRegistry


def signals(
    counts: dict[str, dict[str, int]],
    oldest_ready_ms: dict[str, int],
    registry: WorkerRegistry,
    paused: Collection[str],
    now_ms: int,
) -> dict[str, dict[str, Any]]:
    """Per capability (every one with jobs or workers): the signals above.

    Args:
        counts: job counts per capability and state.
        oldest_ready_ms: per capability, since when its oldest ready job has waited.
        registry: the live worker sessions.
        paused: the paused capabilities.
        now_ms: the time on the clock `oldest_ready_ms` was read with.
    """
    free: dict[str, int] = {}
    for session in registry.sessions.values():
        spare = max(0, session.heartbeat.concurrency - len(session.heartbeat.running))
        for capability in session.heartbeat.capabilities:
            free[capability] = free.get(capability, 0) + spare

    def ready(capability: str) -> int:
        return counts.get(capability, {}).get("ready", 0)

    return {
        capability: {
            "ready": ready(capability),
            "unroutable": ready(capability) if not registry.capable(capability, now_ms) else 0,
            "running": counts.get(capability, {}).get("running", 0),
            "oldest_ready_age_ms": now_ms - oldest_ready_ms[capability]
            if capability in oldest_ready_ms
            else 0,
            "free_worker_slots": free.get(capability, 0),
            "paused": capability in paused,
        }
        for capability in sorted(set(counts) | set(free))
    }
