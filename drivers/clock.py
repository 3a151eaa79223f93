"""The clock a driver waits on: wall time for real instruments, the simulated lab's virtual time otherwise."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Seconds on a monotonic time line, and a way to let time pass."""

    def now_s(self) -> float:
        """Current time in seconds (monotonic; the origin is arbitrary)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        ...


class WallClock:
    """Real time: ``time.monotonic`` and ``time.sleep``."""

    def now_s(self) -> float:
        """Monotonic wall time in seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` of real time."""
        if seconds > 0:
            time.sleep(seconds)
