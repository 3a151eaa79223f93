"""Firmware of the simulated crossbar controller: the protocol of ``docs/crossbar-controller-protocol.md``.

Idle lines sit at 0 V, so between commands every device relaxes at tau(0 V). A pulse or read drives
only the addressed devices; the others keep relaxing. Each command costs ``latency_s`` of virtual time
(one serial round trip), a pulse its width, a read the card's read time.
"""

from __future__ import annotations

import numpy as np

from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray

FIRMWARE_VERSION = "1.0.0"
MAX_ABS_V = 10.0  # the controller's own hardware range
MAX_WIDTH_S = 1.0
MAX_ILIM_A = 0.1
LATENCY_S = 1e-3


class FirmwareError(Exception):
    """An ``ERR <CODE> <message>`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"ERR {code} {message}")


class XbarFirmware:
    """Answers one protocol line at a time for a ``SimArray``."""

    def __init__(self, array: SimArray, faults: Faults | None = None) -> None:
        self.array = array
        self.faults = faults or Faults()
        self.selected: tuple[int, int] | None = None
        self.ilim_a: float | None = None
        self._rows = [array.devices.part(r) for r in range(array.rows)]  # views: one row's devices

    def handle(self, line: str) -> str:
        """The reply line to one command line."""
        self.array.clock.sleep(LATENCY_S)
        words = line.split()
        if not words:
            return "ERR SYNTAX empty command"
        handler = getattr(self, "_cmd_" + words[0].upper().replace("*", "STAR_").replace("?", "_Q"), None)
        if handler is None:
            return f"ERR SYNTAX unknown command {words[0]!r}"
        try:
            return str(handler(*words[1:]))
        except FirmwareError as exc:
            return str(exc)
        except (TypeError, ValueError):
            return f"ERR SYNTAX bad arguments to {words[0]}"

    # -- physics -------------------------------------------------------------------------------
    # A command drives one row (all lines of the others sit at 0 V), so only that row is evolved:
    # the devices of every row carry their own time (``array.settled_s``) and relax at 0 V up to
    # "now" when their row is next addressed. Decay at 0 V composes exactly, so this is the same
    # physics as evolving the whole array at every command, at the cost of one row.
    def _settle(self, row: int) -> None:
        """Relax the devices of ``row`` at 0 V up to now (shorting the faulty one when its time comes)."""
        now, since = self.array.clock.now_s(), float(self.array.settled_s[row])
        devices = self._rows[row]
        stuck, (stuck_row, stuck_col) = self.faults.stuck_at_s, self.faults.stuck_device
        if stuck is not None and row == stuck_row and since < stuck <= now:
            devices.hold(0.0, stuck - since)
            devices.short((stuck_col,))
            since = stuck
        devices.hold(0.0, now - since)
        self.array.settled_s[row] = now

    def _drive(self, row: int, volts: np.ndarray, duration_s: float) -> None:
        """Hold the lines of ``row`` at ``volts`` (V, one per column) for ``duration_s``."""
        self._settle(row)
        self._rows[row].hold(volts, duration_s)
        self.array.clock.sleep(duration_s)
        self.array.settled_s[row] = self.array.clock.now_s()

    def _read(self, row: int, volts: np.ndarray) -> np.ndarray:
        """Currents (A) of the devices of ``row`` with its lines at ``volts`` (V, one per column)."""
        self._settle(row)
        current = self._rows[row].read_current_a(volts)
        self._drive(row, volts, self.array.card.read.read_time_s)
        return current

    # -- checks --------------------------------------------------------------------------------
    def _need_ilim(self) -> float:
        if self.ilim_a is None:
            raise FirmwareError("STATE", "set ILIM before pulsing or reading")
        return self.ilim_a

    def _row(self, text: str) -> int:
        row = int(text)
        if not 0 <= row < self.array.rows:
            raise FirmwareError("RANGE", f"row {row} outside 0..{self.array.rows - 1}")
        return row

    def _col(self, text: str) -> int:
        col = int(text)
        if not 0 <= col < self.array.cols:
            raise FirmwareError("RANGE", f"column {col} outside 0..{self.array.cols - 1}")
        return col

    @staticmethod
    def _volts(text: str) -> float:
        v = float(text)
        if not abs(v) <= MAX_ABS_V:
            raise FirmwareError("RANGE", f"{v:g} V outside ±{MAX_ABS_V:g} V")
        return v

    @staticmethod
    def _width(text: str) -> float:
        w = float(text)
        if not 0 < w <= MAX_WIDTH_S:
            raise FirmwareError("RANGE", f"pulse width {w:g} s outside (0, {MAX_WIDTH_S:g}] s")
        return w

    def _compliance(self, current: np.ndarray, where: str) -> np.ndarray:
        limit = self._need_ilim()
        over = np.abs(current) > limit
        if over.any():
            raise FirmwareError("COMPLIANCE", f"{where}: current limited at {limit:g} A")
        return current

    # -- commands ------------------------------------------------------------------------------
    def _cmd_STAR_IDN_Q(self) -> str:
        a = self.array
        return f"HWLOOP,XBAR-SIM,{a.rows}x{a.cols}-seed{a.seed},{FIRMWARE_VERSION}"

    def _cmd_VER_Q(self) -> str:
        return FIRMWARE_VERSION

    def _cmd_SIZE_Q(self) -> str:
        return f"{self.array.rows},{self.array.cols}"

    def _cmd_TIME_Q(self) -> str:
        return f"{self.array.clock.now_s():.6f}"

    def _cmd_RST(self) -> str:
        for row in range(self.array.rows):
            self._settle(row)
        self.selected, self.ilim_a = None, None
        return "OK"

    def _cmd_ILIM(self, value: str) -> str:
        i = float(value)
        if not 0 < i <= MAX_ILIM_A:
            raise FirmwareError("RANGE", f"ILIM {i:g} A outside (0, {MAX_ILIM_A:g}] A")
        self.ilim_a = i
        return "OK"

    def _cmd_ILIM_Q(self) -> str:
        return "0" if self.ilim_a is None else f"{self.ilim_a:.6g}"

    def _cmd_SEL(self, row: str, col: str) -> str:
        self.selected = (self._row(row), self._col(col))
        return "OK"

    def _cmd_SEL_Q(self) -> str:
        if self.selected is None:
            raise FirmwareError("STATE", "no device selected")
        return f"{self.selected[0]},{self.selected[1]}"

    def _selection(self) -> tuple[int, int]:
        if self.selected is None:
            raise FirmwareError("STATE", "no device selected (SEL row col)")
        return self.selected

    def _cmd_PULSE(self, amplitude: str, width: str) -> str:
        self._need_ilim()
        r, c = self._selection()
        volts = np.zeros(self.array.cols)
        volts[c] = self._volts(amplitude)
        self._drive(r, volts, self._width(width))
        return "OK"

    def _cmd_PULSEROW(self, row: str, width: str, amplitudes: str) -> str:
        self._need_ilim()
        r = self._row(row)
        amps = [self._volts(a) for a in amplitudes.split(",")]
        if len(amps) != self.array.cols:
            raise FirmwareError("SYNTAX", f"PULSEROW needs {self.array.cols} amplitudes, got {len(amps)}")
        self._drive(r, np.array(amps), self._width(width))
        return "OK"

    def _cmd_READ(self, read_v: str) -> str:
        self._need_ilim()
        r, c = self._selection()
        volts = np.zeros(self.array.cols)
        volts[c] = self._volts(read_v)
        t = self.array.clock.now_s()
        current = self._compliance(self._read(r, volts)[c : c + 1], f"row {r} col {c}")
        return f"{t:.6f},{current[0]:.6e}"

    def _cmd_READROW(self, row: str, read_v: str) -> str:
        self._need_ilim()
        r = self._row(row)
        volts = np.full(self.array.cols, self._volts(read_v))
        t = self.array.clock.now_s()
        current = self._compliance(self._read(r, volts), f"row {r}")
        return f"{t:.6f}," + ",".join(map("{:.6e}".format, current.tolist()))
