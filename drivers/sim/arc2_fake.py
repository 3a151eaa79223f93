"""A fake ``pyarc2.Instrument`` with device physics: ArC TWO without a board, behind ``arc2sim://``.

Written from pyarc2 0.6.0's own type stubs (``pyarc2/pyarc2.pyi``: ``InstrumentLL``) and the docstrings
of its compiled module: the same method names, argument order and return types, a command buffer that
runs on ``execute()``, reads that run at once and return float32. Channels 0..63; the array is wired
with ArC2Control's ``standard32`` mapping (``drivers.arc2.WORDS`` / ``BITS``), row r on wordline r and
column c on bitline c; a device sees (high channel - low channel) volts. Physics and virtual time come
from ``drivers.sim.array_lines`` (the same device model as the serial controller's array).

``arc2sim://ROWSxCOLS?seed=N`` (at most 32x32): the array persists across connections, as hardware does.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable

import numpy as np
from pyarc2 import ArC2Error

from drivers.arc2 import BITS, WORDS
from drivers.sim.array_lines import ArrayLines
from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray

N_CHANNELS = 64
MAX_ABS_V = 10.0  # the DACs' range: the fake refuses beyond it, as pyarc2 does with ArC2Error
LATENCY_S = 1e-4  # virtual time of one USB transaction
_GROUP_A = frozenset(range(0, 16)) | frozenset(
    range(32, 48)
)  # libarc2: a slice on these is a "row read"; here the bitlines
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_LINES: dict[tuple[int, int, int], ArrayLines] = {}


class FakeInstrument:
    """``pyarc2.Instrument(port, firmware, init)`` answered by a ``SimArray`` through ``ArrayLines``."""

    def __init__(self, port: int, firmware: str, init: bool | None = True, *, lines: ArrayLines) -> None:
        self.port, self.firmware = port, firmware
        self.lines = lines
        self.array = lines.array
        self._row_of = {ch: r for r, ch in enumerate(WORDS[: self.array.rows])}
        self._col_of = {ch: c for c, ch in enumerate(BITS[: self.array.cols])}
        self._queue: list[Callable[[], None]] = []

    # -- builder methods (queued until execute) ---------------------------------------------------
    def pulse_one(self, low: int, high: int, voltage: float, nanos: int) -> FakeInstrument:
        """Queue a pulse of ``voltage`` (V) for ``nanos`` ns between channels ``low`` and ``high``."""
        self._check_channels(low, high)
        volts = self._volts(voltage)
        width = self._nanos(nanos)
        self._queue.append(lambda: self._pulse([(low, high)], volts, width))
        return self

    def pulse_slice_masked(
        self, chan: int, voltage: float, nanos: int, mask: Iterable[int]
    ) -> FakeInstrument:
        """Queue a pulse of every ``mask`` channel against the low channel ``chan``."""
        highs = self._mask(mask)
        self._check_channels(chan, *highs)
        volts, width = self._volts(voltage), self._nanos(nanos)
        self._queue.append(lambda: self._pulse([(chan, h) for h in highs], volts, width))
        return self

    def ground_all(self) -> FakeInstrument:
        """Queue: every channel to 0 V (arbitrary-voltage mode)."""
        self._queue.append(lambda: None)  # idle lines sit at 0 V in the physics
        return self

    def float_all(self) -> FakeInstrument:
        """Queue: disconnect every channel (the devices see 0 V)."""
        self._queue.append(lambda: None)
        return self

    def delay(self, nanos: int) -> FakeInstrument:
        """Queue a delay of ``nanos`` ns."""
        seconds = self._nanos(nanos)
        self._queue.append(lambda: self.array.clock.sleep(seconds))
        return self

    def execute(self) -> FakeInstrument:
        """Run the command buffer."""
        self.array.clock.sleep(LATENCY_S)
        queue, self._queue = self._queue, []
        for step in queue:
            step()
        return self

    def wait(self) -> None:
        """Block until the command buffer has run (at once here: execute runs it)."""
        if self._queue:
            raise ArC2Error("wait() with commands queued but not executed")

    def busy(self) -> bool:
        """Whether the command buffer has not been consumed."""
        return bool(self._queue)

    # -- reads (immediate) -----------------------------------------------------------------------
    def read_one(self, low: int, high: int, vread: float) -> float:
        """Current (A) between ``low`` (biased at -vread) and ``high`` (read at 0 V)."""
        self._check_channels(low, high)
        self.array.clock.sleep(LATENCY_S)
        volts = self._grid([(low, high)], self._volts(vread))
        current = self.lines.read(volts)
        r, c = self._device(low, high)
        return float(np.float32(current[r, c])) if r is not None and c is not None else 0.0

    def read_slice_masked(self, chan: int, mask: Iterable[int], vread: float) -> np.ndarray:
        """Currents (A, float32) of the 32 channels of the other group, ascending; NaN outside ``mask``."""
        highs = self._mask(mask)
        self._check_channels(chan, *highs)
        self.array.clock.sleep(LATENCY_S)
        current = self.lines.read(self._grid([(chan, h) for h in highs], self._volts(vread)))
        group = sorted(set(range(N_CHANNELS)) - _GROUP_A if chan in _GROUP_A else _GROUP_A)
        out = np.full(len(group), np.nan, dtype=np.float32)
        for k, ch in enumerate(group):
            if ch in highs:
                r, c = self._device(chan, ch)
                out[k] = current[r, c] if r is not None and c is not None else 0.0
        return out

    # -- helpers ----------------------------------------------------------------------------------
    def _device(self, a: int, b: int) -> tuple[int | None, int | None]:
        """(row, col) of the device between channels a and b, if one is wired there."""
        row = self._row_of.get(a, self._row_of.get(b))
        col = self._col_of.get(b, self._col_of.get(a))
        return row, col

    def _grid(self, pairs: list[tuple[int, int]], volts: float) -> np.ndarray:
        """Voltages (V) on the devices when ``volts`` is applied high-minus-low across each pair."""
        grid = np.zeros((self.array.rows, self.array.cols))
        for low, high in pairs:
            r, c = self._device(low, high)
            if r is not None and c is not None:
                grid[r, c] = volts if high in self._col_of else -volts
        return grid

    def _pulse(self, pairs: list[tuple[int, int]], volts: float, width_s: float) -> None:
        self.lines.drive(self._grid(pairs, volts), width_s, "pulse")

    @staticmethod
    def _check_channels(*channels: int) -> None:
        for ch in channels:
            if not 0 <= int(ch) < N_CHANNELS:
                raise ArC2Error(f"channel {ch} outside 0..{N_CHANNELS - 1}")

    @staticmethod
    def _mask(mask: Iterable[int]) -> list[int]:
        return [int(ch) for ch in np.asarray(list(mask), dtype=np.uint64)]

    @staticmethod
    def _volts(volts: float) -> float:
        if not abs(volts) <= MAX_ABS_V:
            raise ArC2Error(f"voltage {volts} V outside the DAC range ±{MAX_ABS_V:g} V")
        return float(volts)

    @staticmethod
    def _nanos(nanos: int) -> float:
        if not isinstance(nanos, int | np.integer) or nanos < 1:
            raise ArC2Error(f"duration must be a positive integer of nanoseconds, got {nanos!r}")
        return int(nanos) * 1e-9


def sim_lines(rows: int, cols: int, seed: int) -> ArrayLines:
    """The persistent simulated array (and its lines) behind ``arc2sim://ROWSxCOLS?seed=SEED``."""
    key = (rows, cols, seed)
    if key not in _LINES:
        _LINES[key] = ArrayLines(SimArray(rows, cols, seed))
    return _LINES[key]


def forget_boards() -> None:
    """Drop every persistent fake board (a fresh lab)."""
    _LINES.clear()


def open_fake(url: str) -> FakeInstrument:
    """A ``FakeInstrument`` for ``arc2sim://ROWSxCOLS?seed=N[&stuck_at_s=..&stuck_device=r,c]``;
    ValueError naming the problem."""
    parts = urllib.parse.urlsplit(url)
    m = _SIZE.match(parts.netloc)
    if parts.scheme != "arc2sim" or m is None:
        raise ValueError(f"arc2sim URL needs a size ROWSxCOLS, e.g. arc2sim://8x8?seed=0, got {url!r}")
    rows, cols = int(m.group(1)), int(m.group(2))
    if not (1 <= rows <= 32 and 1 <= cols <= 32):
        raise ValueError(f"an ArC TWO array is at most 32x32, got {rows}x{cols}")
    params = dict(urllib.parse.parse_qsl(parts.query))
    seed = int(params.pop("seed", 0))
    if "stuck_device" in params:
        params["stuck_device"] = tuple(int(x) for x in params["stuck_device"].split(","))  # type: ignore[assignment]
    try:
        faults = Faults.model_validate(params)
    except Exception as exc:
        raise ValueError(f"bad arc2sim URL parameters {sorted(params)}: {exc}") from None
    lines = sim_lines(rows, cols, seed)
    lines.faults = faults
    return FakeInstrument(0, "fake-firmware.bin", True, lines=lines)
