"""The source-measure-unit API every SMU driver offers, with the safety rules enforced in one place.

Subclasses declare their settings with ``control`` (``compliance_a``, ``level_v``, ``output_enabled``)
and implement the instrument-specific sequences ``_pulse`` and ``_read_train``. Everything a user calls
goes through this class, which checks the ``SafetyLimits`` and the output state *before* any command.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np

from drivers.clock import Clock, WallClock
from drivers.errors import ComplianceError, InstrumentError, InstrumentStateError, ProtocolError, SafetyError
from drivers.safety import PulseRateGuard, SafeOffOnClose, SafetyLimits
from drivers.transport import Transport

MAX_TRAIN_POINTS = 100_000  # the smallest reading buffer of the supported SMUs
COMPLIANCE_FRACTION = 0.99  # a reading at >= 99 % of the compliance means the SMU was clamping


class ReadTrain(NamedTuple):
    """A hardware-timed read train: instrument timestamps (s, first reading at 0) and currents (A)."""

    t_s: np.ndarray
    i_a: np.ndarray
    read_v: float


# -- validators used by the drivers' declarative settings ----------------------------------------
def voltage_within_limits(smu: Smu, volts: float) -> float:
    """Refuse a source level beyond the user's |V| limit."""
    return smu.limits.check_voltage(volts, "source level")


def compliance_within_limits(smu: Smu, amps: float) -> float:
    """Refuse a compliance above the user's limit (or not positive)."""
    return smu.limits.check_compliance(amps)


def output_requires_compliance(smu: Smu, on: bool) -> bool:
    """Refuse to switch an output on before compliance has been set in this session."""
    on = bool(on)
    if on and smu.compliance_set_a is None:
        raise InstrumentStateError(f"{smu.transport.name}: set the compliance before turning the output on")
    return on


def remember_compliance(smu: Smu, amps: float) -> None:
    """Record that compliance is set (the output may now be switched on)."""
    smu.compliance_set_a = amps


class Smu(SafeOffOnClose):
    """A source-measure unit sourcing voltage and measuring current; use as a context manager."""

    model: ClassVar[str] = "SMU"
    idn_pattern: ClassVar[str] = ""  # substring of *IDN? that identifies this driver's instruments
    abort_command: ClassVar[str] = ""  # stops a running trigger model / sweep
    compliance_a: Any
    level_v: Any
    output_enabled: Any

    def __init__(self, transport: Transport, limits: SafetyLimits, clock: Clock | None = None) -> None:
        if not isinstance(limits, SafetyLimits):
            raise SafetyError("opening an instrument for sourcing requires SafetyLimits")
        self.transport = transport
        self.limits = limits
        self.clock: Clock = clock or WallClock()
        self.compliance_set_a: float | None = None
        self._rate = PulseRateGuard(limits, self.clock)
        transport.open()

    # -- instrument-specific hooks -----------------------------------------------------------
    def _reset_commands(self) -> list[str]:
        raise NotImplementedError

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        raise NotImplementedError

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _measure_current(self) -> float:
        raise NotImplementedError

    def _check_errors(self) -> None:
        raise NotImplementedError

    # -- operations --------------------------------------------------------------------------
    def identify(self) -> str:
        """The instrument's ``*IDN?`` string."""
        return self.transport.query("*IDN?").strip()

    def reset(self) -> None:
        """Reset to power-on defaults (output off); compliance must be set again before sourcing."""
        for command in self._reset_commands():
            self.transport.write(command)
        self.compliance_set_a = None
        self._check_errors()

    def set_compliance(self, current_a: float) -> None:
        """Set the current compliance in amperes (checked against the safety limits first)."""
        self.compliance_a = current_a
        self._check_errors()

    def source_voltage(self, volts: float) -> None:
        """Source a DC voltage (V) with the output on; needs compliance set first."""
        volts = self.limits.check_voltage(volts, "source level")
        self._require_compliance()
        self.level_v = volts
        self.output_enabled = True
        self._check_errors()

    def output_off(self) -> None:
        """Return the source to 0 V and switch the output off."""
        self.level_v = 0.0
        self.output_enabled = False

    def pulse(self, amplitude_v: float, width_s: float) -> None:
        """Apply one hardware-timed voltage pulse (V, s) from a 0 V base; the output stays on at 0 V."""
        amplitude_v, width_s = self.limits.check_pulse(amplitude_v, width_s)
        self._require_compliance()
        self._rate.check()
        self._rate.record()
        self._pulse(amplitude_v, width_s)
        self._check_errors()

    def read_train(self, read_v: float, every_s: float, count: int) -> ReadTrain:
        """``count`` hardware-timed current readings at ``read_v`` (V), one every ``every_s`` (s).

        Returns instrument timestamps (s, relative to the first reading) and currents (A); raises
        ``ComplianceError`` (with the data attached) if any reading sat at the compliance limit.
        """
        read_v = self.limits.check_voltage(read_v, "read voltage")
        if not (isinstance(every_s, int | float) and math.isfinite(every_s) and every_s > 0):
            raise SafetyError(f"read interval must be a positive number of seconds, got {every_s!r}")
        if not (isinstance(count, int) and 1 <= count <= MAX_TRAIN_POINTS):
            raise SafetyError(f"read count must be an integer in 1..{MAX_TRAIN_POINTS}, got {count!r}")
        self._require_compliance()
        t_s, i_a = self._read_train(read_v, float(every_s), count)
        self._check_errors()
        if len(t_s) != count or len(i_a) != count:
            raise ProtocolError(f"{self.transport.name}: asked for {count} readings, got {len(i_a)}")
        t_s = t_s - t_s[0]
        self._check_compliance(t_s, i_a)
        return ReadTrain(t_s, i_a, read_v)

    def read_current(self, read_v: float) -> float:
        """One current reading (A) with the source at ``read_v`` (V); the output is left on."""
        self.source_voltage(read_v)
        current = self._measure_current()
        self._check_compliance(np.zeros(1), np.array([current]))
        return current

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the instrument's clock (virtual time on the simulated lab)."""
        self.clock.sleep(seconds)

    # -- safety plumbing -----------------------------------------------------------------------
    def _require_compliance(self) -> None:
        if self.compliance_set_a is None:
            raise InstrumentStateError(f"{self.transport.name}: set the compliance before sourcing")

    def _check_compliance(self, t_s: np.ndarray, i_a: np.ndarray) -> None:
        limit = self.compliance_set_a or math.inf
        hit = np.abs(i_a) >= COMPLIANCE_FRACTION * limit
        if hit.any():
            first = int(np.argmax(hit))
            raise ComplianceError(
                f"{self.transport.name}: current reached the {limit:g} A compliance at reading {first} "
                f"(t = {t_s[first]:.6g} s): stuck-on or shorted device?",
                t_s=t_s,
                i_a=i_a,
            )

    def _wait_complete(self, duration_s: float) -> None:
        """``*OPC?`` with a timeout covering a sequence expected to take ``duration_s`` (s)."""
        reply = self.transport.query("*OPC?", timeout_s=1.5 * duration_s + self.transport.timeout_s)
        if reply.strip() != "1":
            raise ProtocolError(f"{self.transport.name}: expected 1 to *OPC?, got {reply[:60]!r}")

    def reconnect(self) -> None:
        """Reopen a dropped link; the instrument's state is unknown, so compliance must be set again."""
        self.transport.reconnect()
        self.compliance_set_a = None
        self.safe_off()

    def safe_off(self) -> None:
        """Best effort: abort any running sequence, then 0 V / output off; never raises.

        Used on the way out of errors and interrupts, when a pulse or read train may still be running.
        """
        with contextlib.suppress(Exception):  # the link may be down: there is nothing more a driver can do
            self.transport.write(self.abort_command)
            self.output_off()

    def _parse_floats(self, reply: str, what: str) -> np.ndarray:
        try:
            return np.array([float(x) for x in reply.replace(";", ",").split(",") if x.strip()], dtype=float)
        except ValueError:
            raise ProtocolError(f"{self.transport.name}: cannot parse {what} from {reply[:60]!r}") from None

    def _scpi_check_errors(self, query: str = ":SYST:ERR?") -> None:
        """Read the SCPI error queue; a non-zero code raises ``InstrumentError``."""
        reply = self.transport.query(query)
        code, _, message = reply.partition(",")
        try:
            number = int(code)
        except ValueError:
            raise ProtocolError(
                f"{self.transport.name}: unreadable error-queue reply {reply[:60]!r}"
            ) from None
        if number != 0:
            raise InstrumentError(f"{self.transport.name} reported error {number}: {message.strip(chr(34))}")
