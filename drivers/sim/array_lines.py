"""The lines of a simulated crossbar: what any simulated array board (the serial controller's firmware,
the ArC TWO fake) applies to a ``SimArray``, on its virtual clock.

Idle lines sit at their bias (``set_bias``: row_v, col_v; 0 V unless a v3 controller set one), so
between operations device (r, c) relaxes at tau(row_v[r] - col_v[c]) and draws the bias power V^2 G
(``bias_energy_j``); a drive holds the given voltage on the driven devices for its duration; a read
drives the read voltage for the card's read time. Every drive is recorded on ``scope`` (what an
oscilloscope on the lines would show), the ground truth tests use to tell whether a pulse reached the devices.
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

    A drive of one row (``row=``; the other rows keep their bias) evolves only that row: the devices of
    every row carry their own time (``array.settled_s``) and relax at their bias up to "now" when their
    row is next driven or read. Decay at a constant bias composes exactly, so this is the same physics as
    evolving the whole array at every command, at the cost of one row; ``set_bias`` settles every row at
    the old bias before the new one holds.
    """

    def __init__(self, array: SimArray, faults: Faults | None = None) -> None:
        self.array = array
        self.faults = faults or Faults()
        self.scope: list[Drive] = []
        self._rows = [array.devices.part(r) for r in range(array.rows)]  # views: one row's devices
        self.row_v, self.col_v = np.zeros(array.rows), np.zeros(array.cols)
        self.bias_v = np.zeros((array.rows, array.cols))  # device (r, c) idles at row_v[r] - col_v[c]
        self.bias_energy_j = 0.0  # sum over idle intervals of V^2 G dt (trapezoid in G)

    def set_bias(self, row_v: np.ndarray, col_v: np.ndarray) -> None:
        """Hold the row and column lines at ``row_v`` (rows,), ``col_v`` (cols,) V from now on."""
        self.settle()
        self.row_v, self.col_v = np.asarray(row_v, dtype=float), np.asarray(col_v, dtype=float)
        self.bias_v = self.row_v[:, None] - self.col_v[None, :]

    def settle(self, row: int | None = None) -> None:
        """Relax the devices of ``row`` (default: every row) at their bias up to now, counting the bias
        energy and shorting the faulty device when its time comes."""
        for r in range(self.array.rows) if row is None else (row,):
            now, since = self.array.clock.now_s(), float(self.array.settled_s[r])
            devices = self._rows[r]
            stuck, (stuck_row, stuck_col) = self.faults.stuck_at_s, self.faults.stuck_device
            if stuck is not None and r == stuck_row and since < stuck <= now:
                self._idle(r, stuck - since)
                devices.short((stuck_col,))
                since = stuck
            self._idle(r, now - since)
            self.array.settled_s[r] = now

    def _idle(self, r: int, duration_s: float) -> None:
        """Row ``r`` held at its bias for ``duration_s``; its bias energy counted."""
        if duration_s <= 0:
            return
        devices, v = self._rows[r], self.bias_v[r]
        if not v.any():
            devices.hold(0.0, duration_s)
            return
        g_before = devices.conductance_siemens()
        devices.hold(v, duration_s)
        g_mean = (g_before + devices.conductance_siemens()) / 2
        self.bias_energy_j += float(np.sum(v**2 * g_mean) * duration_s)

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

    def pulse_train(
        self, row: int, volts: np.ndarray, widths_s: np.ndarray, counts: np.ndarray, gap_s: float
    ) -> float:
        """Pulse the devices of ``row`` at once, each its own train: ``counts[c]`` pulses of ``volts[c]``
        (V) and ``widths_s[c]`` (s), ``gap_s`` apart; the row's other devices keep their bias. Lasts the
        longest train, count width + (count - 1) gap; returns that duration (s)."""
        self.settle(row)
        on = counts > 0
        duration = float(np.max(np.where(on, counts * widths_s + (counts - 1) * gap_s, 0.0)))
        if duration <= 0:
            return 0.0
        self.scope.append(Drive(self.array.clock.now_s(), float(np.abs(volts[on]).max()), duration, "pulse"))
        self._rows[row].pulse_train(volts, widths_s, counts, self.bias_v[row], duration)
        self.array.clock.sleep(duration)
        self.array.settled_s[row] = self.array.clock.now_s()
        return duration

    def read(self, volts: np.ndarray, row: int | None = None) -> np.ndarray:
        """Noisy currents (A) at ``volts`` (shape (rows, cols), or (cols,) on ``row`` alone); the read
        lasts the card's read time."""
        self.settle(row)
        current = (self.array.devices if row is None else self._rows[row]).read_current_a(volts)
        self.drive(volts, self.array.card.read.read_time_s, "read", row)
        return current
