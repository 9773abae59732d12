"""Wait for a condition instead of sleeping: `await eventually(lambda: ..., timeout=5)`."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T], timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


async def eventually(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; return that. Raises `TimeoutError`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        value = condition()
        last = await value if inspect.isawaitable(value) else value
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout}s: {what or condition!r} (last: {last!r})")
        await asyncio.sleep(interval)
