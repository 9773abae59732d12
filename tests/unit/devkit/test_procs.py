"""`jetsched dev`'s supervisor decisions: how long to wait before restarting a child, how to name its end."""

from __future__ import annotations

import pytest

from jetsched.devkit.procs import describe_exit, restart_delay


@pytest.mark.parametrize(
    ("previous_s", "uptime_s", "expected_s"),
    [
        (0.0, 0.1, 0.5),  # the first exit
        (0.5, 0.1, 1.0),  # dying again at once doubles the wait
        (4.0, 3.0, 8.0),
        (8.0, 0.1, 10.0),  # up to the cap
        (10.0, 0.1, 10.0),
        (10.0, 30.0, 0.5),  # a steady run starts over
    ],
)
def test_restart_delay(previous_s: float, uptime_s: float, expected_s: float) -> None:
    """0.5 s after a first exit or a steady run, doubling while the child keeps dying, at most 10 s."""
    assert restart_delay(previous_s, uptime_s, first_s=0.5, max_s=10.0, steady_s=30.0) == expected_s


@pytest.mark.parametrize(
    ("code", "text"), [(0, "exited with 0"), (1, "exited with 1"), (-9, "killed by SIGKILL")]
)
def test_describe_exit(code: int, text: str) -> None:
    """An exit code reads as such; a negative one names the signal that killed the process."""
    assert describe_exit(code) == text
