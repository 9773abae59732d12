from __future__ import annotations

import argparse
import os

from jetsched.bus.config import add_shard_arguments
from jetsched.bus.leases import DEFAULT_TTL_MS
from jetsched.bus.service import main as run_service

from . import partitions
from .service import DEFAULT_SHARDS, DispatcherService


def _partitions(spec: str) -> dict[str, int]:
    try:
        return partitions.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_shard_arguments(parser, service="dispatcher", shards=DEFAULT_SHARDS, ttl_ms=DEFAULT_TTL_MS)
    parser.add_argument(
        "--partitions",
        type=_partitions,
        default=os.environ.get("JETSCHED_DISPATCH_PARTITIONS", ""),
        metavar="CAP=N,...",
        help="hot capabilities dispatched by several replicas at once, in N partitions each; the same on"
        " every replica [JETSCHED_DISPATCH_PARTITIONS]",
    )


def main() -> None:
    run_service(
        "dispatcher",
        lambda args, bus: DispatcherService(bus, args.shards, args.lease_ttl_ms, args.partitions),
        add_arguments,
    )


if __name__ == "__main__":
    main()
