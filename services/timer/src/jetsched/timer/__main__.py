from __future__ import annotations

import argparse  # noqa: TC003 -- argparse types are used at runtime by the parser

from jetsched.bus.config import env_int
from jetsched.bus.leases import DEFAULT_TTL_MS
from jetsched.bus.service import main as run_service

from .service import DEFAULT_SHARDS, TimerService


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shards",
        type=int,
        default=env_int("JETSCHED_TIMER_SHARDS", DEFAULT_SHARDS),
        help="timer shards replicas split by lease; the same on every replica [JETSCHED_TIMER_SHARDS]",
    )
    parser.add_argument(
        "--lease-ttl-ms",
        type=int,
        default=env_int("JETSCHED_LEASE_TTL_MS", DEFAULT_TTL_MS),
        help="a dead replica's shards move after this long [JETSCHED_LEASE_TTL_MS]",
    )


def main() -> None:
    run_service("timer", lambda args, bus: TimerService(bus, args.shards, args.lease_ttl_ms), add_arguments)


if __name__ == "__main__":
    main()
