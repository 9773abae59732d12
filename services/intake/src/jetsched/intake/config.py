from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jetsched.bus.config import env_int

if TYPE_CHECKING:
    import argparse

DEFAULT_MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    #: Largest accepted submit body, checked before parsing.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: Serve the control API (`jetsched.api.*`) from this replica too.
    serve_api: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=env_int("JETSCHED_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
        help="largest submit body in bytes [JETSCHED_MAX_REQUEST_BYTES]",
    )
    parser.add_argument(
        "--no-api",
        action="store_true",
        default=os.environ.get("JETSCHED_INTAKE_NO_API") == "1",
        help="do not serve the control API [JETSCHED_INTAKE_NO_API=1]",
    )


def from_args(args: argparse.Namespace) -> IntakeConfig:
    return IntakeConfig(max_request_bytes=args.max_request_bytes, serve_api=not args.no_api)
