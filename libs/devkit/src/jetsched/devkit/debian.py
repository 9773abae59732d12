"""Debian tools the tests drive for real (iptables, Prometheus, Chromium), installed on first use.

CI runs as root on a Debian machine that reaches the package mirrors, so a missing tool is installed
there and then (idempotent, a minute at most) instead of being skipped: a test that cannot get its tool
fails and says why.
"""

from __future__ import annotations

import shutil
import subprocess


class ToolUnavailable(RuntimeError):
    """A command the tests need is missing and could not be installed."""


def require(command: str, package: str) -> str:
    """The path of `command`, installing Debian `package` (without recommends) if it is missing."""
    found = shutil.which(command)
    if found is not None:
        return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            check=True,
            capture_output=True,
            timeout=600,
            env=env,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolUnavailable(
            f"{command} is missing and Debian package {package} could not be installed: {exc}"
        ) from exc
    found = shutil.which(command)
    if found is None:
        raise ToolUnavailable(f"{command} is missing after installing Debian package {package}")
    return found
