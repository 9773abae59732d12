"""Network namespaces for fault tests on one machine: hosts on bridges, cut and healed by link or filter.

Every process under test gets a *host*: its own network namespace with one veth end (renamed `eth0`),
whose other end sits on its zone's bridge in the root namespace. Each zone bridge reaches a core bridge
through an uplink veth pair; the harness itself (load generator, checker) lives on the core bridge in a
control host. Addresses (198.18.0.0/15, reserved for network tests) exist only inside the namespaces, so
no test traffic can leave the machine, and nothing outside the namespaces is ever a target.

    core bridge ─┬─ ctl host (198.18.0.1)
                 ├─ uplink ─ zone-1 bridge ─┬─ host 198.18.1.1 (nats node)
                 │                         └─ host 198.18.1.2 … (services, workers)
                 └─ uplink ─ zone-2 bridge ─ …

Cuts: `cut_zone` downs a zone's uplink (the zone still talks to itself, as a datacenter cut off from the
others does); `cut_host` downs one host's link; `drop_outbound` installs iptables rules in every host of a
zone so it receives but cannot send (one way). All names share a per-run prefix `jz<pid><n>`: a run
removes leftovers of runs whose process is gone, and its own in `close()`.

The harness enters the control host with `inside()` (setns on the calling thread, as `ip netns exec`
does for a process); link commands always run in the root namespace through a descriptor opened at
start, wherever the calling thread is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import debian

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLONE_NEWNET = 0x40000000
FAMILY = "jz"
_LEFTOVER = re.compile(rf"^{FAMILY}([0-9a-f]{{6}})\d")
_runs = 0


class NetnsUnavailable(RuntimeError):
    """This machine cannot build zones (not root, no `ip netns`, no iptables)."""


def require() -> None:
    """Fail loudly unless namespaces can be built here; install iptables once if missing (idempotent)."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("zone tests need root (network namespaces); CI runs them as root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("zone tests need iproute2 (`ip netns`)")
    try:
        debian.require("iptables", "iptables")
    except debian.ToolUnavailable as exc:
        raise NetnsUnavailable(str(exc)) from exc


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the calling thread (and the sockets it opens) in `namespace`; back where it was afterwards."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(back)
        os.close(target)
        os.close(back)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@dataclass(frozen=True, slots=True)
class Host:
    namespace: str
    address: str
    zone: int
    #: The root-namespace end of its veth: down = the host is cut off.
    link: str


class Net:
    """The bridges, uplinks and hosts of one run. Build it from the root namespace."""

    def __init__(self) -> None:
        global _runs
        _runs += 1
        self.prefix = f"{FAMILY}{os.getpid() % 0x1000000:06x}{_runs % 10}"
        self._root = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self.hosts: dict[str, Host] = {}
        self._zones: set[int] = set()
        self._filtered: set[str] = set()
        self.core = f"{self.prefix}c"

    # -- commands -------------------------------------------------------------------------------------

    def root(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the root namespace (whichever namespace this thread is in)."""
        return subprocess.run(
            ["nsenter", f"--net=/proc/self/fd/{self._root}", *argv],
            pass_fds=(self._root,),
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def ip(self, *args: str, check: bool = True) -> None:
        self.root("ip", *args, check=check)

    def exec_argv(self, host: Host, argv: list[str]) -> list[str]:
        """`argv` run inside `host` (`ip netns exec` execs in place: the pid is the program's own)."""
        return ["ip", "netns", "exec", host.namespace, *argv]

    # -- building -------------------------------------------------------------------------------------

    def build(self) -> Net:
        self.remove_leftovers()
        self._bridge(self.core)
        return self

    def _bridge(self, name: str) -> None:
        self.ip("link", "add", name, "type", "bridge")
        self.ip("link", "set", name, "up")

    def zone(self, zone: int) -> None:
        """A zone bridge with its uplink to the core bridge."""
        bridge, inner, outer = f"{self.prefix}b{zone}", f"{self.prefix}u{zone}", f"{self.prefix}v{zone}"
        self._bridge(bridge)
        self.ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        self.ip("link", "set", inner, "master", bridge)
        self.ip("link", "set", outer, "master", self.core)
        self.ip("link", "set", inner, "up")
        self.ip("link", "set", outer, "up")
        self._zones.add(zone)

    def host(self, name: str, zone: int, index: int) -> Host:
        """A namespace at 198.18.<zone>.<index> on its zone's bridge (zone 0: the core bridge)."""
        namespace = f"{self.prefix}-{name}"
        number = len(self.hosts)
        outer, inner = f"{self.prefix}h{number}", f"{self.prefix}g{number}"
        bridge = self.core if zone == 0 else f"{self.prefix}b{zone}"
        address = f"198.18.{zone}.{index}"
        self.ip("netns", "add", namespace)
        self.ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self.ip("link", "set", outer, "master", bridge)
        self.ip("link", "set", outer, "up")
        self.ip("link", "set", inner, "netns", namespace)
        self.ip("-n", namespace, "link", "set", inner, "name", "eth0")
        self.ip("-n", namespace, "addr", "add", f"{address}/16", "dev", "eth0")
        self.ip("-n", namespace, "link", "set", "eth0", "up")
        self.ip("-n", namespace, "link", "set", "lo", "up")
        self.hosts[name] = host = Host(namespace, address, zone, outer)
        return host

    # -- faults ---------------------------------------------------------------------------------------

    def cut_zone(self, zone: int, cut: bool = True) -> None:
        """Cut a zone off from the others and from the control host, both ways (or heal it)."""
        self.ip("link", "set", f"{self.prefix}v{zone}", "down" if cut else "up")

    def cut_host(self, host: Host, cut: bool = True) -> None:
        self.ip("link", "set", host.link, "down" if cut else "up")

    def drop_outbound(self, zone: int, drop: bool = True) -> None:
        """One-way cut: the zone's hosts still receive from outside the zone but send nothing out of it."""
        for host in self.hosts.values():
            if host.zone != zone:
                continue
            iptables = ["ip", "netns", "exec", host.namespace, "iptables"]
            if drop:
                self.root(*iptables, "-A", "OUTPUT", "-d", f"198.18.{zone}.0/24", "-j", "ACCEPT")
                self.root(*iptables, "-A", "OUTPUT", "-d", "198.18.0.0/16", "-j", "DROP")
                self._filtered.add(host.namespace)
            else:
                self.root(*iptables, "-F", "OUTPUT")
                self._filtered.discard(host.namespace)

    # -- cleaning up ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove this run's namespaces and links (processes in them must be stopped first)."""
        self._remove(lambda name: name.startswith(self.prefix))
        os.close(self._root)

    def remove_leftovers(self) -> None:
        """Remove namespaces and links of earlier runs whose process is gone, killing what they still run."""

        def stale(name: str) -> bool:
            match = _LEFTOVER.match(name)
            if match is None:
                return False
            pid = int(match.group(1), 16)
            return pid != os.getpid() % 0x1000000 and not _alive(pid)

        self._remove(stale)

    def _remove(self, doomed: Callable[[str], bool]) -> None:
        listing = self.root("ip", "netns", "list").stdout.split()
        for namespace in (n for n in listing if doomed(n)):
            for pid in self.root("ip", "netns", "pids", namespace, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            self.ip("netns", "del", namespace, check=False)
        links = self.root("ip", "-o", "link", "show").stdout.splitlines()
        names = [line.split(":")[1].strip().split("@")[0] for line in links if line.count(":") >= 2]
        for link in (n for n in names if doomed(n)):
            self.ip("link", "del", link, check=False)
