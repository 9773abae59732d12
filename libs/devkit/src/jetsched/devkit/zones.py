"""Three zones on one machine: the deployed 3-node cluster, every service and workers, in namespaces.

Zone N runs node N of the cluster from `deploy/nats/cluster-N.conf` — only its host names, listen
addresses and store directory are rewritten (`zone_config`), so the deployed settings (R3 needs three
nodes; `sync_interval: always`; ports; limits) are what is tested — plus a replica of each service and
`workers` worker processes, each in its own host (`netns.Net`), so that a zone, a node, one service or
one worker can be cut off, killed or paused alone. A process's NATS URL lists all three nodes, its own
zone's first.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import procs
from .nats_server import binary

if TYPE_CHECKING:
    from pathlib import Path

    from .netns import Host, Net

ZONES = (1, 2, 3)
CONTROL = "ctl"
NODE_INDEX = 1
SERVICE_INDEX = {name: 2 + n for n, name in enumerate(procs.SERVICES)}
WORKER_INDEX = 10

_ROUTE_HOST = re.compile(r"jetsched-nats-(\d)(?=:)")
_STORE = re.compile(r"store_dir:\s*\S+")
_HTTP_PORT = re.compile(r"^http:\s*[^:\s]+:(\d+)", re.MULTILINE)
_CLIENT_PORT = re.compile(r"^listen:\s*[^:\s]+:(\d+)", re.MULTILINE)


def address(zone: int, index: int = NODE_INDEX) -> str:
    return f"198.18.{zone}.{index}"


def zone_config(text: str, zone: int, store_dir: Path) -> str:
    """A deployed node config for zone `zone`: hosts → zone addresses, monitoring bound to the zone's
    address, the store in `store_dir`; every other setting as deployed."""
    if not re.search(r"sync_interval:\s*always", text):
        raise ValueError("the deployed cluster config no longer says `sync_interval: always`")
    here = address(zone)
    text = _ROUTE_HOST.sub(lambda m: address(int(m.group(1))), text)
    text = text.replace("0.0.0.0", here)
    text = _HTTP_PORT.sub(lambda m: f'http: "{here}:{m.group(1)}"', text)
    return _STORE.sub(f'store_dir: "{store_dir}"', text)


@dataclass
class Member:
    """One process of the zones: what it is, where it runs, and its process."""

    role: str
    zone: int
    host: Host
    proc: procs.Proc

    @property
    def name(self) -> str:
        return self.host.namespace.split("-", 1)[1]

    def pause(self, paused: bool = True) -> None:
        """SIGSTOP / SIGCONT (a hung machine, a long GC pause)."""
        if self.proc.pid is not None and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)


class Zones:
    """The processes of three zones on `net`. `start()` runs them; `stop()` kills them all."""

    def __init__(
        self,
        net: Net,
        configs: list[Path],
        work_dir: Path,
        *,
        workers: int = 2,
        worker_module: str,
        worker_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.net = net
        self.work_dir = work_dir
        self.env = env or {}
        self.members: list[Member] = []
        self.client_ports: dict[int, int] = {}
        self.http_ports: dict[int, int] = {}
        net.build()
        self.control = net.host(CONTROL, 0, 1)
        for zone, config in zip(ZONES, sorted(configs), strict=True):
            net.zone(zone)
            text = zone_config(config.read_text(), zone, work_dir / f"store-{zone}")
            self.client_ports[zone] = int(_CLIENT_PORT.search(text).group(1))  # type: ignore[union-attr]
            self.http_ports[zone] = int(_HTTP_PORT.search(config.read_text()).group(1))  # type: ignore[union-attr]
            local = work_dir / f"nats-{zone}.conf"
            local.write_text(text)
            # The deployed configs include the users (docs/security.md); the zones run without them.
            (work_dir / "auth.conf").write_text("# no users: anyone may connect\n")
            self._member("nats", zone, NODE_INDEX, [binary(), "-c", str(local)], {"GOMAXPROCS": "1"})
        for zone in ZONES:
            for name in procs.SERVICES:
                argv = [sys.executable, "-m", f"jetsched.{name}", "--nats", self.url(zone), "--replicas", "3"]
                self._member(name, zone, SERVICE_INDEX[name], argv)
            for n in range(workers):
                argv = [sys.executable, "-m", "jetsched.cli", "--nats", self.url(zone), "worker"]
                self._member("worker", zone, WORKER_INDEX + n, [*argv, worker_module, *worker_args])

    def _member(
        self, role: str, zone: int, index: int, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        suffix = role if role != "worker" else f"w{index - WORKER_INDEX}"
        name = f"z{zone}-{suffix}"
        host = self.net.host(name, zone, index)
        environ = {**self.env, **(env or {}), "JETSCHED_ZONE_HOST": name}
        proc = procs.Proc(name, self.net.exec_argv(host, argv), self.work_dir / f"{name}.log", environ)
        self.members.append(Member(role, zone, host, proc))

    def url(self, zone: int) -> str:
        """Every node's client URL, `zone`'s own first."""
        order = [zone, *(z for z in ZONES if z != zone)]
        return ",".join(self.node_url(z) for z in order)

    def node_url(self, zone: int) -> str:
        return f"nats://{address(zone)}:{self.client_ports[zone]}"

    def monitor_url(self, zone: int, path: str) -> str:
        return f"http://{address(zone)}:{self.http_ports[zone]}/{path}"

    def node(self, zone: int) -> Member:
        return next(m for m in self.members if m.role == "nats" and m.zone == zone)

    def of(self, role: str | None = None, zone: int | None = None) -> list[Member]:
        return [
            m for m in self.members if (role is None or m.role == role) and (zone is None or m.zone == zone)
        ]

    def by_address(self, ip: str) -> Member | None:
        return next((m for m in self.members if m.host.address == ip), None)

    def start_nodes(self, timeout: float = 30.0) -> None:
        for member in self.of("nats"):
            member.proc.start()
        for member in self.of("nats"):
            self.wait_log(member, "Server is ready", timeout)

    def start_rest(self) -> None:
        for member in self.members:
            if member.role != "nats":
                member.proc.start()

    def wait_log(self, member: Member, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if member.proc.log_path.exists() and text in member.proc.log_path.read_text(errors="replace"):
                return
            if not member.proc.alive():
                raise RuntimeError(f"{member.name} exited: see {member.proc.log_path}")
            time.sleep(0.05)
        raise TimeoutError(
            f"{member.name} did not log {text!r} within {timeout}s: see {member.proc.log_path}"
        )

    def stop(self) -> None:
        """`kill -9` everything still running (the checks are done; nothing needs a clean exit)."""
        for member in self.members:
            member.proc.kill()
