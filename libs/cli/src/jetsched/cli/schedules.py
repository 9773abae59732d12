"""`jetsched schedules …`: create, list, show, pause, resume, delete and preview schedules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from jetsched.sdk import schedule_spec

from .durations import parse_duration, parse_json

if TYPE_CHECKING:
    import argparse

    from jetsched.sdk import Client


def add_schedule_commands(commands: Any) -> None:
    parser = commands.add_parser("schedules", help="cron and interval schedules")
    verbs = parser.add_subparsers(dest="schedules_command", required=True)
    for verb, text in (
        ("create", "create a schedule"),
        ("update", "replace a schedule's spec (applies from now)"),
    ):
        add_spec_arguments(verbs.add_parser(verb, help=text))
    verbs.add_parser("list", help="every schedule")
    for verb in ("show", "pause", "resume", "delete"):
        verbs.add_parser(verb, help=f"{verb} one schedule").add_argument("id", help="the schedule's id")
    preview = verbs.add_parser("preview", help="the next fire times in UTC and the schedule's zone")
    preview.add_argument("id", help="the schedule's id")
    preview.add_argument("--count", type=int, default=10, help="how many fires to show (default 10)")


def add_spec_arguments(create: argparse.ArgumentParser) -> None:
    create.add_argument("id", help="schedule id: letters, digits, '-' and '_'")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="5-field cron (or 6 fields, seconds first), e.g. '0 9 * * MON-FRI'")
    when.add_argument("--every", type=parse_duration, help="a fixed interval, e.g. 30s")
    what = create.add_mutually_exclusive_group(required=True)
    what.add_argument("--capability", help="what each fire's job needs")
    what.add_argument(
        "--workflow",
        metavar="FILE",
        help="start a workflow on each fire: a JSON file like a `workflows submit` body, without key",
    )
    create.add_argument("--payload", type=parse_json, default=None, help="JSON payload of each job")
    create.add_argument("--tz", default="UTC", help="IANA time zone the cron expression is read in")
    create.add_argument("--priority", type=int, help="0-9 for each fire's job (default 5)")
    create.add_argument("--misfire", choices=["skip", "once", "all"], help="after downtime (default once)")
    create.add_argument("--catchup-window", type=parse_duration, help="for --misfire all (default 1d)")
    create.add_argument(
        "--overlap",
        choices=["allow", "skip", "buffer_one", "cancel_previous"],
        help="when the previous fire's job still runs (default allow)",
    )
    create.add_argument(
        "--dst-gap", choices=["shift", "skip"], help="times that do not exist (default shift)"
    )
    create.add_argument(
        "--dst-fold", choices=["first", "second", "both"], help="times that repeat (default first)"
    )
    create.add_argument("--jitter", type=parse_duration, help="spread each fire's start by up to this")
    create.add_argument(
        "--start-at", type=datetime.fromisoformat, help="no fires before this, e.g. 2027-01-01T00:00:00+01:00"
    )
    create.add_argument("--end-at", type=datetime.fromisoformat, help="no fires after this (ISO 8601)")


async def run_schedules(client: Client, args: argparse.Namespace) -> Any:
    verb = args.schedules_command
    if verb in ("create", "update"):
        spec = schedule_spec(
            args.id,
            args.capability or "",
            args.payload,
            cron=args.cron,
            every=args.every,
            timezone=args.tz,
            priority=args.priority,
            misfire=args.misfire,
            catchup_window=args.catchup_window,
            overlap=args.overlap,
            dst_gap=args.dst_gap,
            dst_fold=args.dst_fold,
            jitter=args.jitter,
            start_at=args.start_at,
            end_at=args.end_at,
        )
        if args.workflow is not None:
            del spec["job"]
            spec["workflow"] = orjson.loads(Path(args.workflow).read_text())  # noqa: ASYNC240 - a CLI's one small read
        return await client.request(f"jetsched.api.schedules.{verb}", spec)
    # The replies as sent, which the command prints.
    if verb == "list":
        return await client.request("jetsched.api.schedules.list", {})
    if verb == "preview":
        return await client.request("jetsched.api.schedules.preview", {"id": args.id, "count": args.count})
    api = "get" if verb == "show" else verb
    return await client.request(f"jetsched.api.schedules.{api}", {"id": args.id})
