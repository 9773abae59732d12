"""`jetsched dashboard`: serve the web dashboard (docs/operations.md, "Dashboard")."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from jetsched.bus.auth import NatsAuth
from jetsched.bus.connect import redact

TOKEN_ENV = "JETSCHED_DASHBOARD_TOKEN"
STREAMS_ENV = "JETSCHED_DASHBOARD_MAX_STREAMS"


def stream_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of streams, 1-100000")
    return value


def add_dashboard_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard",
        description="Serve the web dashboard. Read-only unless started with an operator token; "
        'example: jetsched --creds operator.nk dashboard --port 8080 --operator-token "$TOKEN"',
    )
    dashboard.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0: any free one)")
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    dashboard.add_argument(
        "--operator-token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"allow changes (pause, drain, cancel, retry, purge) to requests carrying this token, "
        f"16-256 characters [{TOKEN_ENV}]",
    )
    dashboard.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name to answer, e.g. a reverse proxy's (repeatable; '*': any)",
    )
    dashboard.add_argument(
        "--max-streams",
        type=stream_count,
        default=os.environ.get(STREAMS_ENV) or None,
        metavar="N",
        help=f"live event streams (browser tabs) served at once; more are refused with 503 "
        f"(default 100) [{STREAMS_ENV}]",
    )


async def run_dashboard(args: argparse.Namespace) -> None:
    from jetsched.dashboard.access import Access
    from jetsched.dashboard.app import Dashboard, serve
    from jetsched.dashboard.live import MAX_STREAMS

    dashboard = Dashboard(
        args.nats,
        NatsAuth.from_args(args),
        Access(args.operator_token),
        tuple(args.allow_host),
        timeout=args.request_timeout,
        max_streams=args.max_streams or MAX_STREAMS,
    )

    def ready(port: int) -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host
        mode = "operator token required for changes" if args.operator_token else "read-only"
        print(f"dashboard on http://{host}:{port}/ ({mode}; NATS {redact(args.nats)})", file=sys.stderr)

    with contextlib.suppress(asyncio.CancelledError):
        await serve(dashboard, args.host, args.port, ready)
