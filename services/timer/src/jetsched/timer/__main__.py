from __future__ import annotations

from jetsched.bus.service import main as run_service

from .service import TimerService


def main() -> None:
    run_service("timer", lambda args, bus: TimerService(bus))


if __name__ == "__main__":
    main()
