"""`jetsched workflows …`: submit, list, get, show (the graph with each step's state), cancel, retry."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .listing import Table, add_list_arguments, list_command

if TYPE_CHECKING:
    import argparse

    from jetsched.sdk import Client


def add_workflow_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "workflows", help="workflows (DAGs of steps): submit, list, show, cancel, retry"
    )
    verbs = parser.add_subparsers(dest="workflows_command", required=True)
    submit = verbs.add_parser("submit", help="submit a workflow from a JSON file ('-': standard input)")
    submit.add_argument(
        "file", help="a JSON file with the workflow request (docs/protocol.md), or - for stdin"
    )
    listing = verbs.add_parser("list", help="workflows by id (submission order)")
    listing.add_argument(
        "--state",
        choices=("running", "succeeded", "failed", "cancelled"),
        help="only workflows in this state",
    )
    add_list_arguments(listing, "workflows", 100)
    for verb, text in (
        ("get", "one workflow as JSON"),
        ("show", "draw the graph with each step's state, attempt and timing"),
        ("cancel", "cancel the steps not started and stop running ones"),
        ("retry", "re-run a failed workflow from its failed steps"),
    ):
        verbs.add_parser(verb, help=text).add_argument("id", help="the workflow's id")


async def run_workflows(client: Client, args: argparse.Namespace) -> Any:
    verb = args.workflows_command
    if verb == "submit":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()  # noqa: ASYNC240 - a CLI's one small read
        return await client.request("jetsched.workflow.submit", orjson.loads(text))
    if verb == "list":
        body = {"state": args.state} if args.state else {}
        return await list_command(client, args, "workflows.list", body, WORKFLOWS_TABLE, key="workflows")
    # The reply as sent: what `get` prints and `show` draws.
    api = "get" if verb == "show" else verb
    return await client.request(f"jetsched.api.workflows.{api}", {"id": args.id})


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _took(step: dict[str, Any]) -> str:
    start, end = step.get("started_at_ms"), step.get("finished_at_ms")
    if start is None or end is None:
        return ""
    return f"{(end - start) / 1000:.3f}s"


def draw(view: dict[str, Any]) -> list[str]:
    """The workflow's steps as a tree in dependency order: each step under its first parent, with its
    other parents named (`+ after x, y`), and its state, attempt, start time and duration."""
    steps: dict[str, dict[str, Any]] = view["steps"]
    children: dict[str | None, list[str]] = {}
    for name, step in steps.items():
        parents = step.get("depends_on") or []
        children.setdefault(parents[0] if parents else None, []).append(name)
    lines = [
        f"workflow {view['id']}  {view['state']}"
        + ("  (cancel requested)" if view.get("cancel_requested") else "")
    ]

    def walk(name: str, prefix: str, last: bool) -> None:
        step = steps[name]
        branch = "└─ " if last else "├─ "
        state = step["state"]
        extra = []
        if len(step.get("depends_on") or []) > 1:
            extra.append("+ after " + ", ".join(step["depends_on"][1:]))
        if "instances" in step:
            extra.append(
                f"map over {step.get('map_over')}: {step['instances_done']}/{step['instances']} done"
            )
        if step.get("error"):
            extra.append(step["error"])
        timing = (
            f"attempt {step.get('attempt', 0)}  started {_when(step.get('started_at_ms'))}  {_took(step)}"
        )
        lines.append(f"{prefix}{branch}{name}  [{state}]  {timing}  {'  '.join(extra)}".rstrip())
        kids = children.get(name, [])
        for n, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), n == len(kids) - 1)

    roots = children.get(None, [])
    for n, root in enumerate(roots):
        walk(root, "", n == len(roots) - 1)
    return lines


WORKFLOWS_TABLE = Table(f"{'id':<26}  state", lambda item: f"{item['id']:<26}  {item['state']}")


def print_workflows(result: dict[str, Any], verb: str) -> None:
    if verb == "show":
        print("\n".join(draw(result["workflow"])))
    else:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
