from __future__ import annotations

from functools import partial

from jetsched.bus.config import add_shard_arguments
from jetsched.bus.leases import DEFAULT_TTL_MS
from jetsched.bus.service import main as run_service

from .service import DEFAULT_SHARDS, ReaperService


def main() -> None:
    run_service(
        "reaper",
        lambda args, bus: ReaperService(bus, args.shards, args.lease_ttl_ms),
        partial(add_shard_arguments, service="reaper", shards=DEFAULT_SHARDS, ttl_ms=DEFAULT_TTL_MS),
    )


if __name__ == "__main__":
    main()
