"""Crossbar controller driver: the line protocol of ``docs/crossbar-controller-protocol.md`` over serial.

One command per line, one reply per command: ``OK``, ``ERR <CODE> <message>`` or values. The driver
checks every request against the ``SafetyLimits`` (and the array size) before sending it, and turns
``ERR`` replies into typed errors (``ERR COMPLIANCE`` -> ``ComplianceError``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from drivers.clock import Clock, WallClock
from drivers.errors import ComplianceError, InstrumentError, InstrumentStateError, ProtocolError, SafetyError
from drivers.safety import PulseRateGuard, SafeOffOnClose, SafetyLimits
from drivers.transport import Transport


class Reading(NamedTuple):
    """One device read: controller timestamp (s) and current (A)."""

    t_s: float
    i_a: float


class RowReading(NamedTuple):
    """One row read: controller timestamp (s) and the current of every column (A), shape (cols,)."""

    t_s: float
    i_a: np.ndarray


class RowTrain(NamedTuple):
    """Repeated row reads: controller timestamps (s, first read at 0), shape (count,), and currents (A),
    shape (count, cols)."""

    t_s: np.ndarray
    i_a: np.ndarray


class CrossbarController(SafeOffOnClose):
    """A serial crossbar controller addressing ``rows`` x ``cols`` devices; use as a context manager."""

    model = "crossbar controller"

    def __init__(self, transport: Transport, limits: SafetyLimits, clock: Clock | None = None) -> None:
        if not isinstance(limits, SafetyLimits):
            raise SafetyError("opening an instrument for sourcing requires SafetyLimits")
        self.transport = transport
        self.limits = limits
        self.clock: Clock = clock or WallClock()
        self.compliance_set_a: float | None = None
        self._rate = PulseRateGuard(limits, self.clock)
        transport.open()
        self.rows, self.cols = self._size()

    # -- protocol plumbing -------------------------------------------------------------------
    def _ask(self, command: str) -> str:
        """Send one command; return its value reply, raising typed errors for ``ERR`` replies."""
        reply = self.transport.query(command).strip()
        if reply.startswith("ERR"):
            code, _, message = reply[3:].strip().partition(" ")
            if code == "COMPLIANCE":
                raise ComplianceError(f"{self.transport.name}: {message} (stuck-on or shorted device?)")
            raise InstrumentError(f"{self.transport.name} refused {command!r}: {code} {message}")
        return reply

    def _ok(self, command: str) -> None:
        reply = self._ask(command)
        if reply != "OK":
            raise ProtocolError(f"{self.transport.name}: expected OK to {command!r}, got {reply[:60]!r}")

    def _values(self, command: str, n: int) -> np.ndarray:
        reply = self._ask(command)
        try:
            values = np.array([float(x) for x in reply.split(",")], dtype=float)
        except ValueError:
            raise ProtocolError(f"{self.transport.name}: cannot parse numbers from {reply[:60]!r}") from None
        if len(values) != n:
            raise ProtocolError(
                f"{self.transport.name}: expected {n} values to {command!r}, got {len(values)}"
            )
        return values

    def _size(self) -> tuple[int, int]:
        rows, cols = self._values("SIZE?", 2)
        return int(rows), int(cols)

    def _check_address(self, row: int, col: int | None = None) -> None:
        if not (isinstance(row, int | np.integer) and 0 <= row < self.rows):
            raise SafetyError(f"row {row!r} is outside the {self.rows}x{self.cols} array")
        if col is not None and not (isinstance(col, int | np.integer) and 0 <= col < self.cols):
            raise SafetyError(f"column {col!r} is outside the {self.rows}x{self.cols} array")

    def _require_compliance(self) -> None:
        if self.compliance_set_a is None:
            raise InstrumentStateError(f"{self.transport.name}: set the compliance before pulsing or reading")

    # -- operations --------------------------------------------------------------------------
    def identify(self) -> str:
        """The controller's identification string."""
        return self._ask("*IDN?")

    def firmware_version(self) -> str:
        """The firmware version string."""
        return self._ask("VER?")

    def reset(self) -> None:
        """All lines to 0 V, selection cleared, compliance cleared (must be set again)."""
        self._ok("RST")
        self.compliance_set_a = None

    def set_compliance(self, current_a: float) -> None:
        """Set the current limit (A) of every read and pulse."""
        current_a = self.limits.check_compliance(current_a)
        self._ok(f"ILIM {current_a:.6g}")
        self.compliance_set_a = current_a

    def select(self, row: int, col: int) -> None:
        """Select the device at (row, col) for ``PULSE`` / ``READ``."""
        self._check_address(row, col)
        self._ok(f"SEL {row} {col}")

    def pulse_device(self, row: int, col: int, amplitude_v: float, width_s: float) -> None:
        """One voltage pulse (V, s) on the device at (row, col)."""
        amplitude_v, width_s = self.limits.check_pulse(amplitude_v, width_s)
        self._check_address(row, col)
        self._require_compliance()
        self._rate.check()
        self.select(row, col)
        self._rate.record()
        self._ok(f"PULSE {amplitude_v:.6g} {width_s:.6g}")

    def pulse_row(self, row: int, amplitudes_v: Sequence[float], width_s: float) -> None:
        """Pulse every device of ``row`` at once, column j with ``amplitudes_v[j]`` (V; 0 = no pulse)."""
        self._check_address(row)
        if len(amplitudes_v) != self.cols:
            raise SafetyError(
                f"pulse_row needs {self.cols} amplitudes (one per column), got {len(amplitudes_v)}"
            )
        checked = [self.limits.check_pulse(a, width_s)[0] for a in amplitudes_v]
        width_s = self.limits.check_pulse(0.0, width_s)[1]
        self._require_compliance()
        self._rate.check()
        self._rate.record()
        self._ok(f"PULSEROW {row} {width_s:.6g} " + ",".join(f"{a:.6g}" for a in checked))

    def read_device(self, row: int, col: int, read_v: float) -> Reading:
        """Current (A) of the device at (row, col) at ``read_v`` (V), with the controller's timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row, col)
        self._require_compliance()
        self.select(row, col)
        t_s, i_a = self._values(f"READ {read_v:.6g}", 2)
        return Reading(float(t_s), float(i_a))

    def read_row(self, row: int, read_v: float) -> RowReading:
        """Currents (A) of every device of ``row`` at ``read_v`` (V), one CSV line, and its timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row)
        self._require_compliance()
        values = self._values(f"READROW {row} {read_v:.6g}", self.cols + 1)
        return RowReading(float(values[0]), values[1:])

    def read_row_train(self, row: int, read_v: float, every_s: float, count: int) -> RowTrain:
        """``count`` reads of ``row`` at ``read_v`` (V), waiting ``every_s`` (s) between them (host-timed:
        the spacing is every_s plus one read's round trip; use the returned controller timestamps)."""
        if not (isinstance(count, int) and count >= 1):
            raise SafetyError(f"read count must be a positive integer, got {count!r}")
        if not every_s >= 0:
            raise SafetyError(f"read interval must be >= 0 s, got {every_s!r}")
        t = np.empty(count)
        i = np.empty((count, self.cols))
        for k in range(count):
            if k:
                self.wait(every_s)
            t[k], i[k] = self.read_row(row, read_v)
        return RowTrain(t - t[0], i)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the controller's clock (virtual time on the simulated lab)."""
        self.clock.sleep(seconds)

    # -- lifetime ----------------------------------------------------------------------------
    def reconnect(self) -> None:
        """Reopen a dropped link; the controller's state is unknown, so compliance must be set again."""
        self.transport.reconnect()
        self.compliance_set_a = None
        self.safe_off()

    def safe_off(self) -> None:
        """Best effort: every line back to 0 V (``RST``); never raises."""
        with contextlib.suppress(Exception):  # the link may be down: there is nothing more a driver can do
            self.reset()
