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
    ``faults.stuck_at_s`` shorts ``faults.stuck_device`` when that virtual time comes."""

    def __init__(self, array: SimArray, faults: Faults | None = None) -> None:
        self.array = array
        self.faults = faults or Faults()
        self.scope: list[Drive] = []
        self.t_devices_s = array.clock.now_s()

    def settle(self) -> None:
        """Relax every device at 0 V up to now (shorting the faulty one when its time comes)."""
        now = self.array.clock.now_s()
        stuck = self.faults.stuck_at_s
        if stuck is not None and self.t_devices_s < stuck <= now:
            self.array.devices.hold(0.0, stuck - self.t_devices_s)
            self.array.devices.short(self.faults.stuck_device)
            self.t_devices_s = stuck
        self.array.devices.hold(0.0, now - self.t_devices_s)
        self.t_devices_s = now

    def drive(self, volts: np.ndarray, duration_s: float, what: str = "pulse") -> None:
        """Hold ``volts`` (V, shape (rows, cols)) on the devices for ``duration_s`` (s) of virtual time."""
        self.settle()
        self.scope.append(Drive(self.array.clock.now_s(), float(np.abs(volts).max()), duration_s, what))
        self.array.devices.hold(volts, duration_s)
        self.array.clock.sleep(duration_s)
        self.t_devices_s = self.array.clock.now_s()

    def read(self, volts: np.ndarray) -> np.ndarray:
        """Noisy currents (A, shape (rows, cols)) at ``volts``; the read lasts the card's read time."""
        self.settle()
        current = self.array.devices.read_current_a(volts)
        self.drive(volts, self.array.card.read.read_time_s, "read")
        return current
