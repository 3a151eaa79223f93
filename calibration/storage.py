"""Campaign files (HDF5, format version 2): one appendable, chunked, compressed table per measurement kind.

Nothing measured is ever lost, nothing is measured twice. The layout (docs/campaign-format.md has the
full schema and an h5py / pandas example)::

    /                  attrs: format = "hwloop-campaign", format_version = 2, software_version, created,
                       instruments (JSON list), safety_limits (JSON), config (JSON), shape (rows, cols)
    /decay             one row per relaxation: 1-D columns device, row, col, condition, cycle, n_samples,
                       amplitude_v, width_s, n_pulses, read_v, every_s, delay_s, pulse_energy_j,
                       baseline_g_siemens; 2-D traces t_s and g_siemens (units x samples, NaN-padded)
                       attrs: rows (the number of committed rows)
    /bias_decay        the same plus bias_v (SMU campaigns: relaxations held at a decay bias)
    /pulse             one row per device and pulse: device, row, col, condition, cycle, amplitude_v,
                       width_s, read_v, reads, g_before_siemens, g_after_siemens, pulse_energy_j

A unit (one condition and cycle of every device of a row) is appended to every column, then the table's
``rows`` attribute is advanced and the file flushed; rows past ``rows`` are an interrupted write and are
dropped when the campaign is resumed (readers ignore them). Every dataset is chunked and gzip-compressed
(with the byte shuffle), readable by any HDF5 tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from device_models.record import CalibrationError

FORMAT = "hwloop-campaign"
FORMAT_VERSION = 2
COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
# Chunks are rewritten (decompressed, recompressed) whenever a unit lands in them, so they stay small:
# a trace chunk holds as many relaxations as the table's first append (one unit of a row, at most
# ~256 kB), a column chunk 2048 rows.
TRACE_CHUNK_BYTES = 1 << 18
COLUMN_CHUNK = 2048
UNKNOWN_INT = -1  # an integer setting that is not known (e.g. n_pulses of imported data)

_KEY = ("device", "row", "col", "condition", "cycle")


@dataclass(frozen=True)
class Kind:
    """Schema of one measurement table: 1-D columns (name -> dtype) and 2-D trace names."""

    columns: Mapping[str, str]
    traces: tuple[str, ...] = ()


_DECAY_COLUMNS = {
    **{k: "i4" for k in _KEY},
    "n_samples": "i4",
    "amplitude_v": "f8",
    "width_s": "f8",
    "n_pulses": "i4",
    "read_v": "f8",
    "every_s": "f8",
    "delay_s": "f8",
    "pulse_energy_j": "f8",
    "baseline_g_siemens": "f8",
}
KINDS: dict[str, Kind] = {
    "decay": Kind(_DECAY_COLUMNS, ("t_s", "g_siemens")),
    "bias_decay": Kind({**_DECAY_COLUMNS, "bias_v": "f8"}, ("t_s", "g_siemens")),
    "pulse": Kind(
        {
            **{k: "i4" for k in _KEY},
            "amplitude_v": "f8",
            "width_s": "f8",
            "read_v": "f8",
            "reads": "i4",
            "g_before_siemens": "f8",
            "g_after_siemens": "f8",
            "pulse_energy_j": "f8",
        }
    ),
}


def software_version() -> str:
    """The installed hwloop version ("unknown" when running from a bare checkout)."""
    try:
        return metadata.version("hwloop")
    except metadata.PackageNotFoundError:
        return "unknown"


def _v1_hint(path: Path) -> str:
    return (
        f"{path} is a version-1 campaign file (one HDF5 group per measurement); convert it with "
        f"`hwloop calibrate import {path} --out NEW.h5`"
    )


class CampaignFile:
    """An open campaign file; use as a context manager (closed, and so flushed, on any exit)."""

    def __init__(self, path: str | Path, mode: str = "r") -> None:
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, mode)
        except FileNotFoundError:
            raise CalibrationError(f"campaign file {self.path} does not exist") from None
        except OSError as exc:
            raise CalibrationError(f"cannot open campaign file {self.path}: {exc}") from None
        if mode in ("r", "r+"):
            self._check_format()
        self._done: dict[str, set[tuple[int, int, int]]] = {}
        self._rows: dict[str, int] = {}  # committed rows per table, as in its attribute
        self._datasets: dict[str, dict[str, h5py.Dataset]] = {}  # open handles, for appending

    def _check_format(self) -> None:
        attrs = self.h5.attrs
        if attrs.get("format") != FORMAT:
            is_v1 = "devices" in self.h5 and "config" in attrs
            self.h5.close()
            if is_v1:
                raise CalibrationError(_v1_hint(self.path))
            raise CalibrationError(
                f"{self.path} is not an hwloop campaign file "
                "(bring other data in with `hwloop calibrate import`)"
            )
        version = int(attrs.get("format_version", 0))
        if version != FORMAT_VERSION:
            self.h5.close()
            raise CalibrationError(
                f"{self.path} is campaign format version {version}; "
                f"this hwloop reads version {FORMAT_VERSION}"
            )

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        config: dict[str, Any],
        shape: tuple[int, int],
        safety_limits: dict[str, Any],
    ) -> CampaignFile:
        """A new campaign file (refuses to overwrite an existing one)."""
        path = Path(path)
        if path.exists():
            raise CalibrationError(f"{path} exists: pass --resume to continue it, or choose another file")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = cls(path, "w-")
        f.h5.attrs["format"] = FORMAT
        f.h5.attrs["format_version"] = FORMAT_VERSION
        f.h5.attrs["software_version"] = software_version()
        f.h5.attrs["created"] = datetime.now(UTC).isoformat()
        f.h5.attrs["config"] = json.dumps(config, sort_keys=True)
        f.h5.attrs["safety_limits"] = json.dumps(safety_limits, sort_keys=True)
        f.h5.attrs["shape"] = np.asarray(shape, dtype=np.int64)
        f.h5.attrs["instruments"] = json.dumps([])
        f.h5.flush()
        return f

    @classmethod
    def resume(cls, path: str | Path, *, config: dict[str, Any]) -> CampaignFile:
        """Reopen a campaign to continue it; the configuration must be the one it was started with.
        Rows of an interrupted write (past a table's committed ``rows``) are dropped (re-measured)."""
        f = cls(path, "r+")
        stored = json.loads(str(f.h5.attrs.get("config", "{}")))
        if stored != json.loads(json.dumps(config, sort_keys=True)):
            f.close()
            raise CalibrationError(
                f"{path} was started with another campaign configuration; resume with the same one"
            )
        for kind in f.kinds():
            n = f.n_units(kind)
            for dset in f.h5[kind].values():
                if dset.shape[0] > n:
                    dset.resize(n, axis=0)
        f.h5.flush()
        return f

    # -- metadata --------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The campaign configuration stored at creation."""
        return dict(json.loads(str(self.h5.attrs["config"])))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the measured array."""
        if not hasattr(self, "_shape"):
            rows, cols = (int(x) for x in self.h5.attrs["shape"])
            self._shape = (rows, cols)
        return self._shape

    def add_instrument(self, identity: str) -> None:
        """Record an instrument's identity string (once)."""
        known = json.loads(str(self.h5.attrs["instruments"]))
        if identity not in known:
            self.h5.attrs["instruments"] = json.dumps([*known, identity])

    def instruments(self) -> list[str]:
        """Identity strings of every instrument that took part."""
        return list(json.loads(str(self.h5.attrs["instruments"])))

    # -- writing ---------------------------------------------------------------------------------
    def has(self, kind: str, device: int, condition: int, cycle: int) -> bool:
        """Whether ``device`` (row * cols + col) holds a committed ``kind`` unit (condition, cycle)."""
        return (device, condition, cycle) in self._done_set(kind)

    def _done_set(self, kind: str) -> set[tuple[int, int, int]]:
        if kind not in self._done:
            cols = self.columns(kind, ("device", "condition", "cycle")) if kind in self.kinds() else {}
            self._done[kind] = (
                set(zip(*(cols[k].tolist() for k in ("device", "condition", "cycle")), strict=True))
                if cols
                else set()
            )
        return self._done[kind]

    def append(
        self,
        kind: str,
        columns: Mapping[str, ArrayLike],
        traces: Mapping[str, NDArray[np.float64]] | None = None,
    ) -> None:
        """Append units (one row each) to table ``kind``: every schema column as a (U,) array (``row``,
        ``col`` and ``n_samples`` are derived when absent) and, for decays, traces (U, N). Commits them
        (advances ``rows``) after every dataset is written; does not flush. Refuses a unit already held."""
        schema = KINDS[kind]
        rows, cols = self.shape
        data = {k: np.atleast_1d(np.asarray(v)) for k, v in columns.items()}
        device = data["device"].astype(np.int64)
        n_new = device.size
        if (device < 0).any() or (device >= rows * cols).any():
            raise CalibrationError(f"{self.path}: device index outside the {rows}x{cols} array")
        data.setdefault("row", device // cols)
        data.setdefault("col", device % cols)
        waves = {k: np.atleast_2d(np.asarray(v, dtype=np.float64)) for k, v in (traces or {}).items()}
        if set(waves) != set(schema.traces):
            raise CalibrationError(f"{kind} units need traces {schema.traces}, got {tuple(waves)}")
        if waves:
            n_samples = {w.shape[1] for w in waves.values()}
            if len(n_samples) != 1 or any(w.shape[0] != n_new for w in waves.values()):
                raise CalibrationError(f"{kind} traces must all be (units, samples) arrays of one shape")
            data.setdefault("n_samples", np.full(n_new, n_samples.pop()))
        missing = set(schema.columns) - set(data)
        extra = set(data) - set(schema.columns)
        if missing or extra:
            raise CalibrationError(f"{kind} columns: missing {sorted(missing)}, unknown {sorted(extra)}")
        if any(v.shape != (n_new,) for v in data.values()):
            raise CalibrationError(f"{kind} columns must all be ({n_new},) arrays")
        done = self._done_set(kind)
        keys = list(zip(device.tolist(), data["condition"].tolist(), data["cycle"].tolist(), strict=True))
        if any(k in done for k in keys) or len(set(keys)) != len(keys):
            raise CalibrationError(f"{self.path}: {kind} unit already measured; refusing to overwrite")

        group = self.h5.require_group(kind)
        start = self.n_units(kind)
        handles = self._datasets.setdefault(kind, {})
        for name, dtype in schema.columns.items():
            if name in handles:
                dset = handles[name]
            elif name in group:
                dset = handles[name] = group[name]
            else:
                dset = handles[name] = group.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(COLUMN_CHUNK,), **COMPRESSION
                )
            dset.resize(start + n_new, axis=0)
            dset[start:] = data[name].astype(dtype)
        for name, wave in waves.items():
            n = wave.shape[1]
            if name in handles:
                dset = handles[name]
            elif name in group:
                dset = handles[name] = group[name]
            else:
                chunk_rows = max(1, min(n_new, TRACE_CHUNK_BYTES // (8 * n)))
                dset = group.create_dataset(
                    name,
                    shape=(0, n),
                    maxshape=(None, None),
                    dtype="f8",
                    chunks=(chunk_rows, n),
                    fillvalue=np.nan,
                    **COMPRESSION,
                )
                handles[name] = dset
            dset.resize((start + n_new, max(n, dset.shape[1])))
            dset[start:, :n] = wave
        group.attrs["rows"] = start + n_new
        self._rows[kind] = start + n_new
        done.update(keys)

    def flush(self) -> None:
        """Push everything written so far to disk."""
        self.h5.flush()

    # -- reading ---------------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        """Measurement kinds present in the file (tables with at least one committed row)."""
        return [k for k in KINDS if k in self.h5 and self.n_units(k) > 0]

    def n_units(self, kind: str) -> int:
        """Committed rows of table ``kind`` (0 if absent)."""
        if kind not in self._rows:
            self._rows[kind] = int(self.h5[kind].attrs.get("rows", 0)) if kind in self.h5 else 0
        return self._rows[kind]

    def units(self, kind: str) -> int:
        """Number of committed units of ``kind`` (0, falsy, when the file holds none)."""
        return self.n_units(kind)

    def columns(
        self, kind: str, names: Iterable[str] | None = None, start: int = 0, stop: int | None = None
    ) -> dict[str, np.ndarray]:
        """1-D columns of table ``kind`` (all, or ``names``), rows [start, stop) of the committed ones."""
        n = self.n_units(kind)
        stop = n if stop is None else min(stop, n)
        if kind not in self.h5:
            raise CalibrationError(f"{self.path} holds no {kind} measurement")
        group = self.h5[kind]
        wanted = list(KINDS[kind].columns) if names is None else list(names)
        return {name: group[name][start:stop] for name in wanted}

    def traces(self, kind: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """2-D traces of rows [start, stop) of table ``kind``: name -> (units, samples), NaN past each
        unit's ``n_samples`` (trimmed to the longest unit of the slice)."""
        n = self.n_units(kind)
        stop = n if stop is None else min(stop, n)
        group = self.h5[kind]
        width = int(group["n_samples"][start:stop].max(initial=0))
        return {name: group[name][start:stop, :width] for name in KINDS[kind].traces}

    def close(self) -> None:
        """Flush and close."""
        if self.h5.id.valid:
            if self.h5.mode != "r":
                self.h5.flush()
            self.h5.close()

    def __enter__(self) -> CampaignFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
