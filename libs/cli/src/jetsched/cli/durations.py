"""Human durations for the CLI: `250ms`, `5s`, `2m`, `1h`, `1d`, compounds like `1m30s` or `1h 15m`,
or plain seconds."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_PLAIN = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_COMPOUND = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$")


class BadValue(argparse.ArgumentTypeError, ValueError):
    """A command-line value that cannot be read: argparse prints its message as the error."""


def parse_duration(text: str) -> float:
    """Seconds in `text`; raises ValueError for anything else."""
    if _PLAIN.match(text):
        return float(text)
    if not _COMPOUND.match(text):
        raise BadValue(f"not a duration: {text!r} (use e.g. 500ms, 5s, 2m, 1m30s, 1h)")
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))


def parse_json(text: str) -> Any:
    """A JSON value given on the command line; ValueError says where it stops being JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadValue(f"not JSON: {exc.msg} at character {exc.pos} of {text[:60]!r}") from None
