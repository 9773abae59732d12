"""Long lists and bulk dead-letter actions from the command line: page by page, with progress.

Intake answers at most 250 records a page, so `jobs --limit 5000` (or `--all`) is many requests; a table
is printed page by page as they come, `--json` once at the end. Progress goes to stderr, and only to a
terminal (`progress.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from jetsched.dashboard import bulk
from jetsched.dashboard.shapes import has_error_type

from .progress import Progress

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from jetsched.sdk import Client


class Table(NamedTuple):
    """How a list prints as text: its header line and one line per item."""

    header: str
    row: Callable[[dict[str, Any]], str]


def add_list_arguments(parser: argparse.ArgumentParser, noun: str, default: int) -> None:
    parser.add_argument(
        "--limit",
        type=int,
        default=default,
        help=f"at most this many (default {default}); more than 250 are read page by page",
    )
    parser.add_argument("--all", action="store_true", help=f"every one of the {noun}, read page by page")
    parser.add_argument("--after", help="the cursor a previous list printed (`more: --after …`)")


async def list_command(
    client: Client,
    args: argparse.Namespace,
    name: str,
    body: dict[str, Any],
    table: Table,
    key: str = "jobs",
    error_type: str | None = None,
) -> dict[str, Any] | None:
    """A list command: with `--json` the whole list, returned for printing at the end; as a table,
    printed page by page as the pages come, and None returned."""
    if args.after is not None:
        body = {**body, "after": args.after}
    limit = None if args.all else args.limit
    if args.json:
        return await list_pages(client, name, body, limit, key, error_type)

    def rows(items: list[dict[str, Any]]) -> None:
        print("\n".join(map(table.row, items)), flush=True)

    print(table.header, flush=True)
    result = await list_pages(client, name, body, limit, key, error_type, rows)
    if result["next"] is not None:
        print(f"more: --after {result['next']}")
    return None


PAST = {"retry": "retried", "purge": "purged"}
#: `name` of the list API → what its items are called in progress lines.
NOUNS = {"jobs.list": "jobs", "dead.list": "dead letters", "workflows.list": "workflows"}


async def list_pages(
    client: Client,
    name: str,
    body: dict[str, Any],
    limit: int | None,
    key: str = "jobs",
    error_type: str | None = None,
    on_page: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """`{key: items, "next": cursor}`: up to `limit` items (None: all) of list API `name`, only those
    whose last error is of `error_type` if given; `on_page` gets each page's items as they come."""
    progress = Progress()
    items: list[dict[str, Any]] = []
    read, cursor = 0, None
    # With a filter, `limit` counts matches, so pages are read until enough match.
    total = limit if error_type is None else None
    async for reply in bulk.pages(client, name, body, key, total):
        page = reply.get(key, [])
        read += len(page)
        if error_type is not None:
            page = [item for item in page if has_error_type(item, error_type)]
        if limit is not None:
            page = page[: limit - len(items)]
        items += page
        cursor = reply.get("next")
        if on_page is not None and page:
            progress.clear()
            on_page(page)
        full = limit is not None and len(items) >= limit
        of = "" if limit is None else f"/{limit:,}"
        scanned = "" if error_type is None else f" (of {read:,} read)"
        text = f"listed {len(items):,}{of} {NOUNS.get(name, key)}{scanned}…"
        progress.update(text, final=full or cursor is None)
        if full:
            if error_type is not None:  # the page may hold more matches past the last one kept
                cursor = items[-1]["id"]
            break
    progress.clear()
    return {key: items, "next": cursor}


async def dead_bulk(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """`jetsched dead retry|purge --error-type T`: find every dead letter of that type, then act on each."""
    verb = args.dead_command
    progress = Progress()

    def scanned(found: bulk.Found) -> None:
        progress.update(
            f"scanned {found.scanned:,} dead letters, {len(found.ids):,} of type {args.error_type}…"
        )

    def acted(done: int, total: int) -> None:
        progress.update(f"{PAST[verb]} {done:,}/{total:,}…", final=done == total)

    found = await bulk.dead_of_type(client, args.error_type, args.capability, on_page=scanned)
    extra = {"attempts": args.attempts} if getattr(args, "attempts", None) is not None else {}
    result = await bulk.act_on_dead(client, verb, found.ids, acted, extra)
    progress.clear()
    return {"verb": verb, "error_type": args.error_type, "scanned": found.scanned, **result}
