"""Task registration: `@task("capability", **defaults)` makes a function the handler of a capability.

A handler takes the job one of two ways, told apart by its signature:
- one parameter named `job` (or annotated `Job`): it receives the `Job` (id, attempt, payload, …);
- anything else: it is called with the payload's fields as keyword arguments (`send_email(to=…)`), and
  reads the `Job` from `current_job()` if it needs to. Its `submit(...)` takes the same arguments, so a
  type checker checks a submit against the handler's signature.

The decorated function stays callable as before and gains `submit` (store a job that runs it, through the
newest open `Client` unless one is given) and `with_options` (per-call overrides of its defaults).
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload

from jetsched.core.models import check_capability

from ._client import Client, JobOptions, check_options, current_client

if TYPE_CHECKING:
    from ._handle import JobHandle

Handler = Callable[["Job"], Awaitable[Any]] | Callable[["Job"], Any]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Job:
    """What a handler receives: the job's identity, attempt number and payload.

    `attempt` starts at 1 and grows with every retry; (`id`, `attempt`) names one execution, so handlers
    can make side effects idempotent with it. A workflow step reads its parents' results in `parents`
    (step name → result) and, in a map step, its element of the list in `item`. A job submitted with
    `heartbeat_timeout` must call `heartbeat()` at least that often (from async or thread handlers alike)
    or its attempt times out.
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
    _on_progress: Callable[[Any], None] = field(default=lambda _: None, repr=False, compare=False)

    def heartbeat(self) -> None:
        """Say the attempt is alive (resets its heartbeat timeout)."""
        self._on_heartbeat()

    def progress(self, value: Any) -> None:
        """Report how far the attempt has got — any JSON: `0.4`, `{"done": 3, "of": 10}`, `"uploading"` —
        shown by `jobs.get` (`JobInfo.progress`) while it runs and after. Also a heartbeat.

        Best-effort and cheap: at most one report per 250 ms goes out (the latest value), the last one
        when the handler returns; the handler never waits for it.

        Raises:
            ValueError: `value` is not JSON jetsched can store, or is over about 3.5 KiB.
        """
        self._on_progress(value)
        self._on_heartbeat()


_current: contextvars.ContextVar[Job] = contextvars.ContextVar("jetsched_job")


def current_job() -> Job:
    """The job the calling handler runs (in a handler that takes the payload's fields as arguments).

    Raises:
        LookupError: called outside a handler run by a `Worker`.
    """
    return _current.get()


class _Submitter:
    """What both kinds of task share: a capability, defaults, and submitting a payload with them."""

    def __init__(
        self, fn: Callable[..., Any], capability: str, defaults: JobOptions, client: Client | None = None
    ) -> None:
        self.fn = fn
        self.capability = capability
        self.defaults = defaults
        self._client = client
        self._key: str | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", capability)

    def _override(self, key: str | None, client: Client | None, options: JobOptions) -> Any:
        bound = object.__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound.defaults = {**self.defaults, **options}
        bound._key = key or self._key
        bound._client = client or self._client
        return bound

    async def _submit(self, payload: Any) -> JobHandle[Any]:
        client = self._client or current_client()
        return await client.submit(self.capability, payload, key=self._key, **self.defaults)

    def __repr__(self) -> str:
        return f"<task {self.capability!r} {self.fn!r}>"


class JobTask(_Submitter, Generic[R]):
    """A handler that takes the `Job`; `submit(payload)` stores a job for it."""

    def __call__(self, job: Job) -> Any:
        return self.fn(job)

    def with_options(
        self, *, key: str | None = None, client: Client | None = None, **options: Unpack[JobOptions]
    ) -> JobTask[R]:
        """This task with some defaults overridden (and an idempotency `key`, a `client`) for a submit."""
        overridden: JobTask[R] = self._override(key, client, options)
        return overridden

    async def submit(self, payload: Any = None) -> JobHandle[R]:
        """Store a job for this handler with the task's defaults; see `Client.submit`."""
        return await self._submit(payload)


class Task(_Submitter, Generic[P, R]):
    """A handler that takes the payload's fields as arguments; `submit(...)` takes the same arguments."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.fn(*args, **kwargs)

    def with_options(
        self, *, key: str | None = None, client: Client | None = None, **options: Unpack[JobOptions]
    ) -> Task[P, R]:
        """This task with some defaults overridden (and an idempotency `key`, a `client`) for a submit."""
        overridden: Task[P, R] = self._override(key, client, options)
        return overridden

    async def submit(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Store a job whose payload is the arguments by name, with the task's defaults.

        Raises:
            TypeError: the arguments do not fit the handler's signature (nothing is submitted).
        """
        payload = inspect.signature(self.fn).bind(*args, **kwargs).arguments
        return await self._submit(dict(payload))


def _takes_job(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    return len(params) == 1 and (params[0].name == "job" or params[0].annotation in (Job, "Job"))


def _runs_with_fields(fn: Callable[..., Any]) -> Handler:
    """The worker's handler for `fn`: called with the payload's fields, `current_job()` set meanwhile."""

    def fields(job: Job) -> dict[str, Any]:
        if job.payload is None:
            return {}
        if not isinstance(job.payload, dict):
            raise TypeError(f"{fn.__name__} takes keyword arguments: the payload must be an object")
        return job.payload

    if inspect.iscoroutinefunction(fn):

        async def run_async(job: Job) -> Any:
            token = _current.set(job)
            try:
                return await fn(**fields(job))
            finally:
                _current.reset(token)

        return run_async

    def run(job: Job) -> Any:  # in a worker thread: the variable is set in that thread's context
        token = _current.set(job)
        try:
            return fn(**fields(job))
        finally:
            _current.reset(token)

    return run


class Decorator(Protocol):
    """What `task("capability", ...)` returns: it registers the function it decorates."""

    @overload
    def __call__(self, fn: Callable[[Job], Coroutine[Any, Any, R]]) -> JobTask[R]: ...  # type: ignore[overload-overlap]  # a Job handler is meant to match first

    @overload
    def __call__(self, fn: Callable[[Job], R]) -> JobTask[R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Task[P, R]: ...


class Tasks:
    """A registry of handlers by capability."""

    def __init__(self) -> None:
        #: The worker's view: capability → a callable taking the `Job`.
        self.handlers: dict[str, Handler] = {}
        self._functions: dict[str, Callable[..., Any]] = {}

    @overload
    def task(self, capability: Callable[[Job], Coroutine[Any, Any, R]], /) -> JobTask[R]: ...  # type: ignore[overload-overlap]  # as in Decorator

    @overload
    def task(self, capability: Callable[[Job], R], /) -> JobTask[R]: ...

    @overload
    def task(self, capability: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, capability: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, capability: str | None = None, /, **defaults: Unpack[JobOptions]) -> Decorator: ...

    def task(
        self, capability: str | Callable[..., Any] | None = None, /, **defaults: Unpack[JobOptions]
    ) -> Any:
        """Register a handler: `@task("email.send", priority=7, max_attempts=3)`, or bare `@task` to
        use the function's name as its capability.

        Args:
            capability: which jobs it runs (default: the function's name).
            defaults: job options (`priority`, `max_attempts`, `timeout`, `backoff`, `labels`,
                `concurrency_key`, … as `Client.submit` takes them) for jobs submitted through the
                function's `submit`. They are stored with each job at submit time: jobs submitted by
                `Client.submit` or another program get that submit's options, not these.
        """
        if callable(capability):
            return self.task(None)(capability)
        check_options(defaults)

        def register(fn: Callable[..., Any]) -> _Submitter:
            name = check_capability(capability or fn.__name__)
            if self._functions.get(name, fn) is not fn:
                raise ValueError(f"capability '{name}' already has a handler")
            self._functions[name] = fn
            if _takes_job(fn):
                self.handlers[name] = fn
                return JobTask(fn, name, defaults)
            self.handlers[name] = _runs_with_fields(fn)
            return Task(fn, name, defaults)

        return register

    def only(self, capabilities: Iterable[str]) -> Tasks:
        """A registry of these capabilities' handlers alone (what a worker serving some of a module's
        tasks runs).

        Raises:
            ValueError: a capability has no handler here.
        """
        wanted = list(capabilities)
        missing = [name for name in wanted if name not in self.handlers]
        if missing:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise ValueError(f"no handler for {', '.join(missing)} (registered: {known})")
        subset = Tasks()
        subset.handlers = {name: self.handlers[name] for name in wanted}
        subset._functions = {name: self._functions[name] for name in wanted}
        return subset


#: The registry `@task` fills and `jetsched worker MODULE` runs.
default_tasks = Tasks()
task = default_tasks.task
