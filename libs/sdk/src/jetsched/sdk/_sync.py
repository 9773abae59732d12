"""The blocking client, for code without an event loop (Django views, Flask, scripts, a REPL).

It runs an async `Client` on a private event loop in a daemon thread and blocks the caller on each call,
so both share one implementation. The thread and the connection start on first use and again in a
process forked after it (a pre-forking server imports the application before forking: a thread does not
survive the fork, and a connection must not be shared by two processes).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, Unpack, overload

from jetsched.bus.config import DEFAULT_NATS_URL

from ._client import Client, JobOptions
from ._handle import JobHandle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence
    from types import TracebackType

    from jetsched.bus.auth import NatsAuth

    from ._errors import JetschedApiError
    from ._models import JobChange, JobInfo
    from ._tasks import JobTask, Task

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[Client, P], Awaitable[T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """`Client.<method>` as a blocking `SyncClient` method, with the same parameters and documentation."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(lambda client: method(client, *args, **kwargs))

    call.__name__, call.__qualname__ = method.__name__, f"SyncClient.{method.__name__}"
    call.__doc__ = method.__doc__
    return call


class SyncClient:
    """The `Client` API, blocking: `SyncClient(url).submit("email.send", {...}).result()`.

    Safe to share between threads. Connects on first use; `close()` (or `with SyncClient(url) as c:`)
    disconnects and stops its thread. Arguments are those of `Client`.
    """

    def __init__(
        self, nats_url: str = DEFAULT_NATS_URL, timeout: float = 5.0, auth: NatsAuth | None = None
    ) -> None:
        self._options = (nats_url, timeout, auth)
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _started(self) -> tuple[asyncio.AbstractEventLoop, Client]:
        with self._lock:
            if self._loop is None or self._client is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="jetsched-sync-client", daemon=True
                )
                self._thread.start()
                self._client = Client(*self._options)
            return self._loop, self._client

    def run(self, call: Callable[[Client], Coroutine[Any, Any, T]] | Callable[[Client], Awaitable[T]]) -> T:
        """Run `call(async_client)` on the client's loop and return its result (for what has no wrapper)."""
        loop, client = self._started()

        async def connected() -> T:
            await client.connect()
            return await call(client)

        return asyncio.run_coroutine_threadsafe(connected(), loop).result()

    def close(self) -> None:
        """Disconnect and stop the client's thread; the next call starts them again."""
        with self._lock:
            loop, client, thread = self._loop, self._client, self._thread
            self._loop = self._client = self._thread = None
        if loop is None or client is None or thread is None or self._pid != os.getpid():
            return
        asyncio.run_coroutine_threadsafe(client.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def submit(
        self, capability: str, payload: Any = None, *, key: str | None = None, **options: Unpack[JobOptions]
    ) -> SyncJobHandle[Any]:
        """Submit a job (see `Client.submit`); returns a blocking handle."""
        return SyncJobHandle(self, self.run(lambda c: c.submit(capability, payload, key=key, **options)))

    def submit_many(
        self,
        capability: str,
        payloads: Sequence[Any],
        *,
        keys: Sequence[str] | None = None,
        **options: Unpack[JobOptions],
    ) -> list[SyncJobHandle[Any] | JetschedApiError]:
        """Submit many jobs in one request (see `Client.submit_many`)."""
        done = self.run(lambda c: c.submit_many(capability, payloads, keys=keys, **options))
        return [SyncJobHandle(self, item) if isinstance(item, JobHandle) else item for item in done]

    @overload
    def submit_task(self, task: JobTask[R], payload: Any = None, /) -> SyncJobHandle[R]: ...

    @overload
    def submit_task(self, task: Task[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncJobHandle[R]: ...

    def submit_task(
        self, task: JobTask[Any] | Task[..., Any], /, *args: Any, **kwargs: Any
    ) -> SyncJobHandle[Any]:
        """Submit a job for an `@task` function as its `submit` would, with its defaults and checked
        against its signature: `jetsched.submit_task(send_email, to="a@example.com")`."""
        return SyncJobHandle(
            self, self.run(lambda client: task.with_options(client=client).submit(*args, **kwargs))
        )

    get = _blocking(Client.get)
    wait = _blocking(Client.wait)
    list = _blocking(Client.list)
    cancel = _blocking(Client.cancel)
    stats = _blocking(Client.stats)
    dead = _blocking(Client.dead)
    retry_dead = _blocking(Client.retry_dead)
    purge_dead = _blocking(Client.purge_dead)
    pause = _blocking(Client.pause)
    configure_queue = _blocking(Client.configure_queue)
    workers = _blocking(Client.workers)
    drain = _blocking(Client.drain)
    submit_workflow = _blocking(Client.submit_workflow)
    workflow = _blocking(Client.workflow)
    workflows = _blocking(Client.workflows)
    cancel_workflow = _blocking(Client.cancel_workflow)
    retry_workflow = _blocking(Client.retry_workflow)
    create_schedule = _blocking(Client.create_schedule)
    create_workflow_schedule = _blocking(Client.create_workflow_schedule)
    update_schedule = _blocking(Client.update_schedule)
    schedule = _blocking(Client.schedule)
    delete_schedule = _blocking(Client.delete_schedule)
    schedules = _blocking(Client.schedules)
    preview_schedule = _blocking(Client.preview_schedule)
    request = _blocking(Client.request)


class SyncJobHandle(Generic[R]):
    """A `JobHandle` whose methods block."""

    def __init__(self, client: SyncClient, handle: JobHandle[R]) -> None:
        self._client = client
        self.handle = handle

    @property
    def id(self) -> str:
        return self.handle.id

    @property
    def duplicate(self) -> bool:
        return self.handle.duplicate

    def __repr__(self) -> str:
        return f"Sync{self.handle!r}"

    def info(self) -> JobInfo:
        """The job's record as it stands now."""
        return self._client.run(lambda _: self.handle.info())

    def wait(self, timeout: float = 30.0) -> JobInfo:
        """The record once the job is finished. Raises `TimeoutError`."""
        return self._client.run(lambda _: self.handle.wait(timeout))

    def result(self, timeout: float = 30.0) -> R:
        """What the handler returned (see `JobHandle.result`). Raises `JobFailed`, `TimeoutError`."""
        return self._client.run(lambda _: self.handle.result(timeout))

    def cancel(self) -> JobChange:
        return self._client.run(lambda _: self.handle.cancel())
