"""Measured traces in HDF5, written as they are taken (each append is flushed to disk).

Layout of a trace file::

    /t_s   float64 (N,)   instrument (or controller) timestamps, s, first reading at 0
    /i_a   float64 (N,)   measured current, A
    attrs: resource, idn, driver, amplitude_v, width_s, read_v, every_s, count, limits (JSON),
           created_utc, complete (False until the measurement finished), error ("" or the error line)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from device_models.errors import HwloopError


class TraceWriter:
    """Appends (t_s, i_a) readings to an HDF5 trace, flushing after every append."""

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = h5py.File(path, "w")
        except OSError as exc:
            raise HwloopError(f"cannot write trace file {path}: {exc}") from None
        self.path = path
        for name in ("t_s", "i_a"):
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(4096,))
        self._file.attrs.update({k: v for k, v in attrs.items() if v is not None})
        self._file.attrs["created_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._file.attrs["complete"] = False
        self._file.attrs["error"] = ""
        self._file.flush()

    def append(self, t_s: Any, i_a: Any) -> None:
        """Add readings (arrays or scalars) and flush them to disk."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        i = np.atleast_1d(np.asarray(i_a, dtype=float))
        for name, values in (("t_s", t), ("i_a", i)):
            ds = self._file[name]
            n = ds.shape[0]
            ds.resize((n + len(values),))
            ds[n:] = values
        self._file.flush()

    def finish(self, error: str = "") -> None:
        """Mark the trace complete (or record why it stopped) and close the file."""
        self._file.attrs["complete"] = not error
        self._file.attrs["error"] = error
        self._file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file.id.valid:
            self.finish("" if exc is None else f"{type(exc).__name__}: {exc}")


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(t_s, i_a, attrs) of a trace file."""
    try:
        with h5py.File(path, "r") as f:
            return f["t_s"][:], f["i_a"][:], dict(f.attrs)
    except (OSError, KeyError) as exc:
        raise HwloopError(f"cannot read trace file {path}: {exc}") from None
