"""The CLI reads what people type: global options anywhere, compound durations, JSON checked at once."""

from __future__ import annotations

import pytest

from jetsched.cli.__main__ import build_parser
from jetsched.cli.durations import BadValue, parse_duration


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
