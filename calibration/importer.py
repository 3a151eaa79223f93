"""Bring relaxation traces measured elsewhere into a campaign file, so ``fit``, ``report`` and ``map`` work.

Sources (``read_traces``), chosen by suffix:

* ``.csv`` / ``.txt`` / ``.tsv``: one trace per file (a time column and a conductance or current column),
  or many (rows grouped by device / condition / cycle columns). A header row names the columns; without
  one, columns are 0-based indices. The delimiter (``,`` ``;`` tab or whitespace) is detected.
* ``.npz``: arrays by key; time (N,) or (U, N), conductance or current (U, N) or (N,), optional (U,)
  device / condition / cycle arrays. Never unpickled.
* ``.h5`` / ``.hdf5``: the same with dataset paths as keys (foreign HDF5), or a version-1 hwloop
  campaign file, converted as it is (``convert_v1``).

Conductance is read directly (S, mS, uS, nS) or computed from a current (A, mA, uA, nA) and the read
voltage: g = i / read_v, with ``current_sign="flip"`` for instruments that report the current flowing
into their HI terminal as negative. Times (s, ms, us) are since the end of the pulse: a trace's first
sample is its ``delay_s``. Device, condition and cycle come from columns or from the file name (a
regular expression with named groups ``device``, ``row``, ``col``, ``condition``, ``cycle``); without
them every file (or array row) is its own device and repeats of a (device, condition) become cycles.
Unknown pulse settings are NaN (``n_pulses`` -1) and the baseline conductance is NaN (the fit's
g_inf stands in for it).

Every mistake in a file is one ``CalibrationError`` naming the file, the line (or trace and sample)
and the column.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from calibration.storage import UNKNOWN_INT, CampaignFile
from device_models.record import CalibrationError

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
CONDUCTANCE_UNITS = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "µS": 1e-6, "nS": 1e-9}
CURRENT_UNITS = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "µA": 1e-6, "nA": 1e-9}
CURRENT_SIGNS = ("as-measured", "flip")
_KEY_FIELDS = ("device", "row", "col", "condition", "cycle")
_DEFAULT_KEYS = {  # NPZ / HDF5 keys tried when none is given
    "time": ("t_s", "time_s", "time", "t"),
    "conductance": ("g_siemens", "conductance_S", "conductance", "g"),
    "current": ("i_a", "current_A", "current", "i"),
}
Array = NDArray[np.float64]


@dataclass(frozen=True)
class ImportSpec:
    """How to read the files (every field optional; see the module docstring for the defaults)."""

    time: str | None = None  # column name / 0-based index, or NPZ key / HDF5 dataset path
    conductance: str | None = None
    current: str | None = None
    read_v: float | None = None  # read voltage (V) of a current column
    time_unit: str = "s"
    conductance_unit: str = "S"
    current_unit: str = "A"
    current_sign: str = "as-measured"
    device: str | None = None  # column / key with device ids (integers or names)
    condition: str | None = None
    cycle: str | None = None
    pattern: str | None = None  # regex over the file name (without suffix)
    shape: tuple[int, int] | None = None  # array shape the device indices refer to

    def check(self) -> None:
        """Refuse inconsistent options before any file is read."""
        for name, value, table in (
            ("time unit", self.time_unit, TIME_UNITS),
            ("conductance unit", self.conductance_unit, CONDUCTANCE_UNITS),
            ("current unit", self.current_unit, CURRENT_UNITS),
        ):
            if value not in table:
                raise CalibrationError(f"unknown {name} {value!r}; choose one of {', '.join(table)}")
        if self.current_sign not in CURRENT_SIGNS:
            raise CalibrationError(f"current sign {self.current_sign!r}: choose {' or '.join(CURRENT_SIGNS)}")
        if self.current is not None and self.conductance is not None:
            raise CalibrationError("give a conductance column or a current column, not both")
        if self.current is not None and not (self.read_v is not None and self.read_v != 0):
            raise CalibrationError("a current column needs the (non-zero) read voltage, --read-voltage V")
        if self.pattern is not None:
            try:
                regex = re.compile(self.pattern)
            except re.error as exc:
                raise CalibrationError(f"file-name pattern {self.pattern!r}: {exc}") from None
            unknown = set(regex.groupindex) - set(_KEY_FIELDS)
            if unknown:
                raise CalibrationError(
                    f"file-name pattern groups {sorted(unknown)} unknown; use {', '.join(_KEY_FIELDS)}"
                )
        if self.shape is not None and min(self.shape) < 1:
            raise CalibrationError(f"array shape must be ROWSxCOLS with both >= 1, got {self.shape}")


@dataclass
class Trace:
    """One relaxation read from a file: times (s) since the pulse, conductances (S), and where it is from."""

    source: str
    t_s: Array
    g_siemens: Array
    keys: dict[str, str] = field(default_factory=dict)  # device / row / col / condition / cycle as read


# -- reading ---------------------------------------------------------------------------------------
def read_traces(path: Path, spec: ImportSpec) -> list[Trace]:
    """Every trace in one file (CSV, NPZ or foreign HDF5), in SI units."""
    if not path.is_file():
        raise CalibrationError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv", ".dat"):
        traces = _read_csv(path, spec)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            traces = _read_arrays(path, spec, {k: npz[k] for k in npz.files})
    elif suffix in (".h5", ".hdf5", ".hdf"):
        traces = _read_hdf5(path, spec)
    else:
        raise CalibrationError(f"{path}: unknown file type {suffix!r}; import reads .csv, .npz, .h5")
    if spec.pattern is not None:
        match = re.search(spec.pattern, path.stem)
        if match is None:
            raise CalibrationError(f"{path}: file name does not match the pattern {spec.pattern!r}")
        for trace in traces:
            trace.keys.update({k: v for k, v in match.groupdict().items() if v is not None})
    for trace in traces:
        _check_trace(trace)
    return traces


def _column(header: list[str] | None, wanted: str, path: Path) -> int:
    """Index of column ``wanted`` (a header name, else a 0-based index)."""
    if header is not None and wanted in header:
        return header.index(wanted)
    if wanted.isdigit():
        return int(wanted)
    known = ", ".join(repr(h) for h in header) if header else "none (no header row)"
    raise CalibrationError(f"{path}: no column {wanted!r}; columns: {known}")


def _read_csv(path: Path, spec: ImportSpec) -> list[Trace]:
    text = path.read_text(errors="replace")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    lines = [(n, line) for n, line in lines if not line.lstrip().startswith("#")]
    if not lines:
        raise CalibrationError(f"{path}: empty file")
    first = lines[0][1]
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    rows = [
        (
            n,
            [
                c.strip()
                for c in (next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split())
            ],
        )
        for n, line in lines
    ]
    header: list[str] | None = None
    if not all(_is_number(c) for c in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise CalibrationError(f"{path}: a header but no data rows")
    time_col = _column(header, spec.time, path) if spec.time else 0
    value_name = spec.current or spec.conductance
    value_col = _column(header, value_name, path) if value_name else 1
    key_cols = {k: _column(header, v, path) for k, v in _key_columns(spec).items()}

    def name(col: int) -> str:
        return repr(header[col]) if header is not None and col < len(header) else f"{col} (0-based)"

    groups: dict[tuple[str, ...], tuple[list[float], list[float], list[int]]] = defaultdict(
        lambda: ([], [], [])
    )
    for n, cells in rows:
        for col in (time_col, value_col, *key_cols.values()):
            if col >= len(cells):
                raise CalibrationError(f"{path}: line {n} has {len(cells)} columns, no column {name(col)}")
        values = []
        for col in (time_col, value_col):
            try:
                values.append(float(cells[col]))
            except ValueError:
                raise CalibrationError(
                    f"{path}: line {n}, column {name(col)}: {cells[col]!r} is not a number"
                ) from None
            if not np.isfinite(values[-1]):
                raise CalibrationError(f"{path}: line {n}, column {name(col)}: {cells[col]!r} is not finite")
        key = tuple(cells[col] for col in key_cols.values())
        t, v, where = groups[key]
        t.append(values[0])
        v.append(values[1])
        where.append(n)
    traces = []
    for key, (t, v, where) in groups.items():
        t_s = np.asarray(t) * TIME_UNITS[spec.time_unit]
        back = np.flatnonzero(np.diff(t_s) <= 0)
        if back.size:
            k = int(back[0]) + 1
            raise CalibrationError(
                f"{path}: line {where[k]}, column {name(time_col)}: time {t[k]:g} does not increase "
                f"(previous {t[k - 1]:g}); one relaxation per device/condition/cycle, in time order"
            )
        g = _to_siemens(np.asarray(v), spec, f"{path}, column {name(value_col)}")
        traces.append(Trace(str(path), t_s, g, dict(zip(key_cols, key, strict=True))))
    return traces


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _key_columns(spec: ImportSpec) -> dict[str, str]:
    return {
        k: v for k, v in (("device", spec.device), ("condition", spec.condition), ("cycle", spec.cycle)) if v
    }


def _to_siemens(values: Array, spec: ImportSpec, where: str) -> Array:
    """Conductance (S) from the value column: scaled, or current / read voltage with the sign convention."""
    if spec.current is not None:
        assert spec.read_v is not None
        sign = -1.0 if spec.current_sign == "flip" else 1.0
        g = sign * values * CURRENT_UNITS[spec.current_unit] / spec.read_v
        if np.median(g) <= 0:
            raise CalibrationError(
                f"{where}: current / read voltage is negative (median {np.median(g):.3g} S); "
                f"this instrument's current sign is the other way round: pass --current-sign "
                f"{'as-measured' if spec.current_sign == 'flip' else 'flip'}"
            )
        return np.asarray(g, dtype=np.float64)
    g = values * CONDUCTANCE_UNITS[spec.conductance_unit]
    if np.median(g) <= 0:
        raise CalibrationError(
            f"{where}: conductance is not positive (median {np.median(g):.3g} S); is this a current "
            "column? (use --current with --read-voltage)"
        )
    return np.asarray(g, dtype=np.float64)


def _read_hdf5(path: Path, spec: ImportSpec) -> list[Trace]:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot open as HDF5: {exc}") from None
    with f:
        if "devices" in f and "config" in f.attrs:
            raise CalibrationError(f"{path}: a version-1 hwloop campaign file; it is converted whole")
        arrays: dict[str, np.ndarray] = {}
        f.visititems(
            lambda name, obj: arrays.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None
        )
        return _read_arrays(path, spec, arrays)


def _pick(path: Path, arrays: dict[str, Any], given: str | None, kind: str) -> str | None:
    if given is not None:
        key = given.strip("/")
        if key not in arrays:
            raise CalibrationError(f"{path}: no array {given!r}; arrays: {', '.join(sorted(arrays))}")
        return key
    return next((k for k in _DEFAULT_KEYS[kind] if k in arrays), None)


def _read_arrays(path: Path, spec: ImportSpec, arrays: dict[str, Any]) -> list[Trace]:
    time_key = _pick(path, arrays, spec.time, "time")
    if spec.current is not None:
        value_key = _pick(path, arrays, spec.current, "current")
    else:
        value_key = _pick(path, arrays, spec.conductance, "conductance")
    if time_key is None or value_key is None:
        what = "time" if time_key is None else "conductance or current"
        raise CalibrationError(
            f"{path}: which array holds the {what}? arrays: {', '.join(sorted(arrays))} "
            "(name it with --time / --conductance / --current)"
        )
    t = np.asarray(arrays[time_key][()], dtype=np.float64)
    v = np.asarray(arrays[value_key][()], dtype=np.float64)
    v = v[None, :] if v.ndim == 1 else v
    t = t[None, :] if t.ndim == 1 else t
    if v.ndim != 2 or t.ndim != 2 or t.shape[1] != v.shape[1] or t.shape[0] not in (1, v.shape[0]):
        raise CalibrationError(
            f"{path}: {time_key!r} {t.shape} and {value_key!r} {v.shape} do not match: time (N,) or (U, N), "
            "values (U, N)"
        )
    t = np.broadcast_to(t, v.shape)
    for key, a in ((time_key, t), (value_key, v)):
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            u, k = (int(x) for x in bad[0])
            raise CalibrationError(f"{path}: array {key!r}, trace {u}, sample {k}: {a[u, k]} is not finite")
    keys: dict[str, NDArray[Any]] = {}
    for name, key in _key_columns(spec).items():
        picked = _pick(path, arrays, key, "time")
        assert picked is not None
        keys[name] = np.asarray(arrays[picked][()]).reshape(-1)
        if keys[name].size != v.shape[0]:
            raise CalibrationError(f"{path}: {key!r} has {keys[name].size} entries for {v.shape[0]} traces")
    traces = []
    for u in range(v.shape[0]):
        t_s = t[u] * TIME_UNITS[spec.time_unit]
        back = np.flatnonzero(np.diff(t_s) <= 0)
        if back.size:
            raise CalibrationError(
                f"{path}: array {time_key!r}, trace {u}, sample {int(back[0]) + 1}: time does not increase"
            )
        g = _to_siemens(v[u], spec, f"{path}: array {value_key!r}, trace {u}")
        keys_u = {k: _label(a[u]) for k, a in keys.items()}
        if "device" not in keys_u and v.shape[0] > 1:
            keys_u["trace"] = str(u)  # each row its own device
        traces.append(Trace(str(path), np.array(t_s), g, keys_u))
    return traces


def _label(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _check_trace(trace: Trace) -> None:
    if trace.t_s.size < 2:
        raise CalibrationError(
            f"{trace.source}: a trace with {trace.t_s.size} sample(s); a relaxation needs more"
        )
    if trace.t_s[0] < 0:
        raise CalibrationError(
            f"{trace.source}: time starts at {trace.t_s[0]:g} s; "
            "times must be since the end of the pulse (>= 0)"
        )


# -- assigning devices, conditions, cycles ----------------------------------------------------------
def _sorted_labels(labels: list[str]) -> list[str]:
    """Distinct labels in natural order (numbers by value, then text)."""

    def key(s: str) -> tuple[Any, ...]:
        return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))

    return sorted(set(labels), key=key)


def _as_int(trace: Trace, name: str) -> int:
    text = trace.keys[name]
    try:
        value = int(float(text))
    except ValueError:
        raise CalibrationError(f"{trace.source}: {name} {text!r} is not an integer") from None
    if value < 0 or value != float(text):
        raise CalibrationError(f"{trace.source}: {name} {text!r} must be a non-negative integer")
    return value


def assign(
    traces: list[Trace], shape: tuple[int, int] | None
) -> tuple[tuple[int, int], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], dict[str, Any]]:
    """(shape, device index, condition index, cycle) per trace, and the labels behind the indices."""
    labels: dict[str, Any] = {}
    if all("row" in t.keys and "col" in t.keys for t in traces):
        rc = np.array([(_as_int(t, "row"), _as_int(t, "col")) for t in traces])
        shape = shape or (int(rc[:, 0].max()) + 1, int(rc[:, 1].max()) + 1)
        if (rc[:, 0] >= shape[0]).any() or (rc[:, 1] >= shape[1]).any():
            raise CalibrationError(f"a (row, col) outside the {shape[0]}x{shape[1]} array (--shape)")
        device = rc[:, 0] * shape[1] + rc[:, 1]
    elif all("device" in t.keys for t in traces) and all(t.keys["device"].isdigit() for t in traces):
        device = np.array([_as_int(t, "device") for t in traces])
        shape = shape or (1, int(device.max()) + 1)
    else:
        names = [t.keys.get("device") or f"{t.source}#{t.keys.get('trace', '0')}" for t in traces]
        order = list(dict.fromkeys(names)) if not any("device" in t.keys for t in traces) else None
        order = order or _sorted_labels(names)
        device = np.array([order.index(n) for n in names])
        labels["devices"] = order
        shape = shape or (1, len(order))
    if device.max() >= shape[0] * shape[1]:
        raise CalibrationError(f"{int(device.max()) + 1} devices do not fit a {shape[0]}x{shape[1]} array")
    conditions = _sorted_labels([t.keys.get("condition", "") for t in traces])
    condition = np.array([conditions.index(t.keys.get("condition", "")) for t in traces])
    labels["conditions"] = conditions
    if all("cycle" in t.keys for t in traces):
        cycle = np.array([_as_int(t, "cycle") for t in traces])
    else:  # repeats of a (device, condition) are its cycles, in file order
        seen: dict[tuple[int, int], int] = defaultdict(int)
        cycle = np.empty(len(traces), dtype=np.int64)
        for k, key in enumerate(zip(device.tolist(), condition.tolist(), strict=True)):
            cycle[k] = seen[key]
            seen[key] += 1
    units = list(zip(device.tolist(), condition.tolist(), cycle.tolist(), strict=True))
    if len(set(units)) != len(units):
        dup = next(u for u in units if units.count(u) > 1)
        where = [traces[k].source for k, u in enumerate(units) if u == dup]
        raise CalibrationError(
            f"two traces for device {dup[0]}, condition {dup[1]}, cycle {dup[2]}: "
            f"{', '.join(sorted(set(where)))}"
        )
    return shape, device.astype(np.int64), condition.astype(np.int64), cycle.astype(np.int64), labels


# -- writing ----------------------------------------------------------------------------------------
def import_files(paths: list[Path], out: Path, spec: ImportSpec) -> dict[str, Any]:
    """Read every file and write one campaign file ``out`` (refuses to overwrite); returns a summary."""
    spec.check()
    if not paths:
        raise CalibrationError("no files to import")
    if len(paths) == 1 and paths[0].suffix.lower() in (".h5", ".hdf5", ".hdf") and _is_v1(paths[0]):
        return convert_v1(paths[0], out)
    traces = [trace for path in sorted(paths) for trace in read_traces(path, spec)]
    shape, device, condition, cycle, labels = assign(traces, spec.shape)
    spec_json = {k: v for k, v in asdict(spec).items() if v is not None}
    config = {"import": {**spec_json, "files": [str(p) for p in sorted(paths)], **labels}}
    order = np.lexsort((cycle, condition, device))
    with CampaignFile.create(out, config=config, shape=shape, safety_limits={}) as store:
        store.add_instrument(f"imported by hwloop calibrate import from {len(paths)} file(s)")
        by_length: dict[int, list[int]] = defaultdict(list)
        for k in order:
            by_length[traces[k].t_s.size].append(int(k))
        for _, ks in sorted(by_length.items()):
            sel = np.array(ks)
            t = np.stack([traces[k].t_s for k in ks])
            store.append(
                "decay",
                {
                    "device": device[sel],
                    "condition": condition[sel],
                    "cycle": cycle[sel],
                    "amplitude_v": np.full(sel.size, np.nan),
                    "width_s": np.full(sel.size, np.nan),
                    "n_pulses": np.full(sel.size, UNKNOWN_INT),
                    "read_v": np.full(sel.size, np.nan if spec.read_v is None else spec.read_v),
                    "every_s": np.median(np.diff(t, axis=1), axis=1),
                    "delay_s": t[:, 0],
                    "pulse_energy_j": np.full(sel.size, np.nan),
                    "baseline_g_siemens": np.full(sel.size, np.nan),
                },
                {"t_s": t, "g_siemens": np.stack([traces[k].g_siemens for k in ks])},
            )
        store.flush()
    return {
        "out": str(out),
        "files": len(paths),
        "relaxations": len(traces),
        "devices": int(np.unique(device).size),
        "shape": list(shape),
        "conditions": labels["conditions"],
    }


def _is_v1(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "devices" in f and "config" in f.attrs and "format" not in f.attrs
    except OSError:
        return False


_V1_UNIT = re.compile(r"^(?:b\d+_)?cond(\d+)_cyc(\d+)$|^(up|down)_k(\d+)$")


def convert_v1(old: Path, out: Path) -> dict[str, Any]:
    """Rewrite a version-1 campaign file (one group per measurement) as a version-2 one, unit by unit."""
    with h5py.File(old, "r") as f:
        shape = tuple(int(x) for x in f.attrs["shape"])
        config = json.loads(str(f.attrs["config"]))
        pulse_grid = len((config.get("pulse") or {}).get("amplitudes_v", [])) * len(
            (config.get("pulse") or {}).get("widths_s", [])
        )
        rows: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        traces: dict[str, dict[int, list[tuple[Array, Array]]]] = defaultdict(lambda: defaultdict(list))
        for key, dev in f["devices"].items():
            r, c = int(key[1:4]), int(key[6:9])
            for protocol, group in dev.items():
                for name, unit in group.items():
                    if not unit.attrs.get("complete", False):
                        continue
                    m = _V1_UNIT.match(name)
                    if m is None:
                        raise CalibrationError(f"{old}: unknown unit {key}/{protocol}/{name}")
                    if m.group(3):
                        condition = int(m.group(4)) + (pulse_grid if m.group(3) == "down" else 0)
                        cycle = 0
                    else:
                        condition, cycle = int(m.group(1)), int(m.group(2))
                    cols = rows[protocol]
                    cols["device"].append(r * shape[1] + c)
                    cols["condition"].append(condition)
                    cols["cycle"].append(cycle)
                    attrs = dict(unit.attrs)
                    attrs.pop("complete")
                    for a, v in attrs.items():
                        cols[a].append(v)
                    if protocol == "pulse":
                        cols["g_before_siemens"].append(float(unit["g_before_siemens"][0]))
                        cols["g_after_siemens"].append(float(unit["g_after_siemens"][0]))
                    else:
                        cols["baseline_g_siemens"].append(float(unit["baseline_g_siemens"][0]))
                        traces[protocol][len(cols["device"]) - 1].append(
                            (unit["t_s"][()], unit["g_siemens"][()])
                        )
        with CampaignFile.create(
            out, config=config, shape=(shape[0], shape[1]), safety_limits=json.loads(f.attrs["safety_limits"])
        ) as store:
            for identity in json.loads(str(f.attrs["instruments"])):
                store.add_instrument(identity)
            store.add_instrument(f"converted from version-1 file {old}")
            for protocol, cols in rows.items():
                data = {k: np.asarray(v) for k, v in cols.items()}
                if protocol == "pulse":
                    store.append(protocol, data)
                    continue
                t = np.stack([traces[protocol][k][0][0] for k in range(len(data["device"]))])
                g = np.stack([traces[protocol][k][0][1] for k in range(len(data["device"]))])
                store.append(protocol, data, {"t_s": t, "g_siemens": g})
            store.flush()
    return {"out": str(out), "files": 1, "converted_from_version": 1, "shape": list(shape)}
