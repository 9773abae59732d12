"""A 3-node JetStream cluster on loopback, from the deploy/nats/cluster-*.conf files themselves.

The deploy files name hosts (`jetsched-nats-N`) and fixed ports; for a test on one machine each host
becomes 127.0.0.1, each port a free one, each store a temporary directory — everything else (sync
interval, cluster name, limits) is exactly what is deployed. The deployed files include the users from
`auth.conf`; here it names none, so tests connect anonymously (test_security.py covers the users).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .nats_server import NatsServer, free_port

if TYPE_CHECKING:
    from pathlib import Path

_PORT = re.compile(r"(?<=[:\s])(4\d{3}|6\d{3}|8\d{3})\b")
_HOST = re.compile(r"jetsched-nats-\d(?=:)")
_LISTEN_ANY = re.compile(r"0\.0\.0\.0")
_STORE = re.compile(r"store_dir:\s*\S+")


def localize(text: str, ports: dict[str, str], store_dir: Path) -> str:
    text = _PORT.sub(lambda m: ports.setdefault(m.group(1), str(free_port())), text)
    text = _HOST.sub("127.0.0.1", text)
    text = _LISTEN_ANY.sub("127.0.0.1", text)
    return _STORE.sub(f'store_dir: "{store_dir}"', text)


class NatsCluster:
    """The deployed cluster configuration, run locally; `urls` lists every node's client URL."""

    def __init__(self, configs: list[Path], work_dir: Path) -> None:
        ports: dict[str, str] = {}
        (work_dir / "auth.conf").write_text("# no users: anyone may connect\n")
        self.nodes: list[NatsServer] = []
        for config in configs:
            store = work_dir / config.stem
            local = work_dir / config.name
            local.write_text(localize(config.read_text(), ports, store))
            self.nodes.append(NatsServer(store, config=local))

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
