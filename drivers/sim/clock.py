"""The simulated lab's virtual clock: time passes only when an instrument operation or a wait says so."""

from __future__ import annotations


class VirtualClock:
    """Seconds of virtual time; ``sleep`` advances it instantly, so a 10 s decay costs no wall time."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)

    def now_s(self) -> float:
        """Current virtual time in seconds."""
        return self._now_s

    def sleep(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` (negative values are ignored)."""
        if seconds > 0:
            self._now_s += float(seconds)
