"""What a crossbar-array controller offers campaigns and backends, whatever board is behind it.

``ArrayController`` is the small Protocol the serial controller (``drivers.controller``) and the ArC TWO
driver (``drivers.arc2``) both implement; calibration campaigns and the lab backend depend on it only.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import NamedTuple, Protocol, Self, runtime_checkable

import numpy as np

from drivers.clock import Clock
from drivers.safety import SafetyLimits


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


@runtime_checkable
class ArrayController(Protocol):
    """A rows x cols crossbar under ``limits``: pulses and reads by row and column, on ``clock``."""

    rows: int
    cols: int
    limits: SafetyLimits
    clock: Clock
    compliance_set_a: float | None

    def identify(self) -> str:
        """The board's identification string."""
        ...

    def set_compliance(self, current_a: float) -> None:
        """Current limit (A) of every read and pulse."""
        ...

    def pulse_device(self, row: int, col: int, amplitude_v: float, width_s: float) -> None:
        """One voltage pulse (V, s) on the device at (row, col)."""
        ...

    def pulse_row(self, row: int, amplitudes_v: Sequence[float], width_s: float) -> None:
        """Pulse the devices of ``row``, column j at ``amplitudes_v[j]`` V (0 = not pulsed), for width_s."""
        ...

    def read_device(self, row: int, col: int, read_v: float) -> Reading:
        """Current (A) of one device at ``read_v`` (V) and its timestamp (s)."""
        ...

    def read_row(self, row: int, read_v: float) -> RowReading:
        """Currents (A) of every device of ``row`` at ``read_v`` (V) and their timestamp (s)."""
        ...

    def read_row_train(self, row: int, read_v: float, every_s: float, count: int) -> RowTrain:
        """``count`` row reads ``every_s`` apart (s)."""
        ...

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the controller's clock."""
        ...

    def safe_off(self) -> None:
        """Every line back to 0 V; never raises."""
        ...

    def close(self) -> None:
        """Lines to 0 V, then release the board."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def check_row_train(every_s: float, count: int) -> None:
    """Refuse a read train's spacing or count before anything is sent (``SafetyError``)."""
    from drivers.errors import SafetyError

    if not (isinstance(count, int) and count >= 1):
        raise SafetyError(f"read count must be a positive integer, got {count!r}")
    if not every_s >= 0:
        raise SafetyError(f"read interval must be >= 0 s, got {every_s!r}")


def host_timed_row_train(
    board: ArrayController, row: int, read_v: float, every_s: float, count: int
) -> RowTrain:
    """``count`` reads of ``row`` at ``read_v`` (V), waiting ``every_s`` (s) on the board's clock between
    them (host-timed: the spacing is every_s plus one read's round trip; the board's timestamps say it),
    for boards with no train of their own. Refuses a bad spacing or count before anything is sent."""
    check_row_train(every_s, count)
    t = np.empty(count)
    i = np.empty((count, board.cols))
    for k in range(count):
        if k:
            board.wait(every_s)
        t[k], i[k] = board.read_row(row, read_v)
    return RowTrain(t - t[0], i)
