"""Dispatch partitions: one hot capability's ready jobs split among dispatcher replicas. Pure.

A capability is dispatched by the one replica that holds its shard's lease, so its priority order holds
exactly — and one process is the ceiling for a hot queue. A capability given P partitions
(`--partitions hot.cap=3`, `JETSCHED_DISPATCH_PARTITIONS`) is split by job id instead: job j belongs
to partition `number(j, P)`, each partition is a queue of its own on the board (`cap#k`), leased as a
shard of its own (P shards spaced evenly over the ring, so that replicas splitting the ring by blocks
split the partitions too), and dispatched by whichever replica holds it. What that keeps and gives up:

- **Order within a partition is strict**, as for a whole capability before: a partition's owner always
  starts its highest-priority ready job first.
- **Across partitions, what lower priorities can take is bounded by slots.** Each partition gets a share
  of every worker session's slots (`slots`: concurrency / P, the remainder spread by session), so owners
  never race for one slot. While a job waits, lower-priority jobs may start only in the other
  partitions' shares of the slots — never in its own partition's — so at any moment they hold at most
  `concurrency × (P − 1) / P` of a session's slots, and the waiting job's partition drains at its full
  share in strict order. (Counted in starts rather than slots, a high-priority backlog in one partition
  can see many low-priority starts in another: `make bench-scale` counts both.)
- **Exact limits stay whole.** A queue with a fleet-wide cap or a start rate (for it or per key) is one
  counter and one token bucket: such a queue is not partitioned, whatever P says (`count`).
- P is clamped to the shard count. A partition whose share of every worker is zero would never run, so
  P should stay at or below the fleet's slots for the capability. Each session's remainder of
  `concurrency / P` goes to a run of partitions starting where the previous session's ended (sessions
  in id order, `offsets`), so the remainders tile the ring: with at least P slots in the fleet every
  partition has one, however small the workers. (It was a hash of the session id once; small workers
  then often all left the same partition out, and its jobs never ran.) Replicas that see the fleet
  differently for a moment (a worker just joined) may both count one slot theirs; the worker refuses the
  claim beyond its concurrency and the job is handed back, spending no attempt.

Every replica must be given the same P for a capability (like `--shards`): two replicas that disagree
only waste claims (each claim is a CAS on the job's record), never run a job twice at once.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from jetsched.core.shards import shard_of

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jetsched.core.models import QueueSettings

#: Between a capability and its partition number in a board queue's name; in no capability name.
SEPARATOR = "#"
MAX_PARTITIONS = 64


def parse(spec: str) -> dict[str, int]:
    """`"cap.a=3,cap.b=2"` → {"cap.a": 3, "cap.b": 2}; `ValueError` naming what is wrong."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        capability, sep, number = item.partition("=")
        if not sep or not capability.strip() or not number.strip().isdigit():
            raise ValueError(f"{item!r}: expected capability=partitions, e.g. emails.send=3")
        count = int(number)
        if not 1 <= count <= MAX_PARTITIONS:
            raise ValueError(f"{item!r}: partitions must be 1 to {MAX_PARTITIONS}")
        counts[capability.strip()] = count
    return counts


def limited(settings: QueueSettings) -> bool:
    """Whether a queue has a limit only one counter can keep (a cap or a start rate)."""
    return any(
        value is not None
        for value in (
            settings.max_running,
            settings.max_running_per_key,
            settings.rate_per_s,
            settings.rate_per_key_per_s,
        )
    )


def count(configured: int, settings: QueueSettings, shards: int) -> int:
    """The partitions a capability is dispatched in: as configured, but one for a limited queue, and
    never more than the shards that lease them."""
    return 1 if limited(settings) else max(1, min(configured, shards))


def number(job_id: str, partitions: int, step: bool = False) -> int:
    """A job's dispatch partition. A plain job's is the function that places records (`shard_of`): with
    as many dispatch partitions as record partitions, each dispatcher then claims from one stream
    leader, so its starts come in the order it claims them. A workflow step's is another hash of its
    id: a workflow's steps share its record partition (`wf.step_job_id`), so by the records' function a
    10,000-instance map would fall in one dispatch partition and get its share of the slots only. (Any
    CRC of the id, salted or not, differs from `shard_of`'s by a constant XOR for ids of one length, so
    it would keep the correlation.)"""
    if not step:
        return shard_of(job_id, partitions)
    return int.from_bytes(hashlib.blake2s(job_id.encode(), digest_size=4).digest(), "big") % partitions


def queue_of(capability: str, job_id: str, partitions: int, step: bool = False) -> str:
    """The board queue a job of `capability` sits in: the capability itself, or one partition of it."""
    if partitions <= 1:
        return capability
    return f"{capability}{SEPARATOR}{number(job_id, partitions, step)}"


def split(queue: str) -> tuple[str, int]:
    """(capability, partition number) of a board queue; a whole capability is partition 0."""
    capability, _, number = queue.partition(SEPARATOR)
    return capability, int(number) if number else 0


def shard(capability: str, partition: int, partitions: int, shards: int) -> int:
    """The lease shard of one partition: the capability's own shard, then evenly spaced around the ring."""
    return (shard_of(capability, shards) + partition * shards // partitions) % shards


def offsets(sessions: Iterable[tuple[str, int]], partitions: int) -> dict[str, int]:
    """Where each session's remainder (`slots`) starts on the ring of partitions, by (session id,
    concurrency): in id order, each after the previous one's, so together they cover every partition
    they can."""
    found: dict[str, int] = {}
    at = 0
    for session_id, concurrency in sorted(sessions):
        found[session_id] = at
        at = (at + concurrency % partitions) % partitions
    return found


def slots(concurrency: int, offset: int, partition: int, partitions: int) -> int:
    """A partition's share of one session's slots: an equal part, and one of the remainder for the
    partitions in the run that starts at the session's `offset`."""
    base, extra = divmod(concurrency, partitions)
    return base + (1 if (partition - offset) % partitions < extra else 0)
