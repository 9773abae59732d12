"""One key of a KV bucket as a pydantic model, for CAS updates (`cas.cas_update(key.read, verb,
key.write)`) of values other than job records (those go through `Records`, which writes their timer
entries too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel

from jetsched.core.errors import NotFound

from .records import decoded

if TYPE_CHECKING:
    from collections.abc import Callable

    from .records import Store

M = TypeVar("M", bound=BaseModel)


class StoredModel(Generic[M]):
    """One key of a `Store` as a model: read (`missing()` at revision 0 if absent, if given) and CAS-write.

    A stored value that cannot be decoded raises `Poisoned`."""

    def __init__(
        self, store: Store, key: str, model: type[M], missing: Callable[[], M] | None = None
    ) -> None:
        self.store = store
        self.key = key
        self.model = model
        self.missing = missing

    async def read(self) -> tuple[M, int]:
        try:
            data, revision = await self.store.get(self.key)
        except NotFound:
            if self.missing is None:
                raise
            return self.missing(), 0
        return decoded(self.model, data, self.store.bucket, self.key, revision), revision

    async def write(self, value: M, revision: int) -> int:
        return await self.store.put_if(self.key, value.model_dump_json().encode(), revision)
