"""The documents say what the code does: the crash points in docs/architecture.md, the control API's names
and the wire subjects in docs/protocol.md, checked against the code both ways — so a point, an API or a
subject added, renamed or removed without its documentation fails here."""

from __future__ import annotations

import re
from pathlib import Path

from jetsched.bus.crashpoints import POINTS
from jetsched.core import bounds, states, subjects
from jetsched.core import workflows as wf
from jetsched.devkit.stack import Stack
from jetsched.intake import api, doctor_api
from jetsched.intake.service import IntakeService

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
#: A table row's first cell, e.g. "| `timer.due.before_cas` / `.after_cas` |".
FIRST_CELL = re.compile(r"^\| ([^|]+) \|", re.M)
TICKED = re.compile(r"`([^`]+)`")
API_NAME = re.compile(r"^(stats|(jobs|dead|queues|workers|doctor|workflows)\.[a-z_]+)$")
SAMPLE = {"<capability>": "email.send", "<session>": "s-1", "<job id>": "01KBZ3R6X9T2M0Q7D5W8C4N1HE"}


def documented_crash_points() -> set[str]:
    """Crash points in the crash-window table; `.after_cas` after a full name shares its prefix."""
    found: set[str] = set()
    for cell in FIRST_CELL.findall(ARCHITECTURE):
        previous = ""
        for name in TICKED.findall(cell):
            if name.startswith(".") and previous:
                name = previous.rsplit(".", 1)[0] + name
            if re.fullmatch(r"[a-z]+(\.[a-z_]+)+", name):
                found.add(name)
                previous = name
    return found


def test_every_crash_point_is_documented_and_every_documented_one_exists() -> None:
    documented = documented_crash_points()
    assert sorted(POINTS - documented) == [], "crash points missing from docs/architecture.md"
    assert sorted(documented - POINTS) == [], "documented crash points the code does not have"


def documented_apis() -> set[str]:
    """`jetsched.api.<name>` names in protocol.md's API tables (schedules' verbs under `schedules.`)."""
    names: set[str] = set()
    header, previous = "", ""
    for line in PROTOCOL.splitlines():
        cell = FIRST_CELL.match(line)
        if cell is not None and not previous.startswith("|"):
            header = cell.group(1).strip()  # a table's first row names its columns
        elif cell is not None:
            for name in TICKED.findall(cell.group(1)):
                if header == "verb":  # the schedules API's table
                    names.add(f"schedules.{name}")
                elif API_NAME.match(name):
                    names.add(name)
        previous = line
    return names


async def test_every_control_api_is_documented_and_every_documented_one_answers(stack: Stack) -> None:
    (intake,) = stack.of(IntakeService)
    assert isinstance(intake, IntakeService)
    assert intake.api is not None
    served = set(intake.api.routes)
    documented = documented_apis()
    assert sorted(served - documented) == [], "APIs missing from docs/protocol.md"
    assert sorted(documented - served) == [], "documented APIs intake does not serve"


def template(subject: str) -> re.Pattern[str]:
    """A documented subject as a pattern: a capability or API name may span tokens, others are one."""
    parts = re.split(r"(<[^>]+>)", subject)
    return re.compile(
        "".join(
            (".+" if p in ("<capability>", "<name>") else "[^.]+") if p.startswith("<") else re.escape(p)
            for p in parts
        )
    )


def test_every_wire_subject_is_documented_and_every_documented_one_is_used() -> None:
    documented = {
        d
        for d in re.findall(r"`(jetsched\.[^`]+)`", PROTOCOL)
        if re.fullmatch(r"[a-z.]+|[a-z.]*(<[a-z ]+>[a-z.]*)+", d)
    }
    capability, session, job_id = SAMPLE["<capability>"], SAMPLE["<session>"], SAMPLE["<job id>"]
    used = {
        subjects.submit(capability),
        subjects.batch(capability),
        subjects.WORKFLOW_SUBMIT,
        subjects.api("jobs.get"),
        subjects.api("schedules.create"),
        subjects.work(capability, session),
        subjects.outcome(capability, job_id),
        subjects.reported(subjects.outcome(capability, job_id)),
        subjects.progress(job_id),
        subjects.heartbeat(session),
        subjects.control(session),
        subjects.changed(job_id),
        subjects.history(job_id, "succeeded", capability),
    }
    patterns = {d: template(d) for d in documented if "<" in d or d == subjects.WORKFLOW_SUBMIT}
    for subject in used:
        assert any(p.fullmatch(subject) for p in patterns.values()), f"{subject}: not in docs/protocol.md"
    for text, pattern in patterns.items():
        assert any(pattern.fullmatch(s) for s in used), f"docs/protocol.md names {text}, which nothing uses"


def size(n: int) -> str:
    """A byte count as the documents write it: 256 B, 2 KiB, 64 KiB, 64 MiB."""
    if n % 2**20 == 0:
        return f"{n // 2**20} MiB"
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def test_documented_limits_are_the_code_s() -> None:
    """The Limits table's figures, rendered from the constants that enforce them."""
    rendered = [
        f"nesting ≤ {bounds.MAX_JSON_DEPTH} levels",
        f"`tracestate` ≤ {size(bounds.MAX_TRACESTATE_BYTES)}, `baggage` ≤ {size(bounds.MAX_BAGGAGE_BYTES)}",
        f"error `type` ≤ {size(bounds.MAX_ERROR_TYPE_BYTES)}, `message` ≤ {size(bounds.MAX_ERROR_MESSAGE_BYTES)}",
        f"`traceback` ≤ {size(bounds.MAX_TRACEBACK_BYTES)} (its end)",
        f"`result` ≤ {size(bounds.MAX_RESULT_BYTES)} of JSON",
        f"| releases of one job | {states.MAX_RELEASES}, then it is dead",
        f"a page stops at {api.MAX_PAGE_RECORDS} records or {size(api.MAX_REPLY_BYTES)} of records",
        f"(at most {doctor_api.MAX_LISTED})",
        f"| workflow map step | ≤ {wf.MAX_MAP_ITEMS:,} elements",
        f"job records ≤ {size(wf.MAX_MAP_BYTES)} together as created (else `MapTooLarge`)",
    ]
    for text in rendered:
        assert text in PROTOCOL, f"docs/protocol.md does not say {text!r}"
