"""The handle `submit` returns: the job's id, and its result once a worker has produced it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar, cast

from jetsched.core.models import JobState

from ._errors import JobFailed

if TYPE_CHECKING:
    from jetsched.core.models import SubmitReply

    from ._client import Client
    from ._models import JobChange, JobInfo

R = TypeVar("R")


class JobHandle(Generic[R]):
    """A stored job. `R` is what its handler returns (after a trip through JSON: tuples come back as
    lists, models as dicts).

    Attributes:
        reply: the submit's reply (`id`, `state` when stored, `duplicate`).
    """

    def __init__(self, client: Client, reply: SubmitReply) -> None:
        self._client = client
        self.reply = reply

    @property
    def id(self) -> str:
        return self.reply.id

    @property
    def state(self) -> JobState:
        """The state it was stored in (`ready` or `scheduled`); `info()` tells the current one."""
        return self.reply.state

    @property
    def duplicate(self) -> bool:
        """True if its idempotency key named a job submitted before (this handle is that job's)."""
        return self.reply.duplicate

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, state={self.state.value!r}, duplicate={self.duplicate})"

    async def info(self) -> JobInfo:
        """The job's record as it stands now."""
        return await self._client.get(self.id)

    async def wait(self, timeout: float = 30.0) -> JobInfo:
        """The record once the job is finished (see `Client.wait`). Raises `TimeoutError`."""
        return await self._client.wait(self.id, timeout=timeout)

    async def result(self, timeout: float = 30.0) -> R:
        """What the handler returned, once the job has succeeded; pushed, not polled (`Client.wait`).

        Raises:
            JobFailed: the job ended dead or cancelled.
            TimeoutError: it did not finish within `timeout` seconds (it goes on regardless).
        """
        job = await self.wait(timeout)
        if job.state is not JobState.SUCCEEDED:
            raise JobFailed(job)
        return cast("R", job.result)

    async def cancel(self) -> JobChange:
        """Cancel the job (see `Client.cancel`)."""
        return await self._client.cancel(self.id)
