"""Declares every stream and bucket, idempotently, with the configured replica count.

Run by every service at start, so any one of them brings up a fresh server; a declaration that exists with
a different configuration is updated in place (replica counts and limits can be raised later).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from jetsched.core import subjects

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

#: Largest stored record: payload limit (256 KiB default) + result + error history, with headroom.
MAX_RECORD_BYTES = 1024 * 1024


#: On the first job record bucket's stream: how many partitions the deployment's records are in.
PARTITIONS_METADATA = "jetsched_record_partitions"


class PartitionsMismatch(Exception):
    """This process was configured with another number of record partitions than the deployment has."""


#: How long a marker announcing an expired record stays (so watchers, and our feeds, see the expiry).
EXPIRY_MARKER_TTL_S = 3600.0


def _kv_stream(
    bucket: str,
    replicas: int,
    max_msg_size: int,
    expiring: bool = False,
    ttls: bool = False,
    metadata: dict[str, str] | None = None,
    max_keys: int | None = None,
) -> api.StreamConfig:
    """`expiring`: records may carry a TTL and their expiry leaves a marker the feeds see; `ttls`: messages
    may carry a TTL, without markers."""
    # The same shape nats-py's create_key_value makes, so nats-py KV handles work on these buckets.
    return api.StreamConfig(
        name=subjects.kv_stream(bucket),
        subjects=[f"$KV.{bucket}.>"],
        retention=api.RetentionPolicy.LIMITS,
        max_msgs_per_subject=1,
        max_msgs=max_keys,
        discard=api.DiscardPolicy.NEW,
        max_msg_size=max_msg_size,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        mirror_direct=False,
        allow_msg_ttl=True if expiring or ttls else None,
        subject_delete_marker_ttl=EXPIRY_MARKER_TTL_S if expiring else None,
        metadata=metadata,
    )


#: How long a message id is remembered by the history stream (a retire written twice within it is dropped).
HISTORY_DEDUP_S = 120.0


def history_stream(replicas: int, retention_s: int, max_bytes: int) -> api.StreamConfig:
    """Finished jobs' records (`bus/history.py`): kept `retention_s` (0: forever) and, with `max_bytes`,
    dropped oldest first beyond that size."""
    return api.StreamConfig(
        name=subjects.HISTORY_STREAM,
        subjects=[subjects.HISTORY_ALL],
        retention=api.RetentionPolicy.LIMITS,
        max_msgs_per_subject=1,
        max_age=float(retention_s) or None,
        max_bytes=max_bytes or None,
        discard=api.DiscardPolicy.OLD,
        max_msg_size=MAX_RECORD_BYTES,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        # The server refuses a duplicate window longer than the maximum age.
        duplicate_window=min(HISTORY_DEDUP_S, retention_s or HISTORY_DEDUP_S),
        allow_direct=True,
    )


#: Quarantine entries kept; past it new ones are logged and counted (`jetsched.quarantined`) but not
#: stored, until an operator purges some (`jetsched doctor`).
MAX_QUARANTINED = 100_000


def streams(
    replicas: int, retention_s: int = 7 * 86_400, history_bytes: int = 0, partitions: int = 1
) -> list[api.StreamConfig]:
    records = [
        _kv_stream(
            subjects.jobs_bucket(p),
            replicas,
            MAX_RECORD_BYTES,
            expiring=True,
            metadata={PARTITIONS_METADATA: str(partitions)} if p == 0 else None,
        )
        for p in range(partitions)
    ]
    return [
        *records,
        _kv_stream(subjects.KEYS_BUCKET, replicas, 1024),
        _kv_stream(subjects.TIMERS_BUCKET, replicas, 1024, ttls=True),
        _kv_stream(subjects.SCHEDULES_BUCKET, replicas, MAX_RECORD_BYTES),
        _kv_stream(subjects.LEASES_BUCKET, replicas, 1024),
        _kv_stream(subjects.QUEUES_BUCKET, replicas, 1024),
        # Bounded: what lands here comes from hostile or broken peers, one entry per message they send.
        _kv_stream(subjects.QUARANTINE_BUCKET, replicas, 4096, max_keys=MAX_QUARANTINED),
        _kv_stream(subjects.PROGRESS_BUCKET, replicas, 8192, ttls=True),
        _kv_stream(subjects.WORKFLOWS_BUCKET, replicas, MAX_RECORD_BYTES, expiring=True),
        api.StreamConfig(
            name=subjects.OUTCOMES_STREAM,
            subjects=[subjects.REPORTED_ALL],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=replicas,
            max_msg_size=MAX_RECORD_BYTES,
            duplicate_window=120.0,
        ),
        history_stream(replicas, retention_s, history_bytes),
    ]


def outcomes_consumer() -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=subjects.OUTCOMES_CONSUMER,
        deliver_subject=subjects.OUTCOMES_DELIVER,
        deliver_group=subjects.OUTCOMES_CONSUMER,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=5.0,
        max_ack_pending=2000,
        deliver_policy=api.DeliverPolicy.ALL,
    )


async def declare(
    js: JetStreamContext,
    replicas: int,
    retention_s: int = 7 * 86_400,
    history_bytes: int = 0,
    partitions: int = 1,
) -> None:
    """Create or update every stream and the reaper's durable consumer; `PartitionsMismatch` if the job
    records are already spread over another number of partitions than `partitions`."""
    await check_partitions(js, partitions)
    for config in streams(replicas, retention_s, history_bytes, partitions):
        await _ensure_stream(js, config, partitions)
    await js.add_consumer(subjects.OUTCOMES_STREAM, outcomes_consumer())


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig, partitions: int) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != 10058:  # stream name already in use with a different configuration
            raise
        if config.metadata and PARTITIONS_METADATA in config.metadata:
            # Created since `declare` looked (another process starting at once): its count stands.
            await check_partitions(js, partitions)
        log.info("updating stream configuration", extra={"stream": config.name})
        await js.update_stream(config)


async def record_partitions(js: JetStreamContext) -> int:
    """How many partitions the deployment's job records are in (for a client that follows them all)."""
    try:
        info = await js.stream_info(subjects.kv_stream(subjects.JOBS_BUCKET))
    except NotFoundError:
        return 1
    found = (info.config.metadata or {}).get(PARTITIONS_METADATA, "1")
    if not found.isdigit() or not 1 <= int(found) <= subjects.MAX_RECORD_PARTITIONS:
        raise PartitionsMismatch(f"the job records' partition count on the stream is unreadable: {found!r}")
    return int(found)


async def check_partitions(js: JetStreamContext, partitions: int) -> None:
    """The partition count is fixed when the first service creates the buckets (a record's bucket is
    decided by its id and the count): a process configured otherwise would read or write the wrong ones,
    so it must not start. A deployment from before partitions has one."""
    try:
        info = await js.stream_info(subjects.kv_stream(subjects.JOBS_BUCKET))
    except NotFoundError:
        return  # a fresh server: this process creates them
    found = (info.config.metadata or {}).get(PARTITIONS_METADATA, "1")
    if found != str(partitions):
        raise PartitionsMismatch(
            f"the job records are in {found} partition(s); this process was started with {partitions}"
            " (JETSCHED_RECORD_PARTITIONS must be the same on every service)"
        )
