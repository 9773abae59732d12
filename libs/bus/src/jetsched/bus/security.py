"""A directory of NATS identities and the server configuration that lets each do only its job.

`init(directory)` writes one nkey seed file per role (`client.nk`, `operator.nk`, `intake.nk`, …,
`worker-<name>.nk`), an include-able `auth.conf` (the server's `authorization` block: every public key
with its permissions from `jetsched.core.permissions`) and a standalone `nats-server.conf` that includes
it. The seed files are the only state: `add_worker` writes one more and rewrites `auth.conf` from the
seeds present, so removing a file and rewriting revokes that identity (the server rereads its
configuration, includes too, on SIGHUP). Why static nkey users: docs/security.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nkeys

from jetsched.core import permissions, subjects

from . import topology
from .auth import public_key

if TYPE_CHECKING:
    from pathlib import Path

    from jetsched.core.permissions import Permissions

AUTH_CONF = "auth.conf"
SERVER_CONF = "nats-server.conf"
SEED_SUFFIX = ".nk"
WORKER_PREFIX = "worker-"
ROLES = ("client", "operator", *permissions.SERVICES)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """Files for the server's `tls` block; `verify`: clients must present a certificate from `ca`."""

    cert: Path
    key: Path
    ca: Path
    verify: bool = True


def creds_path(directory: Path, role: str) -> Path:
    """The seed file of `role` (`client`, a service name, or `worker-<name>`)."""
    return directory / f"{role}{SEED_SUFFIX}"


def role_permissions(role: str, inbox: str) -> Permissions:
    if role == "client":
        return permissions.client(inbox)
    if role == "operator":
        return permissions.operator(inbox)
    if role in permissions.SERVICES:
        streams = topology.streams(1, partitions=subjects.MAX_RECORD_PARTITIONS)
        return permissions.service(role, inbox, tuple(s.name for s in streams if s.name))
    if role.startswith(WORKER_PREFIX):
        return permissions.worker(role.removeprefix(WORKER_PREFIX), inbox)
    raise ValueError(f"unknown role {role!r}")


def init(
    directory: Path,
    workers: tuple[str, ...] = (),
    port: int = 4222,
    store_dir: Path | None = None,
    tls: ServerTls | None = None,
    monitor_port: int | None = 8222,
) -> None:
    """Write seeds for every role and worker (keeping seeds that exist), `auth.conf` and `nats-server.conf`.

    `port` -1 lets the server pick a free one; `monitor_port` None turns monitoring off.

    Raises:
        ValueError: a worker name that cannot be a session id.
    """
    for name in workers:
        permissions.worker(name, "")  # validates the name before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    for role in (*ROLES, *(WORKER_PREFIX + name for name in workers)):
        _ensure_seed(creds_path(directory, role))
    write_auth(directory)
    (directory / SERVER_CONF).write_text(
        _server_conf(port, store_dir or directory / "jetstream", tls, monitor_port)
    )


def add_worker(directory: Path, name: str) -> Path:
    """Write worker identity `name`'s seed (if new) and rewrite `auth.conf`; returns the seed file."""
    permissions.worker(name, "")
    if not (directory / AUTH_CONF).exists():
        raise FileNotFoundError(f"{directory / AUTH_CONF} not found: run `jetsched security init` first")
    path = creds_path(directory, WORKER_PREFIX + name)
    _ensure_seed(path)
    write_auth(directory)
    return path


def write_auth(directory: Path) -> None:
    """Rewrite `auth.conf` from the seed files in `directory`."""
    users = []
    for seed in sorted(directory.glob(f"*{SEED_SUFFIX}")):
        key = public_key(seed.read_text())
        users.append(_user(seed.stem, key, role_permissions(seed.stem, permissions.inbox(key))))
    text = "# Written by `jetsched security`; rewritten by `add-worker`. Do not edit.\n"
    text += "authorization {\n  users: [\n" + "".join(users) + "  ]\n}\n"
    tmp = directory / f"{AUTH_CONF}.tmp"
    tmp.write_text(text)
    tmp.replace(directory / AUTH_CONF)  # a reload never reads half a file


def _ensure_seed(path: Path) -> None:
    if path.exists():
        return
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(seed) + b"\n")


def _user(role: str, key: str, grant: Permissions) -> str:
    def strings(items: tuple[str, ...]) -> str:
        return json.dumps(list(items))  # quoted: an unquoted `$JS…` would be a config variable

    lines = [
        f"    # {role}",
        "    {",
        f"      nkey: {key}",
        "      permissions: {",
        f"        publish: {{ allow: {strings(grant.publish)} }}",
        f"        subscribe: {{ allow: {strings(grant.subscribe)} }}",
    ]
    if grant.responses:
        lines.append("        allow_responses: true")
    lines += ["      }", "    }"]
    return "\n".join(lines) + "\n"


def _server_conf(port: int, store_dir: Path, tls: ServerTls | None, monitor_port: int | None) -> str:
    text = "# Written by `jetsched security init`: a standalone server with jetsched's users.\n"
    text += f"port: {port}\n"
    if monitor_port is not None:
        text += f"# Monitoring is unauthenticated: keep it on loopback.\nhttp: 127.0.0.1:{monitor_port}\n"
    text += f"jetstream {{\n  store_dir: {json.dumps(str(store_dir))}\n}}\ninclude {json.dumps(AUTH_CONF)}\n"
    if tls is not None:
        text += (
            "tls {\n"
            f"  cert_file: {json.dumps(str(tls.cert))}\n"
            f"  key_file: {json.dumps(str(tls.key))}\n"
            f"  ca_file: {json.dumps(str(tls.ca))}\n"
            f"  verify: {'true' if tls.verify else 'false'}\n"
            "}\n"
        )
    return text
