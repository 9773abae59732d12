"""A hostile message, what the attacker knows, and the helpers that shape bodies field by field.

Every subject a client or worker can reach (docs/protocol.md) is a *family*; `bodies.py` shapes each
family's body (each field valid, or hostile with some probability, plus unknown and missing fields) and
`stream.py` adds raw bytes, hostile headers and sizes at and around the server's `max_payload`.

`Targets` is what an attacker can learn from the outside: the live worker's session (its heartbeats are
plain NATS), ids of jobs it submitted or listed. Messages never take the harness's own yardsticks out of the
game by means that NATS permissions, not services, are meant to stop: no `drain` to the live worker, no
heartbeat impersonating it or announcing the control capability, no API call on the control capability's
queue or on control jobs except reads. Everything else is fair.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import hostile

CONTROL_CAPABILITY = "probe.sleep"
FUZZ_CAPABILITIES = ("fuzz.a", "fuzz.b", "fuzz-c_1", "fuzz.deep.x.y.z")
#: Subject tokens a capability or session may be replaced by. No space, tab, CR or LF (the client refuses
#: those), but vertical tab, form feed and other characters some parsers take for whitespace.
HOSTILE_TOKENS = (
    "*", ">", "fuzz.*", "fuzz.>", "a..b", "x" * 129, "x" * 300, "é", "🙂", "\x7f", "$SYS", "_INBOX",
    "fuzz." + "a." * 100 + "b", "a\x0bb", "\x0c", "a\x1cb", "a\x85b", "a\u2028b",
)  # fmt: skip
API_NAMES = (
    "jobs.get", "jobs.list", "jobs.cancel", "dead.list", "dead.retry", "dead.purge", "stats", "queues.pause",
    "queues.resume", "queues.configure", "queues.list", "workers.list", "workers.drain", "schedules.create",
    "schedules.get", "schedules.list", "schedules.update", "schedules.pause", "schedules.resume",
    "schedules.delete", "schedules.preview", "workflows.get", "workflows.list", "workflows.cancel",
    "workflows.retry",
)  # fmt: skip
UNKNOWN_API_NAMES = (
    "jobs",
    "jobs.get.x",
    "JOBS.GET",
    "schedules",
    "schedules.nope",
    "x" * 300,
    "*",
    ">",
    "é",
)
#: Prefixes intake answers on: a request there must get a reply or a structured error.
ANSWERED = ("jetsched.submit.", "jetsched.batch.", "jetsched.api.", "jetsched.workflow.")
HEADER_BLOCK_OVERHEAD = len(b"NATS/1.0\r\n") + len(b"\r\n")


@dataclass(frozen=True, slots=True)
class Message:
    """One message to send. `family` names its subject's kind, `attack` the hostile layers applied."""

    family: str
    subject: str
    body: bytes
    headers: dict[str, str] | None = None
    request: bool = True
    attack: tuple[str, ...] = ()
    #: Job ids this message may legitimately cancel, purge or revive (exempt from the lost-job check).
    touches: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes nats-server counts against `max_payload`: the header block plus the body."""
        return len(self.body) + header_bytes(self.headers)

    @property
    def answered(self) -> bool:
        """True when a service must answer it (a request on an intake subject that NATS can carry)."""
        tokens = self.subject.split(".")
        return self.request and self.subject.startswith(ANSWERED) and all(tokens) and len(tokens) > 2


@dataclass
class Targets:
    """What the attacker knows about the live system."""

    max_payload: int = 1 << 20
    session: str | None = None
    job_ids: list[str] = field(default_factory=list)
    control_ids: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)


def header_bytes(headers: dict[str, str] | None) -> int:
    if not headers:
        return 0
    return HEADER_BLOCK_OVERHEAD + sum(
        len(k.strip().encode()) + 2 + len(v.strip().encode()) + 2 for k, v in headers.items()
    )


Gen = Callable[[random.Random], Any]


def one_of(*values: Any) -> Gen:
    return lambda rng: rng.choice(values)


def ascii_text(lo: int, hi: int) -> Gen:
    return lambda rng: "".join(rng.choice(string.ascii_letters + "-_=") for _ in range(rng.randint(lo, hi)))


def capability(rng: random.Random) -> str:
    return rng.choice(FUZZ_CAPABILITIES) if rng.random() < 0.85 else rng.choice(HOSTILE_TOKENS)


def session_token(rng: random.Random) -> str:
    return "fz" + "".join(rng.choice("0123456789abcdefghjkmnpqrstvwxyz") for _ in range(10))


def shape(
    rng: random.Random, fields: dict[str, tuple[Gen, Gen]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A body with each field valid or hostile; sometimes a required field missing or an unknown one added."""
    spoil = rng.random() < 0.7
    body: dict[str, Any] = {}
    for name, (valid, bad) in fields.items():
        if name not in required and rng.random() < 0.5:
            continue
        if spoil and rng.random() < 0.25:
            roll = rng.random()
            if roll < 0.1 and name in required:
                continue
            body[name] = bad(rng) if roll < 0.9 else hostile.anything(rng)
        else:
            body[name] = valid(rng)
    if spoil and rng.random() < 0.1:
        body[rng.choice(("extra", "Priority", "payload ", "__proto__", "id\x00"))] = hostile.anything(rng, 1)
    return body


def any_id(rng: random.Random, known: list[str]) -> str:
    if known and rng.random() < 0.5:
        return rng.choice(known)
    return rng.choice(hostile.IDS)
