"""`jetsched security …`: write NATS identities and the server configuration that confines them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jetsched.bus import security

if TYPE_CHECKING:
    import argparse


def add_security_commands(commands: Any) -> None:
    parser = commands.add_parser("security", help="NATS identities and permissions (docs/security.md)")
    verbs = parser.add_subparsers(dest="security_command", required=True)
    init = verbs.add_parser("init", help="write a seed per role, auth.conf and a standalone nats-server.conf")
    init.add_argument("dir", type=Path, help="where to write the identities, e.g. deploy/secrets")
    init.add_argument("--workers", default="", help="worker identities, comma separated (each a session id)")
    init.add_argument("--port", type=int, default=4222, help="client port of the standalone config")
    init.add_argument(
        "--store-dir", type=Path, help="JetStream store of the standalone config (DIR/jetstream)"
    )
    add = verbs.add_parser("add-worker", help="add a worker identity and rewrite auth.conf (then SIGHUP)")
    add.add_argument("dir", type=Path, help="the directory `security init` wrote")
    add.add_argument("name", help="the worker identity's name (its session id), e.g. mailer-1")


def run_security(args: argparse.Namespace) -> str:
    """Do the command; returns what to tell the user."""
    if args.security_command == "init":
        workers = tuple(name for name in args.workers.split(",") if name)
        security.init(args.dir, workers, port=args.port, store_dir=args.store_dir)
        seeds = ", ".join(path.name for path in sorted(args.dir.glob(f"*{security.SEED_SUFFIX}")))
        return (
            f"wrote {args.dir / security.SERVER_CONF} (includes {security.AUTH_CONF}) and seeds {seeds}; "
            "give each process its own with --creds (JETSCHED_NATS_CREDS)"
        )
    path = security.add_worker(args.dir, args.name)
    return (
        f"wrote {path} and rewrote {args.dir / security.AUTH_CONF}; reload nats-server (SIGHUP) and run the "
        f"worker with --creds {path} --session {args.name}"
    )
