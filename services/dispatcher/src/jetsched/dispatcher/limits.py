"""Queue limits: fleet-wide concurrency caps and start-rate token buckets, per capability and per key. Pure.

Counts come from the record feed (jobs leased to any worker, whichever replica claimed them) plus this
replica's claims in flight; a capability is dispatched by one replica at a time (its shard's lease), so
the caps hold fleet-wide up to the moment a shard moves. (A limited queue is never split in partitions
among replicas for that reason: `partitions.py`.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from jetsched.core.models import QueueSettings

MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; one token per start."""

    rate: float
    burst: int
    tokens: float
    at_ms: int

    def take(self, now_ms: int) -> bool:
        self.tokens = min(float(self.burst), self.tokens + (now_ms - self.at_ms) * self.rate / 1000)
        self.at_ms = now_ms
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready_at(self) -> int:
        """When (ms) the next token will be there."""
        return self.at_ms + max(0, int((1 - self.tokens) * 1000 / self.rate) + 1)


@dataclass
class Limits:
    settings: dict[str, QueueSettings] = field(default_factory=dict)
    running: Counter[str] = field(default_factory=Counter)
    running_by_key: Counter[tuple[str, str]] = field(default_factory=Counter)
    buckets: dict[tuple[str, str | None], TokenBucket] = field(default_factory=dict)

    def of(self, capability: str) -> QueueSettings:
        return self.settings.get(capability) or QueueSettings()

    def count(self, capability: str, key: str | None, delta: int) -> None:
        self.running[capability] += delta
        if key is not None:
            self.running_by_key[capability, key] += delta

    def capability_open(self, capability: str, now_ms: int) -> bool:
        """Whether one more job of the capability may start now (cap and rate; does not take a token)."""
        settings = self.of(capability)
        if settings.max_running is not None and self.running[capability] >= settings.max_running:
            return False
        return settings.rate_per_s is None or self._bucket(capability, None, settings, now_ms).tokens >= 1

    def key_open(self, capability: str, key: str | None, now_ms: int) -> bool:
        if key is None:
            return True
        settings = self.of(capability)
        cap = settings.max_running_per_key
        if cap is not None and self.running_by_key[capability, key] >= cap:
            return False
        return (
            settings.rate_per_key_per_s is None or self._bucket(capability, key, settings, now_ms).tokens >= 1
        )

    def start(self, capability: str, key: str | None, now_ms: int) -> None:
        """Account for a job starting: take its tokens (the caps count it when the claim is held)."""
        settings = self.of(capability)
        if settings.rate_per_s is not None:
            self._bucket(capability, None, settings, now_ms).take(now_ms)
        if key is not None and settings.rate_per_key_per_s is not None:
            self._bucket(capability, key, settings, now_ms).take(now_ms)

    def next_token_ms(self) -> int | None:
        """The soonest time a rate-limited queue gets a token back (for the dispatcher to wake)."""
        waiting = [b.ready_at() for b in self.buckets.values() if b.tokens < 1]
        if len(self.buckets) > MAX_BUCKETS:
            # Many keys come and go (tenants): a bucket with its burst saved up is the same as no bucket.
            for key in [k for k, b in self.buckets.items() if b.tokens >= b.burst]:
                del self.buckets[key]
        return min(waiting) if waiting else None

    def _bucket(self, capability: str, key: str | None, settings: QueueSettings, now_ms: int) -> TokenBucket:
        rate = settings.rate_per_s if key is None else settings.rate_per_key_per_s
        assert rate is not None
        bucket = self.buckets.get((capability, key))
        if bucket is None or bucket.rate != rate or bucket.burst != settings.burst:
            bucket = self.buckets[capability, key] = TokenBucket(
                rate, settings.burst, float(settings.burst), now_ms
            )
        bucket.tokens = min(float(bucket.burst), bucket.tokens + (now_ms - bucket.at_ms) * bucket.rate / 1000)
        bucket.at_ms = now_ms
        return bucket
