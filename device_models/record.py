"""``CalibrationRecord``: what a calibrated array implements, per device, as a JSON file.

The backends realise a record through ``device_models.realisation`` (the one place that turns a
device's law, at a bias, into a per-step lambda for a given dt). The record is columnar:
every per-device field is a list of length D = rows * cols in row-major order (device (r, c) at
index r * cols + c); values that do not apply or were not measured are ``null`` (NaN in numpy).

Per device:
    status            "ok" or why the device is not usable (see ``calibration.fit`` statuses)
    law               decay law chosen by model selection ("exp", "biexp", "stretched", "compressed";
                      see ``device_models.laws``)
    tau1_s, tau2_s, w1, beta   the law's own parameters at ``decay_bias_v`` (``device_models.laws``)
    tau_s             the law's 1/e time, s (``laws.e_fold_time_s``): a dt-free summary for reports
    g_inf_siemens, delta_g_siemens   baseline and amplitude of the fitted relaxation
    g_min_siemens, g_max_siemens     conductance window
    dg_up_siemens, dg_down_siemens   conductance change of one reference pulse, each polarity
                                     (down is negative); gamma of the device
    amp_exponent, width_exponent     pulse-response scaling dg = dg_ref (|V|/V_ref)^a (w/w_ref)^b
    tau_err_s, dg_up_err_siemens, dg_down_err_siemens   one-sigma uncertainties
    rmse_rel          RMS fit residual relative to delta_g (goodness of fit)

Schema version 2 stores only the fitted laws and their bias dependence: no time step and no
per-step lambda (version 1 had ``dt_s``, ``lam``, ``lam_err`` and ``step_error``, all derived at one
dt; version-1 files still load, those columns dropped). ``lam_at(dt_s)`` derives lambda on demand.

``decay_bias_v`` is the bias the devices were held at while the tau_s relaxations were measured (0 V for
crossbar-controller campaigns, whose idle lines sit at 0 V; None if unknown). ``bias_law`` (optional,
from SMU campaigns at several biases) is the measured decay-time versus bias relation per device, the
``device_models`` law tau(V) = tau_ref_s exp(-(V - bias_ref_v) / efold_v) fitted to tau measured per bias.

The schema lives in ``device_models`` (the lowest package) so that the backends in ``hwloop``, the
``calibration`` package that writes records and the CLI all import it one way.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device_models.errors import HwloopError
from device_models.laws import DEFAULT_HORIZON_STEPS, e_fold_time_s, step_retention_by_law
from device_models.memristor import tau_at_bias

Column = list[float | None]

NUMERIC_FIELDS: tuple[str, ...] = (
    "tau_s",
    "tau1_s",
    "tau2_s",
    "w1",
    "beta",
    "g_inf_siemens",
    "delta_g_siemens",
    "g_min_siemens",
    "g_max_siemens",
    "dg_up_siemens",
    "dg_down_siemens",
    "amp_exponent",
    "width_exponent",
    "tau_err_s",
    "dg_up_err_siemens",
    "dg_down_err_siemens",
    "rmse_rel",
)


def _software_version() -> str:
    try:
        return metadata.version("hwloop")
    except metadata.PackageNotFoundError:
        return "unknown"


class CalibrationError(HwloopError):
    """A calibration record or calibration input is missing, malformed or inconsistent."""


class Provenance(BaseModel):
    """Where a record's numbers came from."""

    model_config = ConfigDict(extra="forbid")

    instruments: list[str] = Field(
        default_factory=list, description="identity strings (*IDN?) of the instruments"
    )
    software_version: str = Field(description="hwloop version that produced the record")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source_file: str | None = Field(default=None, description="the HDF5 campaign file the fit came from")
    notes: str = ""


class ReferencePulse(BaseModel):
    """The programming pulse that dg_up / dg_down refer to."""

    model_config = ConfigDict(extra="forbid")

    amplitude_v: float = Field(gt=0, description="|V| of the reference pulse, volts")
    width_s: float = Field(gt=0, description="width of the reference pulse, seconds")


def _to_column(value: Any) -> Any:
    """numpy arrays / NaN -> JSON-able lists with None for missing values."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if isinstance(value, list):
        return [None if (isinstance(v, float) and not math.isfinite(v)) else v for v in value]
    return value


def _column_array(column: Column) -> NDArray[np.float64]:
    return np.array([np.nan if v is None else v for v in column], dtype=np.float64)


class BiasLaw(BaseModel):
    """Measured decay time versus decay bias, per device (columns of length D, NaN/null where unfitted).

    tau(V) = tau_ref_s * exp(-(V - bias_ref_v) / efold_v), the ``device_models.memristor.tau_at_bias``
    law, least-squares fitted to ln tau measured at each of ``biases_v``.
    """

    model_config = ConfigDict(extra="forbid")

    bias_ref_v: float = Field(description="bias at which tau_ref_s holds, V")
    biases_v: list[float] = Field(min_length=2, description="biases the relaxations were measured at, V")
    tau_measured_s: list[Column] = Field(description="per bias, per device: measured tau, s")
    tau_ref_s: Column = Field(description="fitted tau at bias_ref_v, s")
    efold_v: Column = Field(description="fitted bias change that divides tau by e, V")
    efold_err_v: Column = Field(description="one-sigma uncertainty of efold_v, V (null with 2 biases)")
    rms_log_residual: Column = Field(description="RMS of ln(tau measured / tau fitted) over the biases")

    @field_validator("tau_ref_s", "efold_v", "efold_err_v", "rms_log_residual", mode="before")
    @classmethod
    def _arrays_to_lists(cls, value: Any) -> Any:
        return _to_column(value)

    @field_validator("tau_measured_s", mode="before")
    @classmethod
    def _rows_to_lists(cls, value: Any) -> Any:
        return [_to_column(np.asarray(row, dtype=np.float64)) for row in value]

    @model_validator(mode="after")
    def _check_shapes(self) -> BiasLaw:
        if len(self.tau_measured_s) != len(self.biases_v):
            raise ValueError(
                f"tau_measured_s has {len(self.tau_measured_s)} rows for {len(self.biases_v)} biases"
            )
        n = len(self.tau_ref_s)
        for name in ("efold_v", "efold_err_v", "rms_log_residual"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"bias_law.{name} has {len(getattr(self, name))} entries, expected {n}")
        if any(len(row) != n for row in self.tau_measured_s):
            raise ValueError(f"every bias_law.tau_measured_s row needs {n} entries")
        return self

    def array(self, name: str) -> NDArray[np.float64]:
        """A (D,) column (``tau_ref_s``, ``efold_v``, ``efold_err_v``, ``rms_log_residual``) or the
        (B, D) ``tau_measured_s``, NaN where missing."""
        if name == "tau_measured_s":
            return np.stack([_column_array(row) for row in self.tau_measured_s])
        if name not in ("tau_ref_s", "efold_v", "efold_err_v", "rms_log_residual"):
            raise CalibrationError(f"unknown bias-law field {name!r}")
        return _column_array(getattr(self, name))

    def tau_at(self, bias_v: float) -> NDArray[np.float64]:
        """(D,) decay time (s) of each device at decay bias ``bias_v`` (V), from its measured law."""
        efold: Any = self.array("efold_v")  # the law is elementwise: per-device e-fold voltages broadcast
        return np.asarray(tau_at_bias(float(bias_v), self.array("tau_ref_s"), self.bias_ref_v, efold))


class Survival(BaseModel):
    """Devices that relax by discrete jumps (status ``stepwise``): their time to full relaxation (the
    last rupture) per relaxation, summarised over cycles; columns of length D, null elsewhere.

    Not a time constant: the survival time of a filament is random from cycle to cycle, and the trace
    holds, then drops, rather than decaying geometrically. Nothing in hwloop turns it into a lambda."""

    model_config = ConfigDict(extra="forbid")

    median_s: Column = Field(description="median time to full relaxation over the device's cycles, s")
    spread_rel: Column = Field(description="interquartile range / median of that time over the cycles")
    cycles: Column = Field(description="number of stepwise relaxations summarised")

    @field_validator("median_s", "spread_rel", "cycles", mode="before")
    @classmethod
    def _arrays_to_lists(cls, value: Any) -> Any:
        return _to_column(value)

    def array(self, name: str) -> NDArray[np.float64]:
        """One (D,) column (``median_s``, ``spread_rel``, ``cycles``), NaN where missing."""
        if name not in ("median_s", "spread_rel", "cycles"):
            raise CalibrationError(f"unknown survival field {name!r}")
        return _column_array(getattr(self, name))


class CalibrationRecord(BaseModel):
    """Per-device STPN parameters of one measured (or simulated) array; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = 2
    shape: tuple[int, int] = Field(description="(rows, cols) of the calibrated array")
    horizon_steps: int = Field(
        default=DEFAULT_HORIZON_STEPS,
        ge=1,
        description="steps over which a non-exponential law's per-step lambda is fitted (lam_at)",
    )
    reference_pulse: ReferencePulse | None = None
    decay_bias_v: float | None = Field(
        default=None, description="bias held while the tau_s relaxations were measured, V (None: unknown)"
    )
    bias_law: BiasLaw | None = Field(default=None, description="measured tau versus bias, per device")
    survival: Survival | None = Field(
        default=None, description="stepwise devices: time to full relaxation over cycles (not a tau)"
    )
    provenance: Provenance

    status: list[str]
    law: list[Literal["exp", "biexp", "stretched", "compressed"]]
    tau_s: Column
    tau1_s: Column
    tau2_s: Column
    w1: Column
    beta: Column
    g_inf_siemens: Column
    delta_g_siemens: Column
    g_min_siemens: Column
    g_max_siemens: Column
    dg_up_siemens: Column
    dg_down_siemens: Column
    amp_exponent: Column
    width_exponent: Column
    tau_err_s: Column
    dg_up_err_siemens: Column
    dg_down_err_siemens: Column
    rmse_rel: Column

    @field_validator(*NUMERIC_FIELDS, mode="before")
    @classmethod
    def _arrays_to_lists(cls, value: Any) -> Any:
        return _to_column(value)

    @field_validator("status", "law", mode="before")
    @classmethod
    def _str_arrays_to_lists(cls, value: Any) -> Any:
        return value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value

    @model_validator(mode="before")
    @classmethod
    def _upgrade_v1(cls, data: Any) -> Any:
        """Version 1 -> 2: drop the dt-derived dt_s, lam, lam_err, step_error; a non-exponential
        device's tau_s (there: -dt / ln lambda) becomes its law's 1/e time."""
        if not isinstance(data, dict) or data.get("schema_version", 1) != 1:
            return data
        data = {k: v for k, v in data.items() if k not in ("dt_s", "lam", "lam_err", "step_error")}
        data["schema_version"] = 2
        laws, tau = data.get("law"), data.get("tau_s")
        if isinstance(laws, list) and isinstance(tau, list) and isinstance(data.get("tau1_s"), list):
            col = {k: _column_array(data[k]) for k in ("tau1_s", "tau2_s", "w1", "beta") if k in data}
            new = _column_array(tau)
            for law in ("biexp", "stretched"):
                sel = np.array([x == law for x in laws]) & np.isfinite(col["tau1_s"])
                if sel.any() and all(k in col for k in ("tau2_s", "w1", "beta")):
                    new[sel] = e_fold_time_s(
                        law, col["tau1_s"][sel], col["tau2_s"][sel], col["w1"][sel], col["beta"][sel]
                    )
            data["tau_s"] = _to_column(new)
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> CalibrationRecord:
        rows, cols = self.shape
        if rows < 1 or cols < 1:
            raise ValueError(f"shape must be positive, got {self.shape}")
        n = rows * cols
        for name in ("status", "law", *NUMERIC_FIELDS):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries, shape {self.shape} needs {n}"
                )
        ok = np.array([s == "ok" for s in self.status])
        if not ok.any():
            raise ValueError("no device has status 'ok'")
        for name in ("tau_s", "tau1_s"):
            tau = self.array(name)[ok]
            if not (np.all(np.isfinite(tau)) and np.all(tau > 0)):
                raise ValueError(f"{name} must be finite and > 0 on every 'ok' device")
        laws = np.array(self.law)
        needs = {"biexp": ("tau2_s", "w1"), "stretched": ("beta",)}
        for law, names in needs.items():
            sel = ok & (laws == law)
            for name in names:
                if sel.any() and not np.all(np.isfinite(self.array(name)[sel])):
                    raise ValueError(f"{name} must be given on every 'ok' {law} device")
        g_min, g_max = self.array("g_min_siemens")[ok], self.array("g_max_siemens")[ok]
        both = np.isfinite(g_min) & np.isfinite(g_max)
        if np.any(g_min[both] < 0) or np.any(g_max[both] <= g_min[both]):
            raise ValueError("conductance window needs 0 <= g_min_siemens < g_max_siemens")
        if self.survival is not None and len(self.survival.median_s) != n:
            raise ValueError(
                f"survival has {len(self.survival.median_s)} devices, shape {self.shape} needs {n}"
            )
        if self.bias_law is not None and len(self.bias_law.tau_ref_s) != n:
            raise ValueError(
                f"bias_law has {len(self.bias_law.tau_ref_s)} devices, shape {self.shape} needs {n}"
            )
        return self

    # -- access ----------------------------------------------------------------------------------
    @property
    def n_devices(self) -> int:
        """Number of devices D = rows * cols."""
        return self.shape[0] * self.shape[1]

    def good(self) -> NDArray[np.bool_]:
        """(D,) mask of devices with status 'ok'."""
        return np.array([s == "ok" for s in self.status])

    def array(self, name: str) -> NDArray[np.float64]:
        """One numeric per-device column as a (D,) float64 array, NaN where missing."""
        if name not in NUMERIC_FIELDS:
            raise CalibrationError(f"unknown calibration field {name!r}; known: {', '.join(NUMERIC_FIELDS)}")
        return np.array([np.nan if v is None else v for v in getattr(self, name)], dtype=np.float64)

    def lam_at(self, dt_s: float) -> NDArray[np.float64]:
        """(D,) per-step retention at time step dt_s (s) of each device at its characterisation bias
        (``lam_and_error_at``); NaN on bad devices. Backends use ``device_models.realisation``."""
        return self.lam_and_error_at(dt_s)[0]

    def lam_and_error_at(self, dt_s: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(lambda, RMS error of lambda^k against phi(k dt_s) over ``horizon_steps``), each (D,), from
        each device's law by ``device_models.laws.step_retention`` (exact for "exp"); NaN on bad devices.
        """
        if not (dt_s > 0 and math.isfinite(dt_s)):
            raise CalibrationError(f"dt_s must be a positive number of seconds, got {dt_s}")
        t1, t2, w1, beta = (self.array(k) for k in ("tau1_s", "tau2_s", "w1", "beta"))
        return step_retention_by_law(self.law, self.good(), dt_s, t1, t2, w1, beta, self.horizon_steps)

    @classmethod
    def from_arrays(
        cls,
        shape: tuple[int, int],
        tau_s: Any,
        *,
        provenance: Provenance | None = None,
        reference_pulse: ReferencePulse | None = None,
        horizon_steps: int = DEFAULT_HORIZON_STEPS,
        decay_bias_v: float | None = None,
        bias_law: BiasLaw | None = None,
        survival: Survival | None = None,
        status: Any = None,
        law: Any = None,
        **columns: Any,
    ) -> CalibrationRecord:
        """Build a record from (D,) or (rows, cols) arrays of the devices' fitted laws.

        Columns not given are missing (NaN); ``status`` defaults to "ok" where tau_s is finite and
        ``law`` to "exp"; ``tau1_s`` defaults to ``tau_s`` (an exponential's one time constant).
        Unknown column names raise ``CalibrationError``.
        """
        n = int(shape[0]) * int(shape[1])
        tau = np.broadcast_to(np.asarray(tau_s, dtype=np.float64).reshape(-1), (n,)).copy()
        unknown = sorted(set(columns) - set(NUMERIC_FIELDS))
        if unknown:
            raise CalibrationError(f"unknown calibration column(s): {', '.join(unknown)}")
        data: dict[str, Any] = {name: np.full(n, np.nan) for name in NUMERIC_FIELDS}
        for name, value in columns.items():
            data[name] = np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (n,)).copy()
        data["tau_s"] = tau
        data["tau1_s"] = np.where(np.isnan(data["tau1_s"]), tau, data["tau1_s"])
        ok = np.isfinite(tau) & (tau > 0)
        return cls.parse(
            {
                "shape": tuple(shape),
                "horizon_steps": horizon_steps,
                "reference_pulse": reference_pulse,
                "decay_bias_v": decay_bias_v,
                "bias_law": bias_law,
                "survival": survival,
                "provenance": provenance or Provenance(software_version=_software_version()),
                "status": list(np.where(ok, "ok", "not_measured")) if status is None else list(status),
                "law": ["exp"] * n if law is None else list(law),
                **data,
            }
        )

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the record as JSON (missing values as null); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibrationRecord:
        """Read and validate a record; any problem is one ``CalibrationError`` line naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"calibration record {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"calibration record {path} is not readable JSON: {exc}") from None
        return cls.parse(data, source=f"calibration record {path}")

    @classmethod
    def parse(cls, data: Any, source: str = "calibration record") -> CalibrationRecord:
        """Validate a decoded JSON object; errors become one ``CalibrationError`` line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "record"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise CalibrationError(f"{source}: {where}: {err['msg']}{more}") from None
