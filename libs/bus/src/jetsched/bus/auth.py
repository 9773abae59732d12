"""How a process proves who it is to NATS, and how it trusts the server: credentials and TLS.

One `NatsAuth` travels from flags or environment to `connect()`, which turns it into nats-py options. A
credentials file is either an nkey seed (`.nk`, what `jetsched security init` writes: one line `SU…`) or a
NATS `.creds` file (user JWT plus seed, for operator/JWT-based servers); the content decides, not the name.

A connection with an nkey seed takes its reply inbox from its public key (`permissions.inbox`), the one
inbox the generated permissions let it subscribe to.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nkeys

from jetsched.core import permissions

if TYPE_CHECKING:
    import argparse

_JWT_MARK = "-----BEGIN NATS USER JWT-----"


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """Credentials and TLS files; every field optional (the default is an anonymous plain connection).

    Args:
        creds: an nkey seed file or a NATS `.creds` file.
        tls_ca: CA bundle to verify the server with (turns TLS on).
        tls_cert: client certificate, for servers that verify clients (`verify: true`); with `tls_key`.
        tls_key: the client certificate's private key.
    """

    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls) -> NatsAuth:
        def env(name: str) -> str | None:
            return os.environ.get(f"JETSCHED_NATS_{name}") or None

        return cls(env("CREDS"), env("TLS_CA"), env("TLS_CERT"), env("TLS_KEY"))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NatsAuth:
        return cls(args.creds, args.tls_ca, args.tls_cert, args.tls_key)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's `connect`."""
        options: dict[str, Any] = {}
        if self.creds is not None:
            text = Path(self.creds).read_text()
            if _JWT_MARK in text:
                # A JWT setup's permissions are its operator's; they usually grant the default inbox.
                options["user_credentials"] = self.creds
            else:
                options["nkeys_seed"] = self.creds
                options["inbox_prefix"] = permissions.inbox(public_key(text))
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            options["tls"] = context
        return options


def public_key(text: str) -> str:
    """The public nkey of the user seed in `text` (an nkey seed file)."""
    seed = next((line.strip() for line in text.splitlines() if line.strip().startswith("SU")), None)
    if seed is None:
        raise ValueError("no user nkey seed (a line starting 'SU') in the credentials file")
    key_pair = nkeys.from_seed(bytearray(seed.encode()))
    try:
        return str(key_pair.public_key.decode())
    finally:
        key_pair.wipe()


def add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    """`--creds` and `--tls-ca/-cert/-key`, defaulting to their `JETSCHED_NATS_*` variables."""
    env = NatsAuth.from_env()
    parser.add_argument(
        "--creds", default=env.creds, help="nkey seed (.nk) or .creds file [JETSCHED_NATS_CREDS]"
    )
    parser.add_argument("--tls-ca", default=env.tls_ca, help="CA to verify the server [JETSCHED_NATS_TLS_CA]")
    parser.add_argument(
        "--tls-cert", default=env.tls_cert, help="client certificate [JETSCHED_NATS_TLS_CERT]"
    )
    parser.add_argument("--tls-key", default=env.tls_key, help="its private key [JETSCHED_NATS_TLS_KEY]")
