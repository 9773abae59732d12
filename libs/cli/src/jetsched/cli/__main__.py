"""`jetsched` — run workers, submit and inspect jobs, run the whole system locally."""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
from nats.errors import NoRespondersError

from jetsched.bus import logs, loop, telemetry
from jetsched.bus.auth import NatsAuth, add_auth_arguments
from jetsched.bus.config import BusConfig, env_int
from jetsched.bus.connect import ConnectionLost, Unreachable, redact
from jetsched.core import subjects
from jetsched.sdk import Client, JetschedApiError, SessionConflict, Worker, default_tasks

from . import reload
from .dashboard import add_dashboard_command, run_dashboard
from .durations import parse_duration, parse_json
from .listing import Table, add_list_arguments, dead_bulk, list_command
from .render import (
    JOBS_HEADER,
    fields,
    job_row,
    print_bulk,
    print_job,
    print_progress,
    print_quarantined,
    print_schedules,
    print_stats,
    print_workers,
)
from .schedules import add_schedule_commands, run_schedules
from .security import add_security_commands, run_security
from .workflows import add_workflow_commands, print_workflows, run_workflows

JOBS_TABLE = Table(JOBS_HEADER, job_row)
#: Queue limits `queues configure --clear` can remove (the others have defaults, not "none").
CLEARABLE = ("max_running", "max_running_per_key", "rate_per_s", "rate_per_key_per_s", "aging_ms")


def _globals_everywhere(top: argparse.ArgumentParser) -> None:
    """Accept the global options after any subcommand too (`jetsched status ID --json`).

    Each subcommand's parser gets a copy of every global option whose default is left unset, so a
    value given after the subcommand wins and an absent one keeps the value given before it (or the
    default). Walks nested subcommands (`jetsched schedules create …`) the same way."""
    options = [a for a in top._actions if a.option_strings and a.dest != "help"]

    def copy_into(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    taken = {s for a in sub._actions for s in a.option_strings}
                    for option in options:
                        if taken.isdisjoint(option.option_strings):
                            kind = "store_true" if isinstance(option, argparse._StoreTrueAction) else "store"
                            extra = (
                                {}
                                if kind == "store_true"
                                else {"type": option.type, "metavar": option.metavar}
                            )
                            sub.add_argument(
                                *option.option_strings,
                                dest=option.dest,
                                action=kind,
                                default=argparse.SUPPRESS,
                                help=option.help,
                                **extra,
                            )
                    copy_into(sub)

    copy_into(top)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jetsched", description=__doc__)
    parser.add_argument("--nats", default=BusConfig.from_env().nats_url, help="NATS URL [JETSCHED_NATS_URL]")
    add_auth_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--request-timeout",
        type=parse_duration,
        default=5.0,
        help="how long to wait for a reply (default 5s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run the handlers a module registers with @task")
    worker.add_argument("module", help="import path of the module with your @task handlers")
    worker.add_argument("--concurrency", type=int, default=10, help="jobs run at once (default 10)")
    worker.add_argument(
        "--capabilities",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        metavar="A,B",
        help="serve only these of the module's tasks (default: all)",
    )
    worker.add_argument(
        "--reload", action="store_true", help="development: restart when the module's source files change"
    )
    worker.add_argument("--label", action="append", default=[], metavar="K=V", help="a label to announce")
    worker.add_argument(
        "--heartbeat-ms", type=int, default=500, help="how often to tell the reaper it is alive (default 500)"
    )
    worker.add_argument(
        "--http-port",
        type=int,
        default=env_int("JETSCHED_HTTP_PORT", 0) or None,
        help="serve /healthz and /readyz on this port (default: off) [JETSCHED_HTTP_PORT]",
    )
    worker.add_argument("--drain-timeout", type=parse_duration, default=30.0, help="on SIGTERM (default 30s)")
    worker.add_argument(
        "--session",
        default=os.environ.get("JETSCHED_WORKER_SESSION") or None,
        help="session id: the worker identity's name in secure mode (default: new per start) "
        "[JETSCHED_WORKER_SESSION]",
    )

    submit = commands.add_parser("submit", help="submit a job")
    submit.add_argument(
        "capability", help="what the job needs, e.g. email.send (workers serve it by @task name)"
    )
    submit.add_argument(
        "--payload", type=parse_json, default=None, help='JSON payload, e.g. \'{"to": "a@b.c"}\''
    )
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--delay", type=parse_duration, help="start no earlier than this from now, e.g. 5s")
    when.add_argument(
        "--run-at", type=datetime.fromisoformat, help="start no earlier than this RFC 3339 time"
    )
    submit.add_argument("--priority", type=int, help="0-9, higher first (default 5)")
    submit.add_argument("--key", help="idempotency key")
    submit.add_argument("--max-attempts", type=int, help="runs before it ends dead (default 3)")
    submit.add_argument("--timeout", type=parse_duration, help="per-attempt timeout, e.g. 30s")
    submit.add_argument("--heartbeat-timeout", type=parse_duration, help="fail an attempt silent this long")
    submit.add_argument("--expires-in", type=parse_duration, help="die unless started this soon after due")
    submit.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="a label the worker must have"
    )
    submit.add_argument("--key-group", dest="concurrency_key", help="concurrency key, e.g. tenant=acme")
    submit.add_argument("--wait", action="store_true", help="wait for the job to finish and print it")

    status = commands.add_parser("status", help="show one job")
    status.add_argument("id", help="the job's id, as submit printed it")

    jobs = commands.add_parser("jobs", help="list jobs")
    jobs.add_argument("--state", help="scheduled, ready, running, succeeded, dead, cancelled")
    jobs.add_argument("--capability", help="only jobs of this capability")
    add_list_arguments(jobs, "matching jobs", 50)

    commands.add_parser("stats", help="job counts by state and capability, worker slots")
    for verb, text in (
        ("pause", "stop dispatching a capability"),
        ("resume", "dispatch a paused capability again"),
    ):
        commands.add_parser(verb, help=text).add_argument("capability", help="the queue, e.g. email.send")
    commands.add_parser("workers", help="live worker sessions")
    queues = commands.add_parser("queues", help="queue settings: list, or configure one capability")
    queue_verbs = queues.add_subparsers(dest="queues_command", required=True)
    queue_verbs.add_parser("list")
    configure = queue_verbs.add_parser(
        "configure",
        help="change a capability's limits (only those given; --clear removes one)",
        description="Change only the settings given; the others keep their values. "
        "Example: jetsched queues configure email.send --rate 10 --burst 20 --clear max_running",
    )
    configure.add_argument("capability", help="the queue to change, e.g. email.send")
    configure.add_argument("--max-running", type=int, help="running at once, fleet-wide")
    configure.add_argument("--max-running-per-key", type=int, help="running at once per concurrency key")
    configure.add_argument("--rate", type=float, dest="rate_per_s", help="starts per second")
    configure.add_argument(
        "--rate-per-key", type=float, dest="rate_per_key_per_s", help="starts per second per key"
    )
    configure.add_argument("--burst", type=int, help="starts that may be saved up (default 1)")
    configure.add_argument(
        "--paused", action=argparse.BooleanOptionalAction, help="pause or (--no-paused) resume the queue"
    )
    configure.add_argument(
        "--clear",
        action="append",
        default=[],
        choices=CLEARABLE,
        help="remove this limit (repeatable)",
    )
    drain = commands.add_parser("drain", help="ask a worker session to finish and exit")
    drain.add_argument("session", help="the session id, as `jetsched workers` lists it")

    cancel = commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id", help="the job to cancel (a running one is told to stop)")

    dead = commands.add_parser("dead", help="the dead letters: list, retry, purge")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_commands.add_parser("list", help="dead jobs, oldest first")
    add_list_arguments(dead_list, "dead letters", 50)
    dead_list.add_argument("--capability", help="only this capability's dead letters")
    dead_list.add_argument(
        "--error-type", help="only those whose last error is of this type, e.g. ConnectionRefusedError"
    )
    for verb, what in (("retry", "run again"), ("purge", "delete for good")):
        one_or_many = dead_commands.add_parser(
            verb,
            help=f"{what} one dead job, or every dead job of an error type",
            description=f"Examples: jetsched dead {verb} 01KBZ3R6X9T2M0Q7D5W8C4N1HE; "
            f"jetsched dead {verb} --error-type ConnectionRefusedError --capability email.send "
            "(shows progress on a terminal)",
        )
        target = one_or_many.add_mutually_exclusive_group(required=True)
        target.add_argument("id", nargs="?", help=f"the dead job to {what}")
        target.add_argument("--error-type", help=f"{what} every dead job whose last error is of this type")
        one_or_many.add_argument("--capability", help="with --error-type: only this capability's")
        if verb == "retry":
            one_or_many.add_argument(
                "--attempts", type=int, help="further attempts (default: the job's max_attempts)"
            )

    doctor = commands.add_parser("doctor", help="stored items services set aside as unreadable; purge them")
    doctor_commands = doctor.add_subparsers(dest="doctor_command")
    doctor_purge = doctor_commands.add_parser("purge", help="remove a quarantined item from its bucket")
    doctor_purge.add_argument(
        "bucket", choices=("jobs", "schedules", "queues", "timers", "outcomes"), help="where the item lies"
    )
    doctor_purge.add_argument("key", help="its key, as `jetsched doctor` lists it")

    add_schedule_commands(commands)
    add_workflow_commands(commands)
    add_security_commands(commands)
    add_dashboard_command(commands)

    dev = commands.add_parser("dev", help="run nats-server, the four services, a demo worker and demo jobs")
    dev.add_argument("--port", type=int, help="client port (default 4222, or a free one if taken)")
    dev.add_argument(
        "--data", type=Path, default=Path(".jetsched"), help="store and logs (default .jetsched)"
    )
    dev.add_argument("--no-demo", action="store_true", help="do not submit the demo jobs")
    dev.add_argument(
        "--dashboard-port", type=int, help="the web dashboard's port (default 8080, or a free one if taken)"
    )
    dev.add_argument(
        "--secure", action="store_true", help="authenticate every process (identities in DATA/creds)"
    )
    _globals_everywhere(parser)
    return parser


async def run_worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except ImportError as exc:
        raise ValueError(
            f"cannot import {args.module!r} (run from the directory that holds it): {exc}"
        ) from exc
    labels = dict(label.split("=", 1) for label in args.label)
    tasks = default_tasks if args.capabilities is None else default_tasks.only(args.capabilities)
    worker = Worker(
        tasks,
        nats_url=args.nats,
        concurrency=args.concurrency,
        labels=labels,
        heartbeat_ms=args.heartbeat_ms,
        drain_timeout=args.drain_timeout,
        session=args.session,
        auth=NatsAuth.from_args(args),
        http_port=args.http_port,
    )
    await worker.run(install_signal_handlers=True)


async def _wire_job(client: Client, job_id: str) -> Any:
    """A `jobs.get` reply as sent: the CLI prints the protocol's records (what `--json` promises), not the
    SDK's typed views of them."""
    return await client.request(subjects.api("jobs.get"), {"id": job_id})


async def run_client(args: argparse.Namespace) -> Any:
    async with Client(args.nats, timeout=args.request_timeout, auth=NatsAuth.from_args(args)) as client:
        command = args.command
        if command == "submit":
            reply = await client.submit(
                args.capability,
                args.payload,
                priority=args.priority,
                delay=args.delay,
                run_at=args.run_at,
                key=args.key,
                max_attempts=args.max_attempts,
                timeout=args.timeout,
                heartbeat_timeout=args.heartbeat_timeout,
                expires_in=args.expires_in,
                labels=dict(label.split("=", 1) for label in args.label),
                concurrency_key=args.concurrency_key,
            )
            if args.wait:
                print(f"submitted {reply.id}", file=sys.stderr)
                await client.wait(reply.id, timeout=3600, on_change=print_progress)
                return await _wire_job(client, reply.id)
            return reply.reply.model_dump(mode="json")
        if command == "status":
            return await _wire_job(client, args.id)
        if command == "jobs":
            body = {"state": args.state, "capability": args.capability}
            filters = {k: v for k, v in body.items() if v is not None}
            return await list_command(client, args, "jobs.list", filters, JOBS_TABLE)
        # The CLI prints replies as the wire has them (`--json`), so it asks the API itself.
        if command == "cancel":
            return await client.request(subjects.api("jobs.cancel"), {"id": args.id})
        if command == "stats":
            return await client.request(subjects.api("stats"), {})
        if command in ("pause", "resume"):
            verb = "queues.pause" if command == "pause" else "queues.resume"
            return await client.request(subjects.api(verb), {"capability": args.capability})
        if command == "workers":
            return await client.request(subjects.api("workers.list"), {})
        if command == "queues":
            if args.queues_command == "list":
                return await client.request("jetsched.api.queues.list", {})
            names = (
                "max_running",
                "max_running_per_key",
                "rate_per_s",
                "rate_per_key_per_s",
                "burst",
                "paused",
            )
            given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
            # The API sets a queue's settings as a whole: start from what is there now.
            current = (await client.request("jetsched.api.queues.list", {}))["queues"].get(
                args.capability, {}
            )
            settings = {k: v for k, v in {**current, **given}.items() if k not in args.clear}
            body = {"capability": args.capability, **settings}
            return await client.request(subjects.api("queues.configure"), body)
        if command == "drain":
            return await client.request(subjects.api("workers.drain"), {"session": args.session})
        if command == "schedules":
            return await run_schedules(client, args)
        if command == "workflows":
            return await run_workflows(client, args)
        if command == "doctor":
            if args.doctor_command == "purge":
                body = {"bucket": args.bucket, "key": args.key}
                return await client.request("jetsched.api.doctor.purge", body)
            return await client.request("jetsched.api.doctor.list", {})
        if args.dead_command == "list":
            filters = {"capability": args.capability} if args.capability else {}
            return await list_command(
                client, args, "dead.list", filters, JOBS_TABLE, error_type=args.error_type
            )
        if args.error_type is not None:
            return await dead_bulk(client, args)
        if args.dead_command == "retry":
            attempts = {} if args.attempts is None else {"attempts": args.attempts}
            return await client.request(subjects.api("dead.retry"), {"id": args.id, **attempts})
        return await client.request(subjects.api("dead.purge"), {"id": args.id})


def missing(exc: ModuleNotFoundError, module: str, command: str, install: str) -> NoReturn:
    """Exit with one line naming what to install when `module` is absent; re-raise any other absence."""
    if exc.name != module:
        raise exc
    sys.exit(f"error: `jetsched {command}` is not installed here: pip install {install}")


def whole_stdout() -> None:
    """Give stdout a buffer if it has none (`python -u`, PYTHONUNBUFFERED=1), so that every print is
    written whole. Unbuffered, a print is one write(2) whose short count nobody looks at, and once uvloop
    has run, a write to a pipe whose reader lags behind does come back short: `--json jobs` piped to a
    slow reader lost everything after its first 64 KiB. A buffer writes on until all is out."""
    if isinstance(sys.stdout, io.TextIOWrapper) and isinstance(sys.stdout.buffer, io.RawIOBase):
        sys.stdout = open(  # noqa: SIM115 (stdout for the rest of the process; the fd stays open)
            sys.stdout.fileno(),
            "w",
            buffering=1,  # by line, as before
            encoding=sys.stdout.encoding,
            errors=sys.stdout.errors,
            closefd=False,
        )


def main(argv: list[str] | None = None) -> None:
    whole_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "worker" and args.reload:
        logs.setup("worker", BusConfig.from_env().log_level)
        child_argv = [arg for arg in (sys.argv[1:] if argv is None else argv) if arg != "--reload"]
        sys.exit(reload.supervise(child_argv, reload.watched_root(args.module, Path.cwd())))
    if getattr(args, "dead_command", None) in ("retry", "purge") and args.id and args.capability:
        parser.error("--capability goes with --error-type (one job is named by its id alone)")
    if args.command == "worker":
        logs.setup("worker", BusConfig.from_env().log_level)
        telemetry.setup("jetsched-worker")
        try:
            loop.run(run_worker(args))
        except (SessionConflict, ValueError) as exc:  # ValueError: a bad --session, no handlers
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        except ConnectionLost as exc:
            logging.getLogger("jetsched.worker").error(f"worker failed: {exc}")
            sys.exit(1)
        return
    if args.command == "dev":
        try:
            from jetsched.devkit import devstack
        except ModuleNotFoundError as exc:
            missing(exc, "jetsched.devkit", "dev", "jetsched-devkit")

        loop.run(
            devstack.run(
                args.port, args.data, not args.no_demo, secure=args.secure, dashboard_port=args.dashboard_port
            )
        )
        return
    if args.command == "dashboard":
        logs.setup("dashboard")
        try:
            loop.run(run_dashboard(args))
        except KeyboardInterrupt:
            pass
        except ModuleNotFoundError as exc:
            missing(exc, "aiohttp", "dashboard", "'jetsched[dashboard]'")
        except (ValueError, OSError) as exc:  # a bad token, a port in use, NATS unreachable
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        return
    if args.command == "security":
        try:
            print(run_security(args))
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        return
    # A command either answers or says in one line why not; retry notices are for long-running processes.
    logging.getLogger("jetsched.bus.connect").setLevel(logging.ERROR)
    try:
        result = loop.run(run_client(args))
    except JetschedApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    except NoRespondersError:
        print(
            f"error: nothing answers jetsched requests at {redact(args.nats)} (is intake running?)",
            file=sys.stderr,
        )
        sys.exit(3)
    except (TimeoutError, OSError) as exc:
        print(f"error: no reply from jetsched at {redact(args.nats)}: {exc!r}", file=sys.stderr)
        sys.exit(3)
    if result is None:  # a list printed page by page as it came
        return
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    elif args.command == "stats":
        print_stats(result)
    elif args.command == "schedules":
        print_schedules(result)
    elif args.command == "workflows":
        print_workflows(result, args.workflows_command)
    elif args.command == "workers":
        print_workers(result)
    elif args.command == "dead" and "done" in result:
        print_bulk(result)
    elif "quarantined" in result:
        print_quarantined(result)
    elif "job" in result:
        print_job(result)
    else:
        print(fields(result))


if __name__ == "__main__":
    main()
