"""What `NatsAuth` hands nats-py: the kind of credentials file decides, and an nkey names the inbox."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import nkeys
import pytest

from jetsched.bus.auth import NatsAuth, public_key
from jetsched.core import permissions

if TYPE_CHECKING:
    from pathlib import Path


def seed() -> str:
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)).decode()


def test_seed_file_signs_and_names_the_inbox(tmp_path: Path) -> None:
    """An nkey seed file signs the nonce, and replies come to the inbox named after its public key."""
    path = tmp_path / "client.nk"
    path.write_text(seed() + "\n")
    options = NatsAuth(creds=str(path)).options()
    key = public_key(path.read_text())
    assert key.startswith("U")
    assert options == {"nkeys_seed": str(path), "inbox_prefix": permissions.inbox(key)}


def test_creds_file_is_a_jwt_user(tmp_path: Path) -> None:
    """A `.creds` file (JWT plus seed) goes to nats-py as user credentials, with the default inbox."""
    path = tmp_path / "user.creds"
    path.write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed()}\n------END USER NKEY SEED------\n"
    )
    assert NatsAuth(creds=str(path)).options() == {"user_credentials": str(path)}


def test_not_a_seed(tmp_path: Path) -> None:
    """A file without a user seed is refused before connecting."""
    path = tmp_path / "junk.nk"
    path.write_text("hello\n")
    with pytest.raises(ValueError, match="no user nkey seed"):
        NatsAuth(creds=str(path)).options()


def test_anonymous_by_default() -> None:
    """No files, no options: a plain anonymous connection."""
    assert NatsAuth().options() == {}
