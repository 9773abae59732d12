"""Who may do what through the dashboard (pure).

Reading is open to whoever reaches the port (loopback by default). Changing anything — pause, resume,
drain, cancel, retry, purge — needs the operator token the dashboard was started with, sent in the
`X-Jetsched-Token` header and compared in constant time. A custom header is also the CSRF defence: a
page on another origin cannot send one without a CORS preflight, which the dashboard never answers, and
an HTML form cannot send one at all. The `Host` check stops DNS rebinding: a hostile page whose name
resolves to 127.0.0.1 still sends its own name as `Host`, and is refused even for reads.
See docs/security.md, "The dashboard".
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

TOKEN_HEADER = "X-Jetsched-Token"
#: A token shorter than this is refused at start: it must not be guessable in a few requests.
MIN_TOKEN = 16
MAX_TOKEN = 256
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True, slots=True)
class Access:
    """`token`: the operator token, or None for a read-only dashboard."""

    token: str | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not MIN_TOKEN <= len(self.token) <= MAX_TOKEN:
            raise ValueError(f"an operator token is {MIN_TOKEN}-{MAX_TOKEN} characters")

    @property
    def operator(self) -> bool:
        return self.token is not None

    def refusal(self, presented: str | None) -> str | None:
        """Why a change with this token is refused, or None when it is allowed."""
        if self.token is None:
            return "this dashboard is read-only: start it with --operator-token to allow changes"
        if not presented:
            return f"changes need the operator token in the {TOKEN_HEADER} header"
        if not hmac.compare_digest(presented.encode()[:MAX_TOKEN], self.token.encode()):
            return "wrong operator token"
        return None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


#: In an allow-set: answer any `Host` (`--allow-host '*'`, asked for explicitly, never implied).
ANY_HOST = "*"
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(
    bind: str, port: int, extra: tuple[str, ...] = (), own: tuple[str, ...] = ()
) -> frozenset[str]:
    """`Host` header values the dashboard answers: its loopback names when bound to loopback; bound to
    every address (`0.0.0.0`, `::`), its loopback names and the machine's own names and addresses (`own`:
    its host name, FQDN and their addresses, found by the caller); else the address it is bound to. Plus
    any names given (`--allow-host`, e.g. a reverse proxy's); `'*'` among them answers any Host."""
    if ANY_HOST in extra:
        return frozenset({ANY_HOST})
    if is_loopback(bind):
        names = set(LOOPBACK_NAMES)
    elif bind in WILDCARD_BINDS:
        names = set(LOOPBACK_NAMES) | {_bracketed(name) for name in own if name}
    else:
        names = {_bracketed(bind)}
    names.update(name.lower() for name in extra)
    names = {name.lower() for name in names}
    return frozenset({*names, *(f"{name}:{port}" for name in names)})


def _bracketed(name: str) -> str:
    """An IPv6 address as a `Host` header carries it: in brackets."""
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def host_ok(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's `Host` is one of ours (`ANY_HOST` in `allowed`: any; an empty set: none)."""
    if ANY_HOST in allowed:
        return True
    return host is not None and host.lower() in allowed


def origin_ok(origin: str | None, host: str | None) -> bool:
    """A change must come from the dashboard's own page: no `Origin` (same-origin fetches of some
    browsers, curl) or one naming the same host."""
    if origin is None:
        return True
    return host is not None and origin.lower() in (f"http://{host.lower()}", f"https://{host.lower()}")
