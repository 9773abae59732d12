"""`make fuzz`: hostile messages against the real stack as processes; exits 1 on any failed check.

    python -m tests.fuzz.run --messages 100000 --seed 7
    python -m tests.fuzz.run --replay /tmp/jetsched-fuzz-x/batch-3.jsonl   # one by one: which message?

The seed is printed first; the same seed draws the same sequence of choices (ids learned from replies are
filled in as the run learns them). A failed check saves its batch as JSON lines in the work directory;
`--replay` sends such a file one message at a time against a fresh stack, checking after each, and prints
the first message after which a check fails: a minimal reproducer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .driver import Fuzz
from .report import Report, describe, load


async def fuzz(
    messages: int,
    seed: int,
    batch: int = 500,
    work_dir: Path | None = None,
    skip: frozenset[str] = frozenset(),
) -> Report:
    directory = work_dir or Path(tempfile.mkdtemp(prefix="jetsched-fuzz-"))
    print(f"fuzz: seed {seed}, {messages} messages in batches of {batch}, work dir {directory}", flush=True)
    async with Fuzz(directory, seed) as run:
        return await run.run(random.Random(seed), messages, batch, skip)


async def replay(path: Path, work_dir: Path | None = None) -> int:
    directory = work_dir or Path(tempfile.mkdtemp(prefix="jetsched-replay-"))
    messages = load(path)
    print(f"replay: {len(messages)} messages from {path}, one by one, work dir {directory}", flush=True)
    async with Fuzz(directory, seed=0) as run:
        live = (run.targets.session or "").encode()
        for n, message in enumerate(messages):
            # `{session}` in a saved message stands for the live worker's session of this run.
            message = replace(
                message,
                subject=message.subject.replace("{session}", live.decode()),
                body=message.body.replace(b"{session}", live),
            )
            failures = await run.fire([message])
            if failures:
                print(f"message {n} fails a check: {describe(message, 2000)}")
                print("\n".join(f"  {f}" for f in failures))
                return 1
        await run.final_check()
        if run.report.verdict.lost:
            print("\n".join(run.report.lines()))
            return 1
    print("no single message fails a check on its own, and no job was lost")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1_000_000))
    parser.add_argument("--batch", type=int, default=500, help="messages between checks")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--replay", type=Path, default=None, help="a saved batch to send one by one")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated families or attack layers to leave out (e.g. outcome,preempt,headers,size)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.replay is not None:
        sys.exit(asyncio.run(replay(args.replay, args.work_dir)))
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    report = asyncio.run(fuzz(args.messages, args.seed, args.batch, args.work_dir, skip))
    print("\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
