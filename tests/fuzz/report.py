"""The run's figures and failed checks, and saved batches (JSON lines) for `--replay`."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import checks
from .messages import Message

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


@dataclass
class Report:
    seed: int
    sent: Counter[str] = field(default_factory=Counter)
    attacks: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)
    client_refused: Counter[str] = field(default_factory=Counter)
    #: Errors on the attacker's own connections (the server closing one that sent too much).
    attacker_errors: Counter[str] = field(default_factory=Counter)
    crashed: Counter[str] = field(default_factory=Counter)
    disconnected: Counter[str] = field(default_factory=Counter)
    log_alarms: Counter[str] = field(default_factory=Counter)
    e2e_failures: int = 0
    accepted: int = 0
    verdict: checks.Verdict = field(default_factory=checks.Verdict)
    #: One line per failed check: batch, what, a sample message.
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Wall time spent sending (waiting for replies included) and checking.
    send_s: float = 0.0
    check_s: float = 0.0
    #: Sending time up to each batch's last delivered message: what the run would take if every request
    #: were answered (the waits for replies that never come are the rest of `send_s`).
    busy_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.failures or self.verdict.lost)

    def lines(self) -> list[str]:
        total = sum(self.sent.values())
        rate = total / self.seconds if self.seconds else 0.0
        lost = Counter(re.sub(r"\d+", "N", why.split(":")[0])[:60] for why in self.verdict.lost.values())
        return [
            f"seed                 {self.seed}",
            f"messages sent        {total} in {self.seconds:.1f}s ({rate:.0f}/s; sending {self.send_s:.1f}s, "
            f"checks {self.check_s:.1f}s; {total / max(self.busy_s, 1e-9):.0f}/s while answered)",
            *(f"  {family:<22} {n}" for family, n in sorted(self.sent.items())),
            f"attack layers        {dict(sorted(self.attacks.items()))}",
            f"replies              {dict(sorted(self.replies.items()))}",
            f"unanswered requests  {sum(self.unanswered.values())}  {dict(self.unanswered)}",
            f"refused by client    {dict(self.client_refused)}  attacker conn errors {dict(self.attacker_errors)}",
            f"crashed services     {dict(self.crashed)}",
            f"disconnected         {dict(self.disconnected)}",
            f"end-to-end failures  {self.e2e_failures}",
            f"log alarms           {sum(self.log_alarms.values())}",
            *(f"  {n:>5} × {line[:220]}" for line, n in self.log_alarms.most_common(15)),
            f"accepted jobs        {self.accepted}  fine: {dict(self.verdict.ok)}",
            f"lost jobs            {len(self.verdict.lost)}  {dict(lost)}",
            *(f"  {job}: {why[:200]}" for job, why in list(self.verdict.lost.items())[:10]),
            f"failed checks        {len(self.failures)}",
            *(f"  {line[:400]}" for line in self.failures[:40]),
        ]


def describe(message: Message, limit: int = 300) -> str:
    headers = {k: (v if len(v) < 80 else f"<{len(v)} bytes>") for k, v in (message.headers or {}).items()}
    if len(headers) > 6:
        headers = {"<headers>": str(len(headers))}
    body = message.body[:limit].decode(errors="backslashreplace")
    more = f"…<{len(message.body)} bytes>" if len(message.body) > limit else ""
    return f"{message.subject[:120]} {headers} {body}{more}"


def dump(messages: Iterable[Message], path: Path, session: str | None = None) -> None:
    """Save messages as JSON lines; the live worker's session becomes `{session}` for `--replay`."""
    live = session or "\x00"
    with path.open("w") as out:
        for m in messages:
            row = {
                "family": m.family,
                "subject": m.subject.replace(live, "{session}"),
                "headers": m.headers,
                "body": base64.b64encode(m.body.replace(live.encode(), b"{session}")).decode(),
                "request": m.request,
                "attack": m.attack,
            }
            out.write(json.dumps(row) + "\n")


def load(path: Path) -> list[Message]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [
        Message(
            r["family"],
            r["subject"],
            base64.b64decode(r["body"]),
            r["headers"],
            r["request"],
            tuple(r["attack"]),
        )
        for r in rows
    ]
