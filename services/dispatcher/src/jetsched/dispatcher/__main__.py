from __future__ import annotations

from functools import partial

from jetsched.bus.config import add_shard_arguments
from jetsched.bus.leases import DEFAULT_TTL_MS
from jetsched.bus.service import main as run_service

from .service import DEFAULT_SHARDS, DispatcherService


def main() -> None:
    run_service(
        "dispatcher",
        lambda args, bus: DispatcherService(bus, args.shards, args.lease_ttl_ms),
        partial(add_shard_arguments, service="dispatcher", shards=DEFAULT_SHARDS, ttl_ms=DEFAULT_TTL_MS),
    )


if __name__ == "__main__":
    main()
