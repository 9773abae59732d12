from __future__ import annotations

from jetsched.bus.service import main as run_service

from .service import DispatcherService


def main() -> None:
    run_service("dispatcher", lambda args, bus: DispatcherService(bus))


if __name__ == "__main__":
    main()
