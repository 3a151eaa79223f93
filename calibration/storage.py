"""Campaign files (HDF5): nothing measured is ever lost, nothing is measured twice.

Layout::

    /                          attrs: software_version, created, instruments (JSON list), safety_limits
                               (JSON), config (JSON of the CampaignConfig), shape (rows, cols)
    /devices/r003_c005/decay/cond00_cyc01    one completed decay measurement of device (3, 5)
        datasets  t_s (controller timestamps, s), i_a (read currents, A), g_siemens (i / read_v),
                  baseline_g_siemens (reads before the pulses, S)
        attrs     amplitude_v, width_s, n_pulses, read_v, every_s, delay_s (pulse end -> first read),
                  pulse_energy_j, complete = True (written last)
    /devices/r003_c005/pulse/up_k03          one pulse-response point (g before / after, amplitude, width)
    /devices/r000_c000/bias_decay/b01_cond01_cyc00   SMU campaigns: one relaxation held at a decay bias
        datasets  t_s (instrument timestamps, s), i_a, g_siemens, baseline_g_siemens, as for decay
        attrs     bias_v (= read_v), amplitude_v, width_s, n_pulses, every_s, delay_s, pulse_energy_j

A measurement is written and ``flush``-ed as one unit before the next begins; its ``complete``
attribute is set last, so a unit cut short by a crash is recognisable and discarded on resume.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from device_models.record import CalibrationError


def software_version() -> str:
    """The installed hwloop version ("unknown" when running from a bare checkout)."""
    try:
        return metadata.version("hwloop")
    except metadata.PackageNotFoundError:
        return "unknown"


def device_key(row: int, col: int) -> str:
    """HDF5 group name of the device at (row, col)."""
    return f"r{row:03d}_c{col:03d}"


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
        f.h5.attrs["software_version"] = software_version()
        f.h5.attrs["created"] = datetime.now(UTC).isoformat()
        f.h5.attrs["config"] = json.dumps(config, sort_keys=True)
        f.h5.attrs["safety_limits"] = json.dumps(safety_limits, sort_keys=True)
        f.h5.attrs["shape"] = np.asarray(shape, dtype=np.int64)
        f.h5.attrs["instruments"] = json.dumps([])
        f.h5.create_group("devices")
        f.h5.flush()
        return f

    @classmethod
    def resume(cls, path: str | Path, *, config: dict[str, Any]) -> CampaignFile:
        """Reopen a campaign to continue it; the configuration must be the one it was started with.
        Units left incomplete by an interruption are removed (they are re-measured)."""
        f = cls(path, "r+")
        stored = json.loads(str(f.h5.attrs.get("config", "{}")))
        if stored != json.loads(json.dumps(config, sort_keys=True)):
            f.close()
            raise CalibrationError(
                f"{path} was started with another campaign configuration; resume with the same one"
            )
        for dev in f.h5["devices"].values():
            for protocol in dev.values():
                for name in [n for n, unit in protocol.items() if not unit.attrs.get("complete", False)]:
                    del protocol[name]
        f.h5.flush()
        return f

    def config(self) -> dict[str, Any]:
        """The campaign configuration stored at creation."""
        return dict(json.loads(str(self.h5.attrs["config"])))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the measured array."""
        rows, cols = (int(x) for x in self.h5.attrs["shape"])
        return rows, cols

    def add_instrument(self, identity: str) -> None:
        """Record an instrument's identity string (once)."""
        known = json.loads(str(self.h5.attrs["instruments"]))
        if identity not in known:
            self.h5.attrs["instruments"] = json.dumps([*known, identity])

    def instruments(self) -> list[str]:
        """Identity strings of every instrument that took part."""
        return list(json.loads(str(self.h5.attrs["instruments"])))

    def has(self, row: int, col: int, protocol: str, unit: str) -> bool:
        """Whether the device already holds a completed measurement ``protocol/unit``."""
        path = f"devices/{device_key(row, col)}/{protocol}/{unit}"
        return path in self.h5 and bool(self.h5[path].attrs.get("complete", False))

    def write_unit(
        self, row: int, col: int, protocol: str, unit: str, data: dict[str, np.ndarray], attrs: dict[str, Any]
    ) -> None:
        """Store one completed measurement of one device; ``complete`` is set last. Does not flush."""
        group = self.h5.require_group(f"devices/{device_key(row, col)}/{protocol}")
        if unit in group:
            raise CalibrationError(
                f"device ({row}, {col}) already holds {protocol}/{unit}: refusing to overwrite"
            )
        g = group.create_group(unit)
        for name, values in data.items():
            g.create_dataset(name, data=np.asarray(values))
        for name, value in attrs.items():
            g.attrs[name] = value
        g.attrs["complete"] = True

    def flush(self) -> None:
        """Push everything written so far to disk."""
        self.h5.flush()

    def units(self, protocol: str) -> list[tuple[int, int, str, h5py.Group]]:
        """Every completed unit of ``protocol``: (row, col, unit name, group), in device order."""
        out = []
        for key in sorted(self.h5["devices"]):
            dev = self.h5["devices"][key]
            if protocol not in dev:
                continue
            row, col = int(key[1:4]), int(key[6:9])
            for name in sorted(dev[protocol]):
                if dev[protocol][name].attrs.get("complete", False):
                    out.append((row, col, name, dev[protocol][name]))
        return out

    def close(self) -> None:
        """Flush and close."""
        if self.h5.id.valid:
            self.h5.flush()
            self.h5.close()

    def __enter__(self) -> CampaignFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
