"""The lines of a simulated crossbar: what any simulated array board (the serial controller's firmware,
the ArC TWO fake) applies to a ``SimArray``, on its virtual clock.

Idle lines sit at 0 V, so between operations every device relaxes at tau(0 V); a drive holds the given
voltage on every device for its duration; a read drives the read voltage for the card's read time. Every
drive is recorded on ``scope`` (what an oscilloscope on the lines would show), the ground truth tests use
to tell whether a pulse reached the devices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray


class Drive(NamedTuple):
    """One application of voltages to the array: start (s, virtual), largest |V|, duration (s), kind."""

    t_s: float
    max_abs_v: float
    duration_s: float
    what: str


class ArrayLines:
    """Drives a ``SimArray``: ``drive`` (pulses), ``read`` (noisy currents), idle relaxation in between.
    ``faults.stuck_at_s`` shorts ``faults.stuck_device`` when that virtual time comes.

    A drive of one row (``row=``; all lines of the other rows sit at 0 V) evolves only that row: the
    devices of every row carry their own time (``array.settled_s``) and relax at 0 V up to "now" when
    their row is next driven or read. Decay at 0 V composes exactly, so this is the same physics as
    evolving the whole array at every command, at the cost of one row.
    """

    def __init__(self, array: SimArray, faults: Faults | None = None) -> None:
        self.array = array
        self.faults = faults or Faults()
        self.scope: list[Drive] = []
        self._rows = [array.devices.part(r) for r in range(array.rows)]  # views: one row's devices

    def settle(self, row: int | None = None) -> None:
        """Relax the devices of ``row`` (default: every row) at 0 V up to now, shorting the faulty one
        when its time comes."""
        for r in range(self.array.rows) if row is None else (row,):
            now, since = self.array.clock.now_s(), float(self.array.settled_s[r])
            devices = self._rows[r]
            stuck, (stuck_row, stuck_col) = self.faults.stuck_at_s, self.faults.stuck_device
            if stuck is not None and r == stuck_row and since < stuck <= now:
                devices.hold(0.0, stuck - since)
                devices.short((stuck_col,))
                since = stuck
            devices.hold(0.0, now - since)
            self.array.settled_s[r] = now

    def drive(
        self, volts: np.ndarray, duration_s: float, what: str = "pulse", row: int | None = None
    ) -> None:
        """Hold ``volts`` (V) on the devices for ``duration_s`` (s) of virtual time: shape (rows, cols), or
        (cols,) on the lines of ``row`` alone (every other row at 0 V)."""
        self.settle(row)
        self.scope.append(Drive(self.array.clock.now_s(), float(np.abs(volts).max()), duration_s, what))
        (self.array.devices if row is None else self._rows[row]).hold(volts, duration_s)
        self.array.clock.sleep(duration_s)
        if row is None:
            self.array.settled_s[:] = self.array.clock.now_s()
        else:
            self.array.settled_s[row] = self.array.clock.now_s()

    def read(self, volts: np.ndarray, row: int | None = None) -> np.ndarray:
        """Noisy currents (A) at ``volts`` (shape (rows, cols), or (cols,) on ``row`` alone); the read
        lasts the card's read time."""
        self.settle(row)
        current = (self.array.devices if row is None else self._rows[row]).read_current_a(volts)
        self.drive(volts, self.array.card.read.read_time_s, "read", row)
        return current
