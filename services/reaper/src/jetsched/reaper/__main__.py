from __future__ import annotations

from jetsched.bus.service import main as run_service

from .service import ReaperService


def main() -> None:
    run_service("reaper", lambda args, bus: ReaperService(bus))


if __name__ == "__main__":
    main()
