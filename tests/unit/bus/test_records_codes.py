"""How a JetStream write ack is read: both codes of a lost CAS are a `Conflict`, anything else is not."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import orjson
import pytest

from jetsched.bus.records import Store, StoreError, Unstorable
from jetsched.core.errors import Conflict

if TYPE_CHECKING:
    from jetsched.bus.direct import Connection


class Acking:
    """A connection whose every request is answered with one JetStream ack."""

    def __init__(self, ack: dict[str, object]) -> None:
        self.ack = orjson.dumps(ack)

    async def request_raw(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> tuple[bytes, bytes]:
        return self.ack, b""


def store(ack: dict[str, object]) -> Store:
    return Store(cast("Connection", Acking(ack)), "jobs")


@pytest.mark.parametrize(
    "ack",
    [
        {"error": {"code": 400, "err_code": 10071, "description": "wrong last sequence: 5"}},
        {"error": {"code": 400, "err_code": 10164, "description": "wrong last sequence"}},
    ],
)
async def test_both_wrong_last_sequence_codes_are_a_conflict(ack: dict[str, object]) -> None:
    with pytest.raises(Conflict):
        await store(ack).put_if("J1", b"{}", 4)


async def test_other_refusals_are_store_errors() -> None:
    with pytest.raises(StoreError) as caught:
        await store({"error": {"code": 503, "err_code": 10008, "description": "no leader"}}).put_if(
            "J1", b"", 0
        )
    assert not isinstance(caught.value, Unstorable)
    with pytest.raises(Unstorable):
        await store({"error": {"code": 400, "err_code": 10054, "description": "too large"}}).put_if(
            "J1", b"", 0
        )


async def test_a_stored_write_returns_its_revision() -> None:
    assert await store({"stream": "KV_jobs", "seq": 9}).put_if("J1", b"{}", 0) == 9
