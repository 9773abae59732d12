"""A short slice of the fuzz suite (`make fuzz` runs 100,000 messages): hostile input against the real stack.

Part of `make test`: a run that fails here is a service that a plain NATS client can crash, silence or
make lose a job.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings

from .messages import ANSWERED, Message, Targets
from .run import fuzz
from .strategies import messages, raw_bodies

SLICE_MESSAGES = 2000


class TestGenerators:
    @given(messages(Targets(max_payload=1 << 20, session="fzlive", job_ids=["01KBZ3R6X9T2M0Q7D5W8C4N1HE"])))
    @settings(max_examples=300, deadline=None)
    def test_messages_are_sendable_shapes(self, message: Message) -> None:
        """Every message has a jetsched subject, bytes for a body, and a size that counts its headers."""
        assert message.subject.startswith("jetsched.")
        assert isinstance(message.body, bytes)
        assert message.size >= len(message.body)
        assert not message.answered or message.subject.startswith(ANSWERED)

    @given(messages(Targets(session="fzlive")))
    @settings(max_examples=300, deadline=None)
    def test_no_drain_reaches_the_live_worker(self, message: Message) -> None:
        """The yardstick worker is never told to drain: that is NATS permissions' job, not a service's."""
        if message.subject == "jetsched.control.fzlive" and "shaped" in message.attack:
            assert b'"op": "drain"' not in message.body

    @given(raw_bodies())
    def test_raw_bodies_are_not_json_objects(self, body: bytes) -> None:
        """Raw bodies are bytes; some are cut JSON, some not UTF-8 at all."""
        assert isinstance(body, bytes)

    def test_same_seed_same_stream(self) -> None:
        """The stream is a function of the seed (and of the ids the run learns)."""
        from .stream import stream

        first = list(stream(7, 200, Targets()))
        again = list(stream(7, 200, Targets()))
        assert first == again


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_services_survive_a_slice_of_hostile_messages(tmp_path: Path) -> None:
    """2,000 hostile messages: every service alive and connected, every request answered, nothing lost."""
    seed = random.SystemRandom().randrange(1_000_000)
    report = await fuzz(SLICE_MESSAGES, seed, batch=500, work_dir=tmp_path)
    print("\n".join(report.lines()))
    assert report.ok, f"replay with `make fuzz SEED={seed} FUZZ_MESSAGES={SLICE_MESSAGES}`"
