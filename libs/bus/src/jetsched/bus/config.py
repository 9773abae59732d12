"""Configuration shared by every process: environment variables with flags on top, sane defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jetsched.core import subjects

from .auth import NatsAuth, add_auth_arguments

if TYPE_CHECKING:
    import argparse

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True, slots=True)
class BusConfig:
    """How to reach NATS and how to declare storage."""

    nats_url: str = DEFAULT_NATS_URL
    #: Replicas of every stream and bucket: 1 on a single server, 3 in a cluster.
    replicas: int = 1
    log_level: str = "INFO"
    #: Seconds a succeeded or cancelled job's record is kept (0: forever). Dead letters stay until purged.
    retention_s: int = 7 * 86_400
    #: Most bytes of finished jobs' records history keeps, oldest dropped first (0: limited by age only).
    history_bytes: int = 0
    auth: NatsAuth = field(default_factory=NatsAuth)
    #: Port of the `/healthz` and `/readyz` endpoints (None: not served).
    http_port: int | None = None
    #: Buckets the job records are spread over (`subjects.jobs_bucket`), each its own stream with its own
    #: leader: the same on every service, fixed when the first service creates them.
    record_partitions: int = 1

    @classmethod
    def from_env(cls) -> BusConfig:
        return cls(
            nats_url=os.environ.get("JETSCHED_NATS_URL", DEFAULT_NATS_URL),
            replicas=env_int("JETSCHED_REPLICAS", 1),
            log_level=os.environ.get("JETSCHED_LOG_LEVEL", "INFO"),
            retention_s=env_int("JETSCHED_RETENTION_S", 7 * 86_400),
            history_bytes=env_int("JETSCHED_HISTORY_BYTES", 0),
            auth=NatsAuth.from_env(),
            http_port=env_int("JETSCHED_HTTP_PORT", 0) or None,
            record_partitions=env_int("JETSCHED_RECORD_PARTITIONS", 1),
        )


def add_bus_arguments(parser: argparse.ArgumentParser) -> None:
    env = BusConfig.from_env()
    parser.add_argument(
        "--nats", default=env.nats_url, help="NATS URL(s), comma separated [JETSCHED_NATS_URL]"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=env.replicas,
        help="stream/bucket replicas, 1 or 3 [JETSCHED_REPLICAS]",
    )
    parser.add_argument(
        "--log-level", default=env.log_level, help="DEBUG, INFO, WARNING [JETSCHED_LOG_LEVEL]"
    )
    parser.add_argument(
        "--retention-s",
        type=int,
        default=env.retention_s,
        help="keep succeeded/cancelled jobs this long, 0 forever [JETSCHED_RETENTION_S]",
    )
    parser.add_argument(
        "--history-bytes",
        type=int,
        default=env.history_bytes,
        help="keep at most this many bytes of finished jobs, 0 no limit [JETSCHED_HISTORY_BYTES]",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=env.http_port,
        help="serve /healthz and /readyz on this port (default: off) [JETSCHED_HTTP_PORT]",
    )
    parser.add_argument(
        "--record-partitions",
        type=int,
        choices=range(1, subjects.MAX_RECORD_PARTITIONS + 1),
        metavar=f"1..{subjects.MAX_RECORD_PARTITIONS}",
        default=env.record_partitions,
        help="job record buckets (streams) to spread writes over; the same on every service"
        " [JETSCHED_RECORD_PARTITIONS]",
    )
    add_auth_arguments(parser)


def add_shard_arguments(parser: argparse.ArgumentParser, service: str, shards: int, ttl_ms: int) -> None:
    """`--shards` and `--lease-ttl-ms` for a service whose replicas split shards by lease."""
    upper = service.upper()
    parser.add_argument(
        "--shards",
        type=int,
        default=env_int(f"JETSCHED_{upper}_SHARDS", shards),
        help=f"shards replicas split by lease; the same on every replica [JETSCHED_{upper}_SHARDS]",
    )
    parser.add_argument(
        "--lease-ttl-ms",
        type=int,
        default=env_int("JETSCHED_LEASE_TTL_MS", ttl_ms),
        help="a dead replica's shards move after this long [JETSCHED_LEASE_TTL_MS]",
    )


def bus_config(args: argparse.Namespace) -> BusConfig:
    return BusConfig(
        nats_url=args.nats,
        replicas=args.replicas,
        log_level=args.log_level,
        retention_s=args.retention_s,
        history_bytes=args.history_bytes,
        auth=NatsAuth.from_args(args),
        http_port=args.http_port,
        record_partitions=args.record_partitions,
    )
