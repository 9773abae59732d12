"""The message stream: families by weight, then the raw-bytes, header and size layers on top.

`generate(rng, targets)` is the whole generator; `stream(seed, n, targets)` is the seeded sequence the
driver sends. Weights favour the request subjects (the ones that must be answered) and keep the expensive
messages (a body padded to `max_payload`) rare enough for ~2,000 messages a second on a small box.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from . import hostile
from .bodies import (
    api_body,
    control_body,
    heartbeat_body,
    outcome_body,
    submit_body,
    work_body,
    workflow_body,
)
from .messages import (
    API_NAMES,
    CONTROL_CAPABILITY,
    FUZZ_CAPABILITIES,
    HEADER_BLOCK_OVERHEAD,
    HOSTILE_TOKENS,
    UNKNOWN_API_NAMES,
    Message,
    Targets,
    any_id,
    capability,
    header_bytes,
    session_token,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

#: family → weight
WEIGHTS: dict[str, float] = {
    "submit": 20,
    "batch": 4,
    "workflow": 3,
    **{f"api.{name}": 2.0 for name in API_NAMES},
    "api.unknown": 1,
    "hb": 6,
    "outcome": 10,
    "work": 5,
    "control": 4,
}
_FAMILIES = list(WEIGHTS)
_CUMULATIVE = [sum(list(WEIGHTS.values())[: i + 1]) for i in range(len(WEIGHTS))]

TRACEPARENTS = (
    "", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-00", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
    "00-" + "g" * 32 + "-" + "b" * 16 + "-01", "00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra", "00-xyz",
    "00-" + "a" * 5000, "é" * 100, "00-" + "a" * 32 + "-" + "b" * 16 + "-zz",
)  # fmt: skip


def pick_family(rng: random.Random) -> str:
    roll = rng.random() * _CUMULATIVE[-1]
    for family, edge in zip(_FAMILIES, _CUMULATIVE, strict=True):
        if roll < edge:
            return family
    return _FAMILIES[-1]


def generate(rng: random.Random, targets: Targets) -> Message:
    """One hostile message for a family drawn by weight."""
    family = pick_family(rng)
    message = shaped(rng, family, targets)
    attack = ["shaped"]
    body = message.body
    roll = rng.random()
    if roll < 0.12:
        body, attack = hostile.raw_body(rng, body), ["raw"]
    elif roll < 0.15:
        body, attack = hostile.dumps(hostile.nested(rng)), ["nested"]
    headers, header_attack = hostile_headers(rng, message)
    attack += header_attack
    result = Message(family, message.subject, body, headers, message.request, tuple(attack), message.touches)
    if rng.random() < 0.02:
        return pad(rng, result, targets.max_payload)
    return result


def shaped(rng: random.Random, family: str, targets: Targets) -> Message:
    """A message of `family` with a schema-shaped body."""
    if family in ("submit", "batch"):
        cap = capability(rng)
        if family == "submit":
            body = submit_body(rng)
            if rng.random() < 0.1:  # a job the live worker runs: hostile options and headers, instant payload
                cap, body["payload"] = CONTROL_CAPABILITY, 0
            return Message(family, f"jetsched.{family}.{cap}", hostile.dumps(body))
        jobs: Any = [submit_body(rng) for _ in range(rng.choice((1, 2, 5, 20)))]
        if rng.random() < 0.05:
            jobs = rng.choice(([], [{}] * 1001, {"a": 1}, None, [None], ["x"]))
        return Message(family, f"jetsched.batch.{cap}", hostile.dumps({"jobs": jobs}))
    if family == "workflow":
        return Message(family, "jetsched.workflow.submit", hostile.dumps(workflow_body(rng)))
    if family == "api.unknown":
        return Message(family, f"jetsched.api.{rng.choice(UNKNOWN_API_NAMES)}", b"{}")
    if family.startswith("api."):
        name = family[4:]
        body, touches = api_body(rng, name, targets)
        return Message(family, f"jetsched.api.{name}", hostile.dumps(body), touches=touches)
    if family == "hb":
        session = session_token(rng) if rng.random() < 0.9 else rng.choice(HOSTILE_TOKENS)
        return Message(
            family,
            f"jetsched.hb.{session}",
            hostile.dumps(heartbeat_body(rng, session, targets)),
            request=False,
        )
    if family == "outcome":
        return outcome(rng, targets)
    live = targets.session is not None and rng.random() < 0.8
    session = targets.session if live and targets.session else session_token(rng)
    if family == "work":
        cap = CONTROL_CAPABILITY if live else rng.choice(FUZZ_CAPABILITIES)
        body = work_body(rng, any_id(rng, targets.job_ids))
        return Message(family, f"jetsched.work.{cap}.{session}", hostile.dumps(body), request=False)
    return Message(
        family, f"jetsched.control.{session}", hostile.dumps(control_body(rng, live, targets)), request=False
    )


def outcome(rng: random.Random, targets: Targets) -> Message:
    """A JetStream publish to the outcomes stream, often under a live job's next `Nats-Msg-Id`."""
    known = targets.job_ids + targets.control_ids
    job_id = rng.choice(known) if known and rng.random() < 0.6 else rng.choice(hostile.IDS[:16])
    attempt = rng.randint(1, 3)
    cap = CONTROL_CAPABILITY if job_id in targets.control_ids else capability(rng)
    headers: dict[str, str] | None = None
    attack: tuple[str, ...] = ()
    roll = rng.random()
    if roll < 0.4:
        headers, attack = {"Nats-Msg-Id": f"{job_id}:{attempt}:outcome"}, ("preempt",)
    elif roll < 0.5:
        headers = {"Nats-Msg-Id": rng.choice(("", "x" * 5000, "*", hostile.text(rng, 64).strip() or "x"))}
    body = hostile.dumps(outcome_body(rng, job_id, attempt))
    return Message("outcome", f"jetsched.outcome.{cap}.{job_id}", body, headers, request=False, attack=attack)


def hostile_headers(rng: random.Random, message: Message) -> tuple[dict[str, str] | None, list[str]]:
    """Headers on top of any the family set: trace garbage, many headers, one huge header, JetStream's own."""
    headers = dict(message.headers or {})
    attack = list(message.attack)
    roll = rng.random()
    if roll < 0.12:
        headers["traceparent"] = rng.choice(TRACEPARENTS)
        if rng.random() < 0.5:
            headers["tracestate"] = rng.choice(("", "a=b", "x" * 10_000, "=,=,="))
        attack.append("headers:trace")
    elif roll < 0.16:
        headers.update({f"X-Fuzz-{i}": "v" * rng.randint(0, 20) for i in range(rng.choice((100, 500, 2000)))})
        attack.append("headers:many")
    elif roll < 0.20:
        name = rng.choice(("baggage", "baggage", "traceparent", "X-Big"))
        size = rng.choice((8_192, 65_536, 70_000, 200_000))
        headers[name] = ("k=" + "v" * 62 + ",") * (size // 65) if name == "baggage" else "x" * size
        attack.append(f"headers:huge-{name}")
    elif roll < 0.23:
        headers.update(
            rng.choice(
                (
                    {"Nats-Msg-Id": "dup"},
                    {"Nats-Expected-Last-Sequence": "abc"},
                    {"Nats-Expected-Stream": "KV_jobs"},
                    {"Nats-Rollup": "sub"},
                    {"Nats-TTL": "1s"},
                    {"Jetsched-State": "succeeded", "Jetsched-Capability": "*"},
                    {"Status": "503"},
                )
            )
        )
        attack.append("headers:jetstream")
    return headers or None, attack


#: How far under (positive) or over (negative) `max_payload` a padded message ends.
PAD_OFFSETS = (0, 0, 1, 2, 64, 4096, -1, -100)


def pad(rng: random.Random, message: Message, max_payload: int) -> Message:
    """The message grown to `max_payload - offset` bytes, headers included, by a big header or body spaces."""
    offset = rng.choice(PAD_OFFSETS)
    target = max_payload - offset
    headers = dict(message.headers or {})
    if rng.random() < 0.5:
        base = header_bytes(headers) or HEADER_BLOCK_OVERHEAD
        room = target - len(message.body) - base - len(b"X-Pad: \r\n")
        if room <= 0:
            return message
        headers["X-Pad"] = "p" * room
        body = message.body
    else:
        room = target - message.size
        if room <= 0:
            return message
        body = message.body + b" " * room
    padded = Message(
        message.family,
        message.subject,
        body,
        headers or None,
        message.request,
        (*message.attack, f"size:{-offset:+d}"),
        message.touches,
    )
    assert padded.size == target, (padded.size, target)
    return padded


def stream(seed: int, count: int, targets: Targets) -> Iterator[Message]:
    """`count` messages from `seed`; `targets` may grow as the run learns ids (that is part of the seed)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield generate(rng, targets)
