"""Task registration: `@task("capability")` marks a function as the handler of a capability."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, overload

from jetsched.core.models import check_capability

Handler = Callable[["Job"], Awaitable[Any]] | Callable[["Job"], Any]


@dataclass(frozen=True, slots=True)
class Job:
    """What a handler receives: the job's identity, attempt number and payload.

    `attempt` starts at 1 and grows with every retry; (`id`, `attempt`) names one execution, so handlers
    can make side effects idempotent with it. A workflow step reads its parents' results in `parents`
    (step name → result) and, in a map step, its element of the list in `item`. A job submitted with `heartbeat_timeout` must call
    `heartbeat()` at least that often (from async or thread handlers alike) or its attempt times out.
    """

    id: str
    attempt: int
    capability: str
    payload: Any
    priority: int
    created_at_ms: int
    _on_heartbeat: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)
    parents: dict[str, Any] = field(default_factory=dict)
    item: Any = None

    def heartbeat(self) -> None:
        """Report progress: the attempt is alive (resets its heartbeat timeout)."""
        self._on_heartbeat()


class Tasks:
    """A registry of handlers by capability."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    @overload
    def task(self, capability: Callable[..., Any]) -> Callable[..., Any]: ...

    @overload
    def task(self, capability: str | None = None) -> Callable[[Handler], Handler]: ...

    def task(self, capability: str | Callable[..., Any] | None = None) -> Any:
        """Register a handler: `@task("email.send")`, or bare `@task` to use the function's name."""
        if callable(capability):
            return self.task(None)(capability)

        def register(fn: Handler) -> Handler:
            name = check_capability(capability or fn.__name__)
            if name in self.handlers and self.handlers[name] is not fn:
                raise ValueError(f"capability '{name}' already has a handler")
            self.handlers[name] = fn
            return fn

        return register


#: The registry `@task` fills and `jetsched worker MODULE` runs.
default_tasks = Tasks()
task = default_tasks.task
