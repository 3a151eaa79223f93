"""The source-measure-unit API every SMU driver offers, with the safety rules enforced in one place.

Subclasses declare their settings with ``control`` (``compliance_a``, ``level_v``, ``output_enabled``),
their ``HardwareLimits`` and per-reading overhead, and implement the instrument-specific sequences
``_pulse`` and ``_read_train``. Everything a user calls goes through this class, which checks the
``SafetyLimits``, the instrument's hardware ranges and the output state *before* any command.

Timing: every read train sets its integration time explicitly (``nplc``, power-line cycles; the line
frequency is asked once per session), so one reading is known to take at most
``reading_time_s() = nplc / line frequency + read_overhead_s`` (autozero is done once before the train,
source readback is off). An interval shorter than that is refused, naming the shortest possible, and
every timeout is derived from the sequence's expected duration.

Every sequence starts from a clean error queue (``*CLS`` / ``errorqueue.clear()``), sets the instrument
state it depends on, reads the error queue *before* it arms (so a rejected setting never fires with the
old value in force) and again after. The compliance is recorded only once the instrument has accepted
it (``drivers.control``): a refused limit leaves the old one in force and recorded. A pulse reads the
output state and level back before it arms and after it ends (on at 0 V both times); a read train checks
its length against the instrument's reading buffer before anything sources, and that the timestamps it
gets back increase. Any exception once a request has passed its checks (a refused setting, an
``*OPC?`` timeout, Ctrl-C) in ``set_compliance``, ``source_voltage``, ``pulse``, ``read_train`` or
``read_current`` takes the output to 0 V and off (``safe_off``) before it propagates. ``safe_off`` sends
a device clear first, so an abort is not queued behind a running script or an unanswered ``*OPC?``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np

from drivers.clock import Clock, WallClock
from drivers.errors import (
    ComplianceError,
    InstrumentRejected,
    InstrumentStateError,
    ProtocolError,
    SafetyError,
)
from drivers.safety import HardwareLimits, PulseRateGuard, SafeOffOnClose, SafetyLimits
from drivers.transport import Transport

# The longest read train any supported SMU can hold (2450 defbuffer1 default size and B2900 trace buffer:
# 100,000 readings; see docs/instruments.md); each driver checks its own ``max_train_points`` and the
# 2600B its buffer's capacity as read back.
MAX_TRAIN_POINTS = 100_000
OUTPUT_ZERO_TOLERANCE_V = 1e-6  # a level read back within this of 0 V is 0 V
COMPLIANCE_FRACTION = 0.99  # a reading at >= 99 % of the compliance means the SMU was clamping
DEFAULT_NPLC = 1.0  # integration time of a read train, power-line cycles (the instruments' default)
TIMEOUT_MARGIN = 1.25  # a sequence gets this many times its expected duration ...
TIMEOUT_SLACK_S = 2.0  # ... plus this (command latency, data transfer)


class ReadTrain(NamedTuple):
    """A hardware-timed read train: instrument timestamps (s, first reading at 0) and currents (A)."""

    t_s: np.ndarray
    i_a: np.ndarray
    read_v: float


# -- validators used by the drivers' declarative settings ----------------------------------------
def voltage_within_limits(smu: Smu, volts: float) -> float:
    """Refuse a source level beyond the user's |V| limit or the instrument's range."""
    return smu.hardware.check_voltage(smu.limits.check_voltage(volts, "source level"), "source level")


def compliance_within_limits(smu: Smu, amps: float) -> float:
    """Refuse a compliance above the user's limit (or not positive) or outside the instrument's range."""
    return smu.hardware.check_compliance(smu.limits.check_compliance(amps))


def output_requires_compliance(smu: Smu, on: bool) -> bool:
    """Refuse to switch an output on before compliance has been set in this session."""
    on = bool(on)
    if on and smu.compliance_set_a is None:
        raise InstrumentStateError(f"{smu.transport.name}: set the compliance before turning the output on")
    return on


def remember_compliance(smu: Smu, amps: float) -> None:
    """Record the compliance in force (called once the instrument has accepted it)."""
    smu.compliance_set_a = amps


def forget_compliance(smu: Smu) -> None:
    """The instrument's compliance is unknown (its error queue could not be read): set it again."""
    smu.compliance_set_a = None


class Smu(SafeOffOnClose):
    """A source-measure unit sourcing voltage and measuring current; use as a context manager."""

    model: ClassVar[str] = "SMU"
    idn_pattern: ClassVar[str] = ""  # substring of *IDN? that identifies this driver's instruments
    abort_command: ClassVar[str] = ""  # stops a running trigger model / sweep
    clear_status_command: ClassVar[str] = "*CLS"  # empties the error queue
    line_frequency_query: ClassVar[str] = ":SYST:LFR?"
    nplc_command: ClassVar[str] = ":SENS:CURR:NPLC {:.6g}"  # integration of immediate readings
    hardware: ClassVar[HardwareLimits]
    read_overhead_s: ClassVar[float] = 1e-3  # upper bound on one reading's time beyond the integration
    max_train_points: ClassVar[int] = MAX_TRAIN_POINTS  # readings the instrument's buffer holds
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
        self._nplc = DEFAULT_NPLC
        self._line_hz: float | None = None
        transport.open()

    # -- instrument-specific hooks -----------------------------------------------------------
    def _reset_commands(self) -> list[str]:
        raise NotImplementedError

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        raise NotImplementedError

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _train_duration_s(self, every_s: float, count: int) -> float:
        """Upper bound on a read train's duration (s): autozero once, then ``count`` readings at least
        ``every_s`` apart (plus at most one reading's overhead each), the last one included."""
        spacing = max(every_s, self.reading_time_s()) + self.read_overhead_s
        return 2 * self.integration_s() + (count - 1) * spacing + self.reading_time_s()

    def _measure_current(self, timeout_s: float) -> float:
        raise NotImplementedError

    def _check_errors(self) -> None:
        raise NotImplementedError

    # -- measurement timing ----------------------------------------------------------------------
    @property
    def nplc(self) -> float:
        """Integration time of each reading, in power-line cycles (set on the instrument by every read
        train); assigning checks the instrument's range and sends nothing."""
        return self._nplc

    @nplc.setter
    def nplc(self, value: float) -> None:
        self._nplc = self.hardware.check_nplc(value)

    def line_frequency_hz(self) -> float:
        """The mains frequency the instrument integrates over (Hz), asked once per session."""
        if self._line_hz is None:
            reply = self.transport.query(self.line_frequency_query)
            try:
                hz = float(reply)
            except ValueError:
                raise ProtocolError(
                    f"{self.transport.name}: cannot read the line frequency from {reply!r}"
                ) from None
            if not 40.0 <= hz <= 70.0:
                raise ProtocolError(f"{self.transport.name}: implausible line frequency {hz:g} Hz")
            self._line_hz = hz
        return self._line_hz

    def integration_s(self) -> float:
        """One integration: NPLC / line frequency (s)."""
        return self._nplc / self.line_frequency_hz()

    def reading_time_s(self) -> float:
        """Upper bound on the time one reading of a read train takes (s): the integration plus the
        instrument's per-reading overhead. The shortest read interval possible."""
        return self.integration_s() + self.read_overhead_s

    def check_read_train(self, read_v: float, every_s: float, count: int) -> float:
        """Refuse a read train that the limits, the instrument or its measurement time do not allow,
        before anything sources (asks only the line frequency); returns ``read_v`` as float.

        Use it before a pulse whose decay the train is to record, so a refused train costs no pulse."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        read_v = self.hardware.check_voltage(read_v, "read voltage")
        if not (isinstance(every_s, int | float) and math.isfinite(every_s) and every_s > 0):
            raise SafetyError(f"read interval must be a positive number of seconds, got {every_s!r}")
        if not (isinstance(count, int) and 1 <= count <= self.max_train_points):
            raise SafetyError(
                f"read count must be an integer in 1..{self.max_train_points} (the {self.model}'s reading "
                f"buffer), got {count!r}"
            )
        self._require_compliance()
        shortest = self.reading_time_s()
        if count > 1 and every_s < shortest:
            raise SafetyError(
                f"{self.transport.name}: read interval {every_s:g} s is shorter than one reading at NPLC "
                f"{self._nplc:g} ({self.line_frequency_hz():g} Hz mains); the shortest possible interval is "
                f"{_round_up(shortest)} s (or lower the NPLC)"
            )
        return read_v

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
        """Set the current compliance in amperes (checked against the safety limits first); recorded once
        the instrument has accepted it (``InstrumentRejected`` otherwise, the old compliance in force)."""
        current_a = self._checked_compliance(current_a)
        with self._off_on_error():
            self.compliance_a = current_a

    def _checked_compliance(self, current_a: float) -> float:
        return self.hardware.check_compliance(self.limits.check_compliance(current_a))

    def source_voltage(self, volts: float) -> None:
        """Source a DC voltage (V) with the output on; needs compliance set first."""
        volts = self.hardware.check_voltage(self.limits.check_voltage(volts, "source level"), "source level")
        self._require_compliance()
        with self._off_on_error():
            self._begin()
            self.level_v = volts
            self.output_enabled = True
            self._check_errors()

    def output_off(self) -> None:
        """Return the source to 0 V and switch the output off."""
        self.level_v = 0.0
        self.output_enabled = False

    def pulse(self, amplitude_v: float, width_s: float) -> None:
        """Apply one hardware-timed voltage pulse (V, s) from a 0 V base; the output is on at 0 V before
        the pulse fires and after it ends (both read back). On any exception the output goes to 0 V and
        off before the exception propagates."""
        amplitude_v, width_s = self.hardware.check_pulse(*self.limits.check_pulse(amplitude_v, width_s))
        self._require_compliance()
        self._rate.check()
        self._rate.record()
        with self._off_on_error():
            self._begin()
            self._pulse(amplitude_v, width_s)
            self._check_errors()
            self._expect_output_on_at_zero("after the pulse")

    def read_train(self, read_v: float, every_s: float, count: int) -> ReadTrain:
        """``count`` hardware-timed current readings at ``read_v`` (V), one every ``every_s`` (s).

        Each reading integrates for ``nplc`` power-line cycles; ``every_s`` must be at least
        ``reading_time_s()`` (else ``SafetyError`` naming the shortest possible, nothing sourced).
        Returns instrument timestamps (s, relative to the first reading) and currents (A); raises
        ``ComplianceError`` (with the data attached) if any reading sat at the compliance limit, and
        ``ProtocolError`` if the timestamps do not increase (a wrapped buffer or a rolled-over timer). On
        any exception the output goes to 0 V and off before the exception propagates.
        """
        read_v = self.check_read_train(read_v, every_s, count)
        with self._off_on_error():
            self._begin()
            t_s, i_a = self._read_train(read_v, float(every_s), count)
            self._check_errors()
            if len(t_s) != count or len(i_a) != count:
                raise ProtocolError(f"{self.transport.name}: asked for {count} readings, got {len(i_a)}")
            if count > 1 and not np.all(np.diff(t_s) > 0):
                first = int(np.argmax(np.diff(t_s) <= 0)) + 1
                raise ProtocolError(
                    f"{self.transport.name}: instrument timestamps do not increase at reading {first} "
                    f"({t_s[first - 1]!r} s, then {t_s[first]!r} s): wrapped buffer or timer rollover"
                )
            t_s = t_s - t_s[0]
            self._check_compliance(t_s, i_a)
        return ReadTrain(t_s, i_a, read_v)

    def read_current(self, read_v: float) -> float:
        """One current reading (A) integrated over ``nplc`` cycles with the source at ``read_v`` (V); the
        output is left on."""
        self.source_voltage(read_v)
        with self._off_on_error():
            self.transport.write(self.nplc_command.format(self.nplc))
            # autozero (left as the user set it) may add a reference and a zero integration to the reading
            current = self._measure_current(TIMEOUT_MARGIN * 3 * self.reading_time_s() + TIMEOUT_SLACK_S)
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

    @contextlib.contextmanager
    def _off_on_error(self) -> Iterator[None]:
        """Any exception inside (after the request was checked and sending began) takes the output to
        0 V and off before it propagates."""
        try:
            yield
        except BaseException:
            self.safe_off()
            raise

    def _expect_output_on_at_zero(self, when: str) -> None:
        """Read back the output state and level; a pulse starts and ends with the output on at 0 V."""
        on, level = self.output_enabled, self.level_v
        if not on or abs(level) > OUTPUT_ZERO_TOLERANCE_V:
            raise InstrumentStateError(
                f"{self.transport.name}: {when} the output should be on at 0 V; it reads "
                f"{'on' if on else 'off'} at {level:g} V"
            )

    def _begin(self) -> None:
        """Start of a sequence: an empty error queue, so any error read later is this sequence's."""
        self.transport.write(self.clear_status_command)

    def _wait_complete(self, duration_s: float) -> None:
        """``*OPC?`` with a timeout covering a sequence expected to take ``duration_s`` (s)."""
        budget = TIMEOUT_MARGIN * duration_s + max(TIMEOUT_SLACK_S, self.transport.timeout_s)
        reply = self.transport.query("*OPC?", timeout_s=budget)
        if reply.strip() != "1":
            raise ProtocolError(f"{self.transport.name}: expected 1 to *OPC?, got {reply[:60]!r}")

    def reconnect(self) -> None:
        """Reopen a dropped link; the instrument's state is unknown, so compliance must be set again."""
        self.transport.reconnect()
        self.compliance_set_a = None
        self._line_hz = None
        self.safe_off()

    def safe_off(self) -> None:
        """Best effort: device clear, abort any running sequence, then 0 V / output off; never raises.

        Used on the way out of errors and interrupts, when a pulse or read train may still be running:
        the device clear first empties the instrument's input and output queues and ends a command that
        holds its parser (a running TSP script, an unanswered ``*OPC?``), so the abort is executed now
        instead of queued behind the sequence, and a late reply cannot answer a later query.
        """
        with contextlib.suppress(Exception):  # the link may be down: the commands below still get a try
            self.transport.clear()
        with contextlib.suppress(Exception):  # the link may be down: there is nothing more a driver can do
            self.transport.write(self.abort_command)
            self.output_off()

    def _parse_floats(self, reply: str, what: str) -> np.ndarray:
        try:
            return np.array([float(x) for x in reply.replace(";", ",").split(",") if x.strip()], dtype=float)
        except ValueError:
            raise ProtocolError(f"{self.transport.name}: cannot parse {what} from {reply[:60]!r}") from None

    def _scpi_check_errors(self, query: str = ":SYST:ERR?") -> None:
        """Read the SCPI error queue; a non-zero code raises ``InstrumentRejected``."""
        reply = self.transport.query(query)
        code, _, message = reply.partition(",")
        try:
            number = int(code)
        except ValueError:
            raise ProtocolError(
                f"{self.transport.name}: unreadable error-queue reply {reply[:60]!r}"
            ) from None
        if number != 0:
            raise InstrumentRejected(
                f"{self.transport.name} reported error {number}: {message.strip(chr(34))}"
            )


def _round_up(seconds: float) -> str:
    """``seconds`` rounded up to 3 significant digits, as text (a bound the user can type back)."""
    digits = 2 - math.floor(math.log10(seconds))
    return f"{math.ceil(seconds * 10**digits) / 10**digits:.{max(digits, 0)}f}"
