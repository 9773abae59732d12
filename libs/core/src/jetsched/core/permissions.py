"""Who may publish and subscribe to what: the NATS permissions of every jetsched role (docs/security.md).

Pure tables built from the names in `subjects.py`, so a renamed subject cannot leave a stale grant behind.
Everything is an allow-list; whatever a role is not granted (stream purge and delete, another worker's
work, `$JS.API` for workers and clients) the server refuses with a permissions violation.

Each identity gets its own reply inbox (`inbox(public_key)`): a connection may subscribe only to replies
sent to itself, never to everyone's `_INBOX.>`.

A work subject carries the capability, which may have several tokens (`email.send`), before the session;
NATS wildcards cannot say "any number of tokens, then NAME", so a worker identity is granted one pattern
per possible token count (`jetsched.work.*.NAME`, `jetsched.work.*.*.NAME`, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import subjects
from .models import MAX_CAPABILITY_LEN

#: A worker identity doubles as its session id: lower case, digits and `-` (no dots: it is one token).
WORKER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Most tokens a capability can have: one character each, separated by dots.
MAX_CAPABILITY_TOKENS = (MAX_CAPABILITY_LEN + 1) // 2

SERVICES = ("intake", "timer", "dispatcher", "reaper")


@dataclass(frozen=True, slots=True)
class Permissions:
    """One NATS user's allow-lists. `responses`: it may answer requests sent to it (once each)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responses: bool = False


@dataclass(frozen=True, slots=True)
class _Service:
    writes: tuple[str, ...] = ()  # KV buckets it writes (and reads)
    reads: tuple[str, ...] = ()  # KV buckets it only reads
    feeds: tuple[str, ...] = ()  # KV buckets whose change feed it follows
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    responses: bool = False
    reads_streams: tuple[str, ...] = ()
    leases: bool = False  # splits shards by lease: writes and follows `leases` keys under its own name


# `Records` writes a timer entry with a record; a record is in one of the partitions' buckets.
_RECORDS = (*subjects.ALL_JOBS_BUCKETS, subjects.TIMERS_BUCKET)
# Every service sets aside what it cannot read (`bus/quarantine.py`).
_QUARANTINE = (subjects.QUARANTINE_BUCKET,)

# Read from each service's code: what it subscribes to, publishes, and which buckets it reads and writes.
_SERVICES: dict[str, _Service] = {
    "intake": _Service(
        writes=(
            *_RECORDS,
            *_QUARANTINE,
            subjects.KEYS_BUCKET,
            subjects.SCHEDULES_BUCKET,
            subjects.QUEUES_BUCKET,
            subjects.WORKFLOWS_BUCKET,
            subjects.PROGRESS_BUCKET,
        ),
        feeds=(
            *subjects.ALL_JOBS_BUCKETS,
            subjects.QUEUES_BUCKET,
            subjects.SCHEDULES_BUCKET,
            subjects.WORKFLOWS_BUCKET,
        ),
        # `doctor.list` asks the quarantine's stream which keys it holds; `stats` how many jobs history holds.
        publish=(
            subjects.CONTROL_ALL,
            f"$JS.API.STREAM.INFO.{subjects.kv_stream(subjects.QUARANTINE_BUCKET)}",
            f"$JS.API.STREAM.INFO.{subjects.HISTORY_STREAM}",
        ),
        subscribe=(
            subjects.SUBMIT_ALL,
            subjects.BATCH_ALL,
            subjects.WORKFLOW_SUBMIT,
            subjects.API_ALL,
            subjects.HEARTBEAT_ALL,
            subjects.PROGRESS_ALL,
        ),
        responses=True,
    ),
    "timer": _Service(
        writes=(*_RECORDS, *_QUARANTINE, subjects.SCHEDULES_BUCKET),
        feeds=(subjects.TIMERS_BUCKET, subjects.SCHEDULES_BUCKET),
        publish=(subjects.CONTROL_ALL,),
        leases=True,
    ),
    "dispatcher": _Service(
        writes=(*_RECORDS, *_QUARANTINE),
        reads=(subjects.QUEUES_BUCKET,),
        feeds=(*subjects.ALL_JOBS_BUCKETS, subjects.QUEUES_BUCKET),
        publish=(subjects.WORK_ALL,),
        subscribe=(subjects.HEARTBEAT_ALL, subjects.OUTCOME_ALL),
        leases=True,
    ),
    "reaper": _Service(
        # It advances workflows: their records, and the step jobs it releases, cancels and collects.
        writes=(*_RECORDS, *_QUARANTINE, subjects.WORKFLOWS_BUCKET),
        # A scheduled workflow's step jobs left without a record: will the schedule fire it again?
        reads=(subjects.SCHEDULES_BUCKET,),
        feeds=(*subjects.ALL_JOBS_BUCKETS, subjects.WORKFLOWS_BUCKET),
        # It retires finished records to history.
        publish=(
            subjects.CONTROL_ALL,
            f"$JS.ACK.{subjects.OUTCOMES_STREAM}.{subjects.OUTCOMES_CONSUMER}.>",
            subjects.HISTORY_ALL,
            # It stores workers' outcome reports in the outcomes stream (`relay`).
            subjects.REPORTED_ALL,
            # It spreads the record partitions' stream leaders over the cluster's nodes (`bus/leaders.py`).
            *(
                f"$JS.API.STREAM.{verb}.{subjects.kv_stream(bucket)}"
                for bucket in subjects.ALL_JOBS_BUCKETS
                for verb in ("INFO", "LEADER.STEPDOWN")
            ),
        ),
        subscribe=(subjects.HEARTBEAT_ALL, subjects.OUTCOMES_DELIVER, subjects.OUTCOME_ALL),
        reads_streams=(subjects.OUTCOMES_STREAM,),
        # Replicas split job id shards by lease: each rescues and retires its own shards' jobs.
        leases=True,
        # It answers an outcome report it could not pass on with an error (`relay`).
        responses=True,
    ),
}


def inbox(public_key: str) -> str:
    """The reply-inbox prefix of the identity with this public nkey (what `connect` passes to nats-py)."""
    return f"_INBOX_{public_key}"


def client(inbox_prefix: str) -> Permissions:
    """Submits jobs and workflows and reads them back by id, and hears when a job it knows changes
    (`changed` subjects name a digest of the id, so listening to all of them reveals no id)."""
    return Permissions(
        publish=(
            subjects.SUBMIT_ALL,
            subjects.BATCH_ALL,
            subjects.WORKFLOW_SUBMIT,
            subjects.api("jobs.get"),
            subjects.api("workflows.get"),
        ),
        subscribe=(f"{inbox_prefix}.>", subjects.CHANGED_ALL),
    )


def operator(inbox_prefix: str) -> Permissions:
    """The whole control API, plus submitting, plus following the job records' feed (the dashboard's
    live view): an operator reads any record through the API already, so the feed grants nothing new."""
    return Permissions(
        publish=(
            subjects.API_ALL,
            subjects.SUBMIT_ALL,
            subjects.BATCH_ALL,
            subjects.WORKFLOW_SUBMIT,
            *(subject for bucket in subjects.ALL_JOBS_BUCKETS for subject in feed(bucket)),
            # How many partitions the records are in (`topology.record_partitions`).
            f"$JS.API.STREAM.INFO.{subjects.kv_stream(subjects.JOBS_BUCKET)}",
        ),
        subscribe=(f"{inbox_prefix}.>", subjects.CHANGED_ALL),
    )


def feed(bucket: str) -> tuple[str, ...]:
    """What following a bucket's change feed takes (`bus/feed.py`: an ephemeral consumer delivering to
    an inbox, recreated and deleted by its follower, with flow control)."""
    stream = subjects.kv_stream(bucket)
    return (
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.FC.{stream}.>",
    )


def worker(name: str, inbox_prefix: str) -> Permissions:
    """Worker identity `name`, which runs as session `name`: its own work, control and heartbeats only.

    It may report outcomes and progress for any job: a report is applied only with the lease token,
    which travels only in the work message to the session holding the lease (docs/security.md)."""
    if not WORKER_NAME_RE.match(name):
        raise ValueError(f"worker name {name!r}: use 1-63 of a-z 0-9 - (it is the session id)")
    work = tuple(subjects.work(".".join(["*"] * n), name) for n in range(1, MAX_CAPABILITY_TOKENS + 1))
    return Permissions(
        publish=(subjects.heartbeat(name), subjects.OUTCOME_ALL, subjects.PROGRESS_ALL),
        # Its own heartbeats too: hearing one from another process reveals a second copy of the identity.
        subscribe=(*work, subjects.control(name), subjects.heartbeat(name), f"{inbox_prefix}.>"),
    )


def service(name: str, inbox_prefix: str, streams: tuple[str, ...]) -> Permissions:
    """Service `name`: declares `streams` at start (topology), then only what its code uses."""
    spec = _SERVICES[name]
    api = "$JS.API"
    publish = [f"{api}.STREAM.{verb}.{stream}" for stream in streams for verb in ("CREATE", "UPDATE")]
    publish.append(f"{api}.CONSUMER.DURABLE.CREATE.{subjects.OUTCOMES_STREAM}.{subjects.OUTCOMES_CONSUMER}")
    # The servers' time, read from the jobs stream leader's info reply (`bus/server_time.py`).
    publish.append(f"{api}.STREAM.INFO.{subjects.kv_stream(subjects.JOBS_BUCKET)}")
    publish += [f"$KV.{bucket}.>" for bucket in spec.writes]
    feeds, reads = spec.feeds, spec.writes + spec.reads
    if spec.leases:
        publish.append(f"$KV.{subjects.LEASES_BUCKET}.{name}.>")
        feeds, reads = (*feeds, subjects.LEASES_BUCKET), (*reads, subjects.LEASES_BUCKET)
    for bucket in dict.fromkeys(reads):
        publish.append(f"{api}.STREAM.MSG.GET.{subjects.kv_stream(bucket)}")
    # `Records.get` finds a finished job in history once it has left the bucket.
    for stream in (*spec.reads_streams, subjects.HISTORY_STREAM):
        publish.append(f"{api}.STREAM.MSG.GET.{stream}")
    for bucket in feeds:
        publish += feed(bucket)
    # Every service writes job records, and `Records` announces each write.
    publish.append(subjects.CHANGED_ALL)
    return Permissions(
        publish=(*publish, *spec.publish),
        subscribe=(*spec.subscribe, f"{inbox_prefix}.>"),
        responses=spec.responses,
    )
