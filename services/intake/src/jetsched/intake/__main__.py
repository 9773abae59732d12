from __future__ import annotations

from jetsched.bus.service import main as run_service

from . import config
from .service import IntakeService


def main() -> None:
    run_service(
        "intake",
        lambda args, bus: IntakeService(bus, config.from_args(args)),
        config.add_arguments,
    )


if __name__ == "__main__":
    main()
