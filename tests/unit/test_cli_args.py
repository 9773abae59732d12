"""The CLI reads what people type: global options anywhere, compound durations, JSON checked at once."""

from __future__ import annotations

import argparse

import pytest

from jetsched.cli.__main__ import build_parser
from jetsched.cli.durations import BadValue, parse_duration
from jetsched.cli.render import fields, print_job, span, when


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("1h 15m", 4500.0), ("250ms", 0.25), ("2", 2.0), ("1.5h", 5400.0), ("1d2h", 93600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1m30x", "m", "-5s", "1 minute"])
def test_not_durations(text: str) -> None:
    with pytest.raises(BadValue, match="not a duration"):
        parse_duration(text)


def test_global_options_after_the_subcommand() -> None:
    args = build_parser().parse_args(["status", "01J", "--json", "--nats", "nats://h:4222"])
    assert (args.json, args.nats) == (True, "nats://h:4222")


def test_global_options_before_the_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--json", "--nats", "nats://h:4222", "status", "01J"])
    assert (args.json, args.nats) == (True, "nats://h:4222")


def test_global_options_after_a_nested_subcommand() -> None:
    args = build_parser().parse_args(["schedules", "list", "--json", "--request-timeout", "1m30s"])
    assert (args.json, args.request_timeout) == (True, 90.0)


def test_a_bad_payload_is_refused_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["submit", "email.send", "--payload", "{to: 1}"])
    assert exit_.value.code == 2
    assert "argument --payload: not JSON" in capsys.readouterr().err


def test_times_read_absolute_and_relative() -> None:
    now = 1_795_946_000_000
    assert when(now - 200_000, now) == "2026-11-29 09:50:00.000Z (3m 20s ago)"
    assert when(now + 7_500_000, now).endswith("(in 2h 5m)")
    assert when(None) == "-"
    assert [span(ms) for ms in (850, 12_000, 3_600_000, 93_600_000)] == ["850ms", "12s", "1h", "1d 2h"]


def test_flat_replies_print_json_values() -> None:
    assert fields({"id": "01J", "duplicate": False, "settings": {"paused": True, "max_running": None}}) == (
        'id: 01J  duplicate: false  settings: {"paused":true,"max_running":null}'
    )


def test_every_argument_says_what_it_is() -> None:
    """`--help` documents every argument of every command (nested ones too)."""
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help is None and action.dest != "help":
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "jetsched")
    assert not missing, missing


def test_status_names_the_worker_of_every_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    """`jetsched status` lists each attempt with the worker that ran it and how it ended."""
    error = {"attempt": 1, "at_ms": 1, "kind": "error", "type": "OSError", "message": "refused"}
    job = {
        "id": "01KBZ3R6X9T2M0Q7D5W8C4N1HE",
        "capability": "email.send",
        "state": "succeeded",
        "priority": 5,
        "attempt": 2,
        "max_attempts": 3,
        "errors": [{**error, "worker": "host-a", "session": "s1", "claimed_at_ms": 0}],
        "last_run": {"attempt": 2, "worker": "host-b", "session": "s2", "claimed_at_ms": 2},
    }
    print_job({"job": job, "last_error": None, "waiting": None})
    attempts = [line for line in capsys.readouterr().out.splitlines() if "attempt" in line][1:]
    assert "1  on host-a (session s1)" in attempts[0]
    assert attempts[0].endswith("error")
    assert "2  on host-b (session s2)" in attempts[1]
    assert attempts[1].endswith("succeeded")


def test_dashboard_max_streams() -> None:
    """`--max-streams` takes a positive count (the dashboard's default when absent); nonsense is refused."""
    assert build_parser().parse_args(["dashboard", "--max-streams", "5"]).max_streams == 5
    assert build_parser().parse_args(["dashboard"]).max_streams is None
    for text in ("0", "-1", "many"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["dashboard", "--max-streams", text])
