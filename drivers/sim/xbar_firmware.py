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
        self._t_devices_s = array.clock.now_s()

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
    def _settle(self) -> None:
        """Relax every device at 0 V up to now (shorting the faulty one when its time comes)."""
        now = self.array.clock.now_s()
        stuck = self.faults.stuck_at_s
        if stuck is not None and self._t_devices_s < stuck <= now:
            self.array.devices.hold(0.0, stuck - self._t_devices_s)
            self.array.devices.short(self.faults.stuck_device)
            self._t_devices_s = stuck
        self.array.devices.hold(0.0, now - self._t_devices_s)
        self._t_devices_s = now

    def _drive(self, volts: np.ndarray, duration_s: float) -> None:
        self._settle()
        self.array.devices.hold(volts, duration_s)
        self.array.clock.sleep(duration_s)
        self._t_devices_s = self.array.clock.now_s()

    def _read(self, volts: np.ndarray) -> np.ndarray:
        self._settle()
        current = self.array.devices.read_current_a(volts)
        self._drive(volts, self.array.card.read.read_time_s)
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
        self._settle()
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
        volts = np.zeros((self.array.rows, self.array.cols))
        volts[r, c] = self._volts(amplitude)
        self._drive(volts, self._width(width))
        return "OK"

    def _cmd_PULSEROW(self, row: str, width: str, amplitudes: str) -> str:
        self._need_ilim()
        r = self._row(row)
        amps = [self._volts(a) for a in amplitudes.split(",")]
        if len(amps) != self.array.cols:
            raise FirmwareError("SYNTAX", f"PULSEROW needs {self.array.cols} amplitudes, got {len(amps)}")
        volts = np.zeros((self.array.rows, self.array.cols))
        volts[r, :] = amps
        self._drive(volts, self._width(width))
        return "OK"

    def _cmd_READ(self, read_v: str) -> str:
        self._need_ilim()
        r, c = self._selection()
        volts = np.zeros((self.array.rows, self.array.cols))
        volts[r, c] = self._volts(read_v)
        t = self.array.clock.now_s()
        current = self._compliance(self._read(volts)[r, c : c + 1], f"row {r} col {c}")
        return f"{t:.6f},{current[0]:.6e}"

    def _cmd_READROW(self, row: str, read_v: str) -> str:
        self._need_ilim()
        r = self._row(row)
        volts = np.zeros((self.array.rows, self.array.cols))
        volts[r, :] = self._volts(read_v)
        t = self.array.clock.now_s()
        current = self._compliance(self._read(volts)[r], f"row {r}")
        return f"{t:.6f}," + ",".join(f"{i:.6e}" for i in current)
