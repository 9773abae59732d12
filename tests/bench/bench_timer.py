"""`make bench` (timer part): the timing wheel under a million pending timers.

Prints memory per pending timer, insert and cancel rates, and the firing lateness (callback time − due
time) of probe timers that come due while 1M others are pending — once with the 1M spread over hours, and
once with 300k of them packed into the next higher-level bucket so that a level boundary, and its cascade,
passes during the measurement. Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc

import uvloop

from jetsched.core.clock import SystemClock
from jetsched.timer.driver import WheelDriver
from jetsched.timer.wheel import TimingWheel

N = 1_000_000
LEVEL2_MS = 256 * 256


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def structure(keys: list[str]) -> None:
    rng = random.Random(1)
    dues = [rng.randrange(10_000, 4 * 3600_000) for _ in keys]
    gc.collect()
    tracemalloc.start()
    wheel: TimingWheel[str] = TimingWheel(1, 256, 0)
    for key, due in zip(keys, dues, strict=True):
        wheel.add(key, due)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  memory            {size / N:,.0f} bytes per pending timer (keys excluded, dues included)")
    del wheel
    gc.collect()
    wheel = TimingWheel(1, 256, 0)
    started = time.perf_counter()
    for key, due in zip(keys, dues, strict=True):
        wheel.add(key, due)
    print(f"  insert            {N / (time.perf_counter() - started):,.0f} timers/s")
    victims = rng.sample(keys, 100_000)
    started = time.perf_counter()
    for key in victims:
        wheel.cancel(key)
    print(f"  cancel            {len(victims) / (time.perf_counter() - started):,.0f} timers/s")


async def lateness(keys: list[str], packed: bool) -> None:
    clock = SystemClock()
    now = clock.now_ms()
    if packed:
        # Shift our clock so that a level-2 boundary comes 10 s from now (arming 1M takes ~1.5 s).
        clock._offset += ((LEVEL2_MS - 10_000) - now % LEVEL2_MS) / 1000
        now = clock.now_ms()
    late: list[float] = []
    probes: dict[str, int] = {}

    def on_due(fired: list[tuple[str, int, int]]) -> None:
        at = clock.now() * 1000
        late.extend(at - due for key, due, _ in fired if key in probes)

    driver: WheelDriver[str] = WheelDriver(clock, on_due)
    rng = random.Random(2)
    boundary = now + 10_000
    for n, key in enumerate(keys):
        if packed and n < 300_000:
            due = boundary + rng.randrange(LEVEL2_MS // 2, LEVEL2_MS)
        else:
            due = now + rng.randrange(30_000, 4 * 3600_000)
        driver.arm(key, due)
    start = clock.now_ms()  # probes count from when the load is in place
    for n in range(20_000):
        key = f"probe-{n}"
        probes[key] = due = start + 1000 + rng.randrange(0, 14_000)
        driver.arm(key, due)
    task = asyncio.create_task(driver.run())
    await asyncio.sleep((start + 15_500 - clock.now_ms()) / 1000)
    task.cancel()
    label = "300k packed in the next level-2 bucket, its boundary passing" if packed else "1M spread over 4 h"
    print(f"  lateness ({label}):")
    print(
        f"                    p50 {pct(late, 50):.2f} ms  p99 {pct(late, 99):.2f} ms  max {max(late):.2f} ms  "
        f"min {min(late):.2f} ms  ({len(late):,} probes)"
    )


def main() -> None:
    keys = [f"{n:026d}" for n in range(N)]
    print(f"\ntiming wheel, {N:,} pending timers (tick 1 ms, 256 buckets per level):")
    structure(keys)
    uvloop.run(lateness(keys, packed=False))
    uvloop.run(lateness(keys, packed=True))


if __name__ == "__main__":
    main()
