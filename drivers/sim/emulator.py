"""Common machinery of the simulated SMUs: virtual time, the device under test, an error queue.

An emulator answers one command line at a time (``handle`` returns the reply line or None). Every
command costs ``latency_s`` of virtual time; sourcing operations hold the device at the output voltage
for as long as they last on the virtual clock, so the device state is exactly what the physics says.
"""

from __future__ import annotations

import numpy as np

from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DeviceArray
from drivers.sim.faults import Faults

DEFAULT_LATENCY_S = 50e-6  # virtual time one command costs (a fast USB/LAN round trip)


class SmuEmulator:
    """Base of the SMU emulators: one device on one channel, sourcing voltage, measuring current."""

    idn = "SIM"
    aperture_s = 200e-6  # virtual duration of one current measurement
    default_limit_a = 1.05e-4

    def __init__(self, clock: VirtualClock, device: DeviceArray, faults: Faults | None = None) -> None:
        self.clock = clock
        self.device = device
        self.faults = faults or Faults()
        self.latency_s = DEFAULT_LATENCY_S
        self.errors: list[tuple[int, str]] = []
        self._t_device_s = clock.now_s()
        self.reset_state()

    def reset_state(self) -> None:
        """Power-on state: output off at 0 V, default current limit."""
        self.output_on = False
        self.level_v = 0.0
        self.limit_a = self.default_limit_a

    def handle(self, command: str) -> str | None:
        """Execute one command line; returns its reply, or None for commands without one."""
        self.clock.sleep(self.latency_s)
        return self.dispatch(command.strip())

    def dispatch(self, command: str) -> str | None:
        raise NotImplementedError

    # -- physics on the virtual clock ----------------------------------------------------------
    @property
    def applied_v(self) -> float:
        """Voltage on the device terminals now (0 with the output off)."""
        return self.level_v if self.output_on else 0.0

    def settle(self) -> None:
        """Bring the device up to the present virtual time at the voltage it has been held at."""
        now = self.clock.now_s()
        stuck = self.faults.stuck_at_s
        if stuck is not None and self._t_device_s < stuck <= now:
            self.device.hold(self.applied_v, stuck - self._t_device_s)
            self.device.short()
            self._t_device_s = stuck
        self.device.hold(self.applied_v, now - self._t_device_s)
        self._t_device_s = now

    def set_source(self, *, level_v: float | None = None, output_on: bool | None = None) -> None:
        """Change the output level and/or state, integrating the device up to now first."""
        self.settle()
        if level_v is not None:
            self.level_v = level_v
        if output_on is not None:
            self.output_on = output_on

    def hold_for(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass at the present output."""
        self.clock.sleep(seconds)
        self.settle()

    def measure(self) -> tuple[float, float]:
        """One current reading: (virtual timestamp s, current A clamped at the current limit)."""
        self.settle()
        t = self.clock.now_s()
        current = float(self.device.read_current_a(self.applied_v)) if self.output_on else 0.0
        self.hold_for(self.aperture_s)
        return t, float(np.clip(current, -self.limit_a, self.limit_a))

    def measure_train(self, count: int, period_s: float) -> list[tuple[float, float]]:
        """``count`` readings ``period_s`` apart (period >= aperture), as repeated ``measure`` calls would
        give; evaluated in one vectorised call unless the output is off, at a pulse level, or a fault
        is due during the train. Ends one aperture after the last reading."""
        self.settle()
        start = self.clock.now_s()
        span = (count - 1) * period_s + self.aperture_s
        stuck = self.faults.stuck_at_s
        simple = self.output_on and abs(self.level_v) < self.device.card.pulse.v_threshold_v
        if not simple or (stuck is not None and start < stuck <= start + span):
            readings = []
            for k in range(count):
                if k:
                    self.hold_for(period_s - self.aperture_s)
                readings.append(self.measure())
            return readings
        offsets = np.arange(count) * period_s
        currents = np.clip(self.device.read_train_a(self.level_v, offsets), -self.limit_a, self.limit_a)
        self.clock.sleep(float(offsets[-1]))
        self._t_device_s = self.clock.now_s()  # read_train_a left the device state at the last reading
        self.hold_for(self.aperture_s)
        return list(zip((start + offsets).tolist(), currents.tolist(), strict=True))

    def error(self, code: int, message: str) -> None:
        """Push an instrument error onto the queue."""
        self.errors.append((code, message))
