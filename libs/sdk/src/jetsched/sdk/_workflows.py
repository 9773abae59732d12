"""Building workflows: steps in a DAG, with chain, group and chord as sugar over it.

    from jetsched.sdk import chain, chord, group, step

    flow = chain(
        step("fetch", "http.get", {"url": "..."}),
        chord(
            group(step("a", "parse.a"), step("b", "parse.b")),
            step("merge", "merge"),
        ),
    )
    reply = await client.submit_workflow(flow, key="import-42")

A `Steps` value is a set of steps with its *heads* (steps with no parent inside it) and *tails* (steps
nothing inside it depends on); `chain` makes each part's heads depend on the previous part's tails, `group`
puts parts side by side, `chord(header, callback)` is `chain(group(*header), callback)`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a job of `capability` named `name`, after the steps in `depends_on`."""

    name: str
    capability: str
    payload: Any = None
    depends_on: tuple[str, ...] = ()
    #: Run once per element of this parent's result (a list); the handler reads its element as `job.item`.
    map_over: str | None = None
    #: Job options as on the wire (`priority`, `max_attempts`, `timeout_s`, `delay_ms`, …).
    options: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "capability": self.capability, **self.options}
        if self.payload is not None:
            wire["payload"] = self.payload
        if self.depends_on:
            wire["depends_on"] = list(self.depends_on)
        if self.map_over is not None:
            wire["map_over"] = self.map_over
        return wire


@dataclass(frozen=True, slots=True)
class Steps:
    """Steps forming part of a workflow, with its entry (heads) and exit (tails) steps."""

    steps: tuple[Step, ...]
    heads: tuple[str, ...]
    tails: tuple[str, ...]

    def after(self, parents: Iterable[str]) -> Steps:
        """These steps, their heads depending on `parents` as well."""
        extra = tuple(parents)
        heads = set(self.heads)
        return replace(
            self,
            steps=tuple(
                replace(s, depends_on=(*s.depends_on, *(p for p in extra if p not in s.depends_on)))
                if s.name in heads
                else s
                for s in self.steps
            ),
        )


def step(
    name: str,
    capability: str,
    payload: Any = None,
    *,
    depends_on: Iterable[str] = (),
    map_over: str | None = None,
    **options: Any,
) -> Steps:
    """One step. `options` are job options as on the wire (`priority=7`, `max_attempts=3`, `timeout_s=60`,
    `delay_ms`, `labels`, `concurrency_key`, `backoff`, …). `map_over` must be one of `depends_on` (it is
    added if it is not)."""
    parents = tuple(depends_on)
    if map_over is not None and map_over not in parents:
        parents = (*parents, map_over)
    one = Step(name, capability, payload, parents, map_over, options)
    return Steps((one,), (name,), (name,))


def chain(*parts: Steps) -> Steps:
    """Each part after the previous one: its heads depend on the previous part's tails."""
    if not parts:
        raise ValueError("a chain needs at least one part")
    steps: list[Step] = list(parts[0].steps)
    for previous, part in itertools.pairwise(parts):
        steps += part.after(previous.tails).steps
    return Steps(tuple(steps), parts[0].heads, parts[-1].tails)


def group(*parts: Steps) -> Steps:
    """Parts side by side, independent of each other."""
    if not parts:
        raise ValueError("a group needs at least one part")
    return Steps(
        tuple(s for p in parts for s in p.steps),
        tuple(h for p in parts for h in p.heads),
        tuple(t for p in parts for t in p.tails),
    )


def chord(header: Iterable[Steps], callback: Steps) -> Steps:
    """`callback` after every part of `header` — a fan-in whose callback is a stored step, never lost."""
    return chain(group(*header), callback)


def workflow_body(
    steps: Steps | Iterable[Steps],
    key: str | None = None,
    on_failure: Literal["fail_fast", "continue"] | None = None,
) -> dict[str, Any]:
    """The JSON body of `jetsched.workflow.submit`."""
    flow = steps if isinstance(steps, Steps) else group(*steps)
    body: dict[str, Any] = {"steps": [s.body() for s in flow.steps]}
    if key is not None:
        body["key"] = key
    if on_failure is not None:
        body["on_failure"] = on_failure
    return body
