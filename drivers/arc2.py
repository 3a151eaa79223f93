"""ArC TWO (ArC Instruments) as a crossbar-array controller, on its Python bindings ``pyarc2`` 0.6.

ArC TWO is 64 channels that can be wired to any array; the channel map below is ArC2Control's
``standard32`` mapping (PLCC 32x32 daughterboard): row r is wordline r, column c is bitline c. A row is
read or pulsed in one operation with the row's channel as the "low" channel of a slice:

operation           pyarc2 call (``Instrument`` method, names and signatures of the 0.6.0 type stubs)
pulse one device    ``pulse_one(low=word[r], high=bit[c], voltage, nanos).execute()``, ``wait()``
pulse a row         ``pulse_slice_masked(word[r], voltage, nanos, mask=bits)`` per distinct amplitude
read one device     ``read_one(low=word[r], high=bit[c], vread)``
read a row          ``read_slice_masked(word[r], mask=bits, vread)`` (32 values, bit channels ascending)
between operations  ``ground_all().execute()``, ``wait()``: every channel back to 0 V

Polarity: a positive amplitude or read voltage makes the bitline (column) positive with respect to the
wordline (row). Safety: every request is checked against the user's ``SafetyLimits``, the array and
ArC TWO's ranges before any pyarc2 call. ArC TWO has no current compliance in pyarc2 0.6: the compliance
is checked on every read (``ComplianceError`` at or above it) but nothing clamps the current of a pulse.
Timestamps come from the host clock. What is unverified on a real board: ``docs/instruments.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np

from drivers.array import Reading, RowReading, RowTrain, host_timed_row_train
from drivers.clock import Clock, WallClock
from drivers.errors import ComplianceError, InstrumentError, InstrumentStateError, SafetyError
from drivers.safety import PulseRateGuard, SafetyLimits

# ArC2Control's standard32.toml: the channel of wordline i is WORDS[i], of bitline j is BITS[j].
WORDS = (16, 63, 17, 62, 18, 61, 19, 60, 20, 59, 21, 58, 22, 57, 23, 56,
         24, 55, 25, 54, 26, 53, 27, 52, 28, 51, 29, 50, 30, 49, 31, 48)  # fmt: skip
BITS = (15, 32, 14, 33, 13, 34, 12, 35, 11, 36, 10, 37, 9, 38, 8, 39,
        7, 40, 6, 41, 5, 42, 4, 43, 3, 44, 2, 45, 1, 46, 0, 47)  # fmt: skip
SLICE_ORDER = tuple(sorted(BITS))  # read_slice_masked returns the other group's 32 channels ascending
MAX_ABS_V = 10.0  # ArC TWO channels: ±10 V (20 V span)
MIN_WIDTH_S = 1e-7  # shortest pulse hwloop asks of the high-speed drivers
MAX_WIDTH_S = 1.0
MAX_SIZE = 32


class Arc2Instrument(Protocol):
    """The part of ``pyarc2.Instrument`` this driver uses (signatures of pyarc2 0.6.0's stubs)."""

    def pulse_one(self, low: int, high: int, voltage: float, nanos: int) -> Any: ...

    def pulse_slice_masked(self, chan: int, voltage: float, nanos: int, mask: Iterable[int]) -> Any: ...

    def read_one(self, low: int, high: int, vread: float) -> float: ...

    def read_slice_masked(self, chan: int, mask: Iterable[int], vread: float) -> np.ndarray: ...

    def ground_all(self) -> Any: ...

    def execute(self) -> Any: ...

    def wait(self) -> None: ...


class Arc2Controller:
    """A ``rows`` x ``cols`` array (at most 32 x 32) on an ArC TWO; an ``ArrayController``; use as a
    context manager (every channel to 0 V on exit)."""

    model = "ArC TWO"

    def __init__(
        self,
        instrument: Arc2Instrument,
        limits: SafetyLimits,
        clock: Clock | None = None,
        *,
        rows: int = MAX_SIZE,
        cols: int = MAX_SIZE,
        name: str = "arc2",
    ) -> None:
        if not isinstance(limits, SafetyLimits):
            raise SafetyError("opening an instrument for sourcing requires SafetyLimits")
        if not (1 <= rows <= MAX_SIZE and 1 <= cols <= MAX_SIZE):
            raise InstrumentError(f"an ArC TWO array is at most {MAX_SIZE}x{MAX_SIZE}, got {rows}x{cols}")
        self.instrument = instrument
        self.limits = limits
        self.clock: Clock = clock or WallClock()
        self.rows, self.cols, self.name = rows, cols, name
        self.compliance_set_a: float | None = None
        self._rate = PulseRateGuard(limits, self.clock)
        self._idle()

    # -- checks --------------------------------------------------------------------------------
    def _check_address(self, row: int, col: int | None = None) -> None:
        if not (isinstance(row, int | np.integer) and 0 <= row < self.rows):
            raise SafetyError(f"row {row!r} is outside the {self.rows}x{self.cols} array")
        if col is not None and not (isinstance(col, int | np.integer) and 0 <= col < self.cols):
            raise SafetyError(f"column {col!r} is outside the {self.rows}x{self.cols} array")

    def _require_compliance(self) -> float:
        if self.compliance_set_a is None:
            raise InstrumentStateError(f"{self.name}: set the compliance before pulsing or reading")
        return self.compliance_set_a

    @staticmethod
    def _check_range(volts: float, width_s: float | None = None) -> None:
        if abs(volts) > MAX_ABS_V:
            raise SafetyError(f"{volts:g} V is beyond ArC TWO's range of ±{MAX_ABS_V:g} V")
        if width_s is not None and not MIN_WIDTH_S <= width_s <= MAX_WIDTH_S:
            raise SafetyError(
                f"pulse width {width_s:g} s is outside what hwloop asks of ArC TWO "
                f"[{MIN_WIDTH_S:g}, {MAX_WIDTH_S:g}] s"
            )

    def _checked_pulse(self, amplitudes_v: Sequence[float], width_s: float) -> tuple[list[float], int]:
        """Amplitudes and width (ns) after every check; raises before anything reaches the board."""
        checked = [self.limits.check_pulse(a, width_s)[0] for a in amplitudes_v]
        width_s = self.limits.check_pulse(0.0, width_s)[1]
        self._require_compliance()
        for a in checked:
            self._check_range(a, width_s)
        self._rate.check()
        return checked, round(width_s * 1e9)

    def _compliance(self, current_a: np.ndarray, where: str, t_s: float) -> None:
        limit = self._require_compliance()
        if np.any(np.abs(current_a) >= limit):
            raise ComplianceError(
                f"{self.name}: {where}: current at or above the {limit:g} A compliance (stuck-on or "
                "shorted device?); ArC TWO does not clamp the current",
                t_s,
                current_a,
            )

    # -- board sequences -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _board(self, what: str) -> Iterator[None]:
        """pyarc2's ``ArC2Error`` as an ``InstrumentError`` naming the operation."""
        try:
            yield
        except Exception as exc:
            from pyarc2 import ArC2Error  # here: loading the bindings costs ~0.1 s

            if isinstance(exc, ArC2Error):
                raise InstrumentError(f"{self.name}: ArC TWO refused {what}: {exc}") from None
            raise

    def _idle(self) -> None:
        """Every channel back to 0 V."""
        with self._board("grounding every channel"):
            self.instrument.ground_all().execute()
            self.instrument.wait()

    def _run(self, what: str, queue: Callable[[], Any]) -> None:
        """Queue an operation, execute it, wait for it, then return every channel to 0 V."""
        try:
            with self._board(what):
                queue().execute()
                self.instrument.wait()
        finally:
            self._idle()

    # -- operations ------------------------------------------------------------------------------
    def identify(self) -> str:
        """A description of the board and the array wired to it."""
        return f"ArC Instruments,ArC TWO,{self.name},{self.rows}x{self.cols} standard32 mapping"

    def set_compliance(self, current_a: float) -> None:
        """The current (A) above which a read is a ``ComplianceError`` (ArC TWO cannot clamp it)."""
        self.compliance_set_a = self.limits.check_compliance(current_a)

    def pulse_device(self, row: int, col: int, amplitude_v: float, width_s: float) -> None:
        """One voltage pulse (V, s) on the device at (row, col)."""
        self._check_address(row, col)
        (amplitude_v,), nanos = self._checked_pulse([amplitude_v], width_s)
        self._rate.record()
        self._run("a pulse", lambda: self.instrument.pulse_one(WORDS[row], BITS[col], amplitude_v, nanos))

    def pulse_row(self, row: int, amplitudes_v: Sequence[float], width_s: float) -> None:
        """Pulse the devices of ``row``, column j at ``amplitudes_v[j]`` (V; 0 = no pulse), one slice pulse
        per distinct amplitude (devices with different amplitudes are pulsed one after the other)."""
        self._check_address(row)
        if len(amplitudes_v) != self.cols:
            raise SafetyError(
                f"pulse_row needs {self.cols} amplitudes (one per column), got {len(amplitudes_v)}"
            )
        checked, nanos = self._checked_pulse(amplitudes_v, width_s)
        self._rate.record()
        for volts in sorted({a for a in checked if a != 0.0}):
            mask = [BITS[c] for c, a in enumerate(checked) if a == volts]
            self._run(
                "a row pulse", partial(self.instrument.pulse_slice_masked, WORDS[row], volts, nanos, mask)
            )

    def read_device(self, row: int, col: int, read_v: float) -> Reading:
        """Current (A) of the device at (row, col) at ``read_v`` (V), host timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row, col)
        self._require_compliance()
        self._check_range(read_v)
        t_s = self.clock.now_s()
        try:
            with self._board("a read"):
                i_a = float(self.instrument.read_one(WORDS[row], BITS[col], read_v))
        finally:
            self._idle()
        self._compliance(np.array([i_a]), f"row {row} col {col}", t_s)
        return Reading(t_s, i_a)

    def read_row(self, row: int, read_v: float) -> RowReading:
        """Currents (A) of every device of ``row`` at ``read_v`` (V) in one slice read, host timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row)
        self._require_compliance()
        self._check_range(read_v)
        mask = [BITS[c] for c in range(self.cols)]
        t_s = self.clock.now_s()
        try:
            with self._board("a row read"):
                values = np.asarray(self.instrument.read_slice_masked(WORDS[row], mask, read_v), dtype=float)
        finally:
            self._idle()
        if values.shape != (len(SLICE_ORDER),):
            raise InstrumentError(f"{self.name}: a slice read returned shape {values.shape}, expected (32,)")
        i_a = values[[SLICE_ORDER.index(ch) for ch in mask]]
        if not np.all(np.isfinite(i_a)):
            raise InstrumentError(f"{self.name}: the slice read of row {row} left columns unread (NaN)")
        self._compliance(i_a, f"row {row}", t_s)
        return RowReading(t_s, i_a)

    def read_row_train(self, row: int, read_v: float, every_s: float, count: int) -> RowTrain:
        """``count`` reads of ``row`` at ``read_v`` (V), ``every_s`` (s) apart (host-timed)."""
        return host_timed_row_train(self, row, read_v, every_s, count)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the clock (virtual time with the fake board)."""
        self.clock.sleep(seconds)

    # -- lifetime --------------------------------------------------------------------------------
    def safe_off(self) -> None:
        """Best effort: every channel to 0 V; never raises."""
        with contextlib.suppress(Exception):  # the board may be gone: there is nothing more a driver can do
            self._idle()

    def close(self) -> None:
        """Every channel to 0 V, then let go of the board."""
        self.safe_off()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
