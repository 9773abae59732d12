"""Declares every stream and bucket, idempotently, with the configured replica count.

Run by every service at start, so any one of them brings up a fresh server; a declaration that exists with
a different configuration is updated in place (replica counts and limits can be raised later).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nats.js import api
from nats.js.errors import BadRequestError

from jetsched.core import subjects

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

#: Largest stored record: payload limit (256 KiB default) + result + error history, with headroom.
MAX_RECORD_BYTES = 1024 * 1024


#: How long a marker announcing an expired record stays (so watchers, and our feeds, see the expiry).
EXPIRY_MARKER_TTL_S = 3600.0


def _kv_stream(
    bucket: str, replicas: int, max_msg_size: int, expiring: bool = False, ttls: bool = False
) -> api.StreamConfig:
    """`expiring`: records may carry a TTL and their expiry leaves a marker the feeds see; `ttls`: messages
    may carry a TTL, without markers."""
    # The same shape nats-py's create_key_value makes, so nats-py KV handles work on these buckets.
    return api.StreamConfig(
        name=subjects.kv_stream(bucket),
        subjects=[f"$KV.{bucket}.>"],
        retention=api.RetentionPolicy.LIMITS,
        max_msgs_per_subject=1,
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


def streams(replicas: int, retention_s: int = 7 * 86_400, history_bytes: int = 0) -> list[api.StreamConfig]:
    return [
        _kv_stream(subjects.JOBS_BUCKET, replicas, MAX_RECORD_BYTES, expiring=True),
        _kv_stream(subjects.KEYS_BUCKET, replicas, 1024),
        _kv_stream(subjects.TIMERS_BUCKET, replicas, 1024, ttls=True),
        _kv_stream(subjects.SCHEDULES_BUCKET, replicas, MAX_RECORD_BYTES),
        _kv_stream(subjects.LEASES_BUCKET, replicas, 1024),
        _kv_stream(subjects.QUEUES_BUCKET, replicas, 1024),
        _kv_stream(subjects.QUARANTINE_BUCKET, replicas, 4096),
        _kv_stream(subjects.PROGRESS_BUCKET, replicas, 8192, ttls=True),
        _kv_stream(subjects.WORKFLOWS_BUCKET, replicas, MAX_RECORD_BYTES, expiring=True),
        api.StreamConfig(
            name=subjects.OUTCOMES_STREAM,
            subjects=[subjects.OUTCOME_ALL],
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
    js: JetStreamContext, replicas: int, retention_s: int = 7 * 86_400, history_bytes: int = 0
) -> None:
    """Create or update every stream and the reaper's durable consumer."""
    for config in streams(replicas, retention_s, history_bytes):
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different configuration
                raise
            log.info("updating stream configuration", extra={"stream": config.name})
            await js.update_stream(config)
    await js.add_consumer(subjects.OUTCOMES_STREAM, outcomes_consumer())
