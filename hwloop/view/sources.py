"""Followers of a growing HDF5 file: a calibration campaign or a lab step log, read as it is written.

Each ``poll()`` opens the file read-only, reads only what was committed since the last poll, closes it
and returns a snapshot (plain numpy arrays and numbers) for the page. The file is opened with
``locking=False`` so a reader never holds a lock the writer could wait on, and in SWMR mode where the
writer uses it (the lab log); campaign files are written without SWMR, so they are read by their own
commit protocol: only rows below a table's ``rows`` attribute, and a row whose trace is not yet on disk
(all NaN) is read again at the next poll. A poll that meets a half-flushed file returns the previous
snapshot and tries again next time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import h5py
import numpy as np
from numpy.typing import NDArray

from hwloop.errors import HwloopError

Array = NDArray[np.float64]
LATEST_TRACES = 6
Snapshot = TypeVar("Snapshot")


def _open(path: Path) -> h5py.File:
    """The file, read-only, without locks; SWMR where the writer enabled it."""
    try:
        return h5py.File(path, "r", swmr=True, locking=False)
    except OSError:
        return h5py.File(path, "r", locking=False)


def file_kind(path: Path) -> str:
    """ "campaign" or "lablog" from the file's layout; one error line for anything else."""
    if not path.exists():
        raise HwloopError(f"{path} does not exist")
    try:
        with _open(path) as f:
            if f.attrs.get("format") == "hwloop-campaign":
                return "campaign"
            if "runs" in f:
                return "lablog"
    except OSError as exc:
        raise HwloopError(f"{path} is not a readable HDF5 file: {exc}") from None
    raise HwloopError(f"{path} is neither an hwloop campaign file nor a lab step log")


class _Follower(Generic[Snapshot]):
    """A follower's poll: a half-flushed file gives the previous snapshot (there is none at first)."""

    snapshot: Snapshot | None

    def poll(self) -> Snapshot:
        """Read what was committed since the last poll; return the updated snapshot."""
        try:
            return self._poll()
        except (OSError, KeyError, ValueError):
            if self.snapshot is None:
                raise
            return self.snapshot

    def _poll(self) -> Snapshot:
        raise NotImplementedError


# -- campaign -------------------------------------------------------------------------------------
@dataclass
class CampaignSnapshot:
    """What the page shows of a campaign. Device maps are (rows, cols); ``status`` per device is
    "pending" (no relaxation yet) or the fit verdict of its latest relaxation."""

    path: str
    shape: tuple[int, int]
    units_done: int
    units_expected: int
    pulse_rows: int
    progress: Array  # fraction of each device's relaxations measured, (rows, cols)
    status: NDArray[np.str_]  # (rows, cols)
    latest: list[dict[str, Any]]  # the last relaxations: device, row, col, t_s, g_siemens, fit_g_siemens
    tau_s: Array  # tau of every relaxation fitted "ok" so far
    lam: Array  # per-step lambda at dt_s of the same
    dt_s: float
    instruments: list[str] = field(default_factory=list)

    @property
    def tau_median_s(self) -> float:
        """Median tau (s) of the relaxations fitted so far (NaN before the first)."""
        return float(np.median(self.tau_s)) if self.tau_s.size else float("nan")


class CampaignFollower(_Follower[CampaignSnapshot]):
    """Follows ``/decay`` (and counts ``/pulse``) of a campaign file; fits each new relaxation once."""

    def __init__(self, path: Path, dt_s: float = 0.1) -> None:
        self.path = path
        self.dt_s = dt_s
        self.seen = 0
        self._tau: list[Array] = []
        self._lam: list[Array] = []
        self._rows: list[NDArray[np.int64]] = []
        self._status: list[NDArray[np.str_]] = []
        self._latest: list[dict[str, Any]] = []
        self.snapshot: CampaignSnapshot | None = None

    def _expected_per_device(self, config: dict[str, Any]) -> int:
        decay = config.get("decay") or config.get("bias_decay") or {}  # an array or an SMU campaign
        n = (
            len(decay.get("amplitudes_v", [1]))
            * len(decay.get("widths_s", [1]))
            * int(decay.get("cycles", 1))
            * len(decay.get("biases_v", [0]))
        )
        return max(n, 1)

    def _poll(self) -> CampaignSnapshot:
        with _open(self.path) as f:
            rows, cols = (int(v) for v in f.attrs["shape"])
            config = json.loads(str(f.attrs.get("config", "{}")))
            instruments = json.loads(str(f.attrs.get("instruments", "[]")))
            pulse_rows = int(f["pulse"].attrs.get("rows", 0)) if "pulse" in f else 0
            new: dict[str, Any] = {}
            table = next((k for k in ("decay", "bias_decay") if k in f), None)  # SMU campaigns: bias_decay
            if table is not None:
                g = f[table]
                committed = int(g.attrs.get("rows", 0))
                stop = min(committed, *(d.shape[0] for d in g.values()))
                if stop > self.seen:
                    new = {name: g[name][self.seen : stop] for name in ("device", "n_samples", "delay_s")}
                    new["t_s"] = g["t_s"][self.seen : stop]
                    new["g_siemens"] = g["g_siemens"][self.seen : stop]
        if new:
            self._add(new)
        device = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
        status_all = np.concatenate(self._status) if self._status else np.zeros(0, "<U20")
        per_device = self._expected_per_device(config)
        counts = np.bincount(device, minlength=rows * cols)[: rows * cols]
        status = np.full(rows * cols, "pending", dtype="<U20")
        status[device] = status_all  # the latest relaxation of a device wins (later rows overwrite)
        self.snapshot = CampaignSnapshot(
            path=str(self.path),
            shape=(rows, cols),
            units_done=self.seen,
            units_expected=len(config.get("rows") or range(rows))
            * len(config.get("cols") or range(cols))
            * per_device,
            pulse_rows=pulse_rows,
            progress=(np.minimum(counts / per_device, 1.0)).reshape(rows, cols),
            status=status.reshape(rows, cols),
            latest=list(self._latest),
            tau_s=np.concatenate(self._tau) if self._tau else np.zeros(0),
            lam=np.concatenate(self._lam) if self._lam else np.zeros(0),
            dt_s=self.dt_s,
            instruments=[str(i) for i in instruments],
        )
        return self.snapshot

    def _add(self, new: dict[str, Any]) -> None:
        from calibration.fit import fit_decay

        g = np.asarray(new["g_siemens"], dtype=np.float64)
        # A row whose trace is not on disk yet reads as all NaN: stop before it, read it next poll.
        landed = ~np.all(np.isnan(g), axis=1)
        n = int(np.argmin(landed)) if not landed.all() else landed.size
        if n == 0:
            return
        t = np.asarray(new["t_s"][:n], dtype=np.float64)
        g = g[:n]
        t_since = t - t[:, :1] + np.asarray(new["delay_s"][:n], dtype=np.float64)[:, None]
        m = int(np.max(new["n_samples"][:n]))
        t_since, g = t_since[:, :m], g[:, :m]
        fit = fit_decay(t_since, g, "exp")
        ok = fit.ok
        self._tau.append(fit.tau[ok])
        self._lam.append(fit.lam(self.dt_s)[ok])
        device = np.asarray(new["device"][:n], dtype=np.int64)
        self._rows.append(device)
        self._status.append(fit.status.astype("<U20"))
        predicted = fit.predict(t_since)
        for k in range(max(0, n - LATEST_TRACES), n):
            keep = np.isfinite(g[k])
            self._latest.append(
                {
                    "device": int(device[k]),
                    "t_s": t_since[k][keep],
                    "g_siemens": g[k][keep],
                    "fit_g_siemens": predicted[k][keep],
                    "status": str(fit.status[k]),
                    "tau_s": float(fit.tau[k]),
                }
            )
        self._latest = self._latest[-LATEST_TRACES:]
        self.seen += n


# -- lab step log ----------------------------------------------------------------------------------
SCORE_NAMES = ("score", "reward", "game_score")


@dataclass
class LabSnapshot:
    """What the page shows of a lab step log's run. ``notes`` name the panels whose data is absent.

    The fidelity figures are those of ``hwloop lab report`` (``hwloop.backends.lab_report``): over every
    step whose model F exists (not a game's first step) and every analog synapse (the run's
    ``digital_synapses`` left out), accumulated as the steps arrive."""

    path: str
    run: str
    attrs: dict[str, str]
    steps: Array  # (N,) step index
    lateness_s: Array  # (N,)
    pulses: Array  # (N,) row pulses sent per step
    dropped: Array  # (N,) device writes dropped per step (below the pulse threshold)
    refreshed: Array  # (N,) rows refreshed on the devices per step
    correlation: Array  # (N,) Pearson r of measured vs model F over the block, per step (NaN: no model)
    games: int  # distinct games (episodes) so far
    fidelity: dict[
        str, float | None
    ]  # correlation, rms_ratio, rms_measured, rms_model, pairs: the run so far
    f_measured: Array | None  # (R, C) at the latest step
    f_model: Array | None  # (R, C) at the latest step
    f_diff: Array | None  # (R, C) measured - model at the latest step
    score: Array | None  # per-step or per-game score, as logged
    events: list[str]
    notes: list[str]

    @property
    def pulses_total(self) -> int:
        """Row pulses sent over the run so far."""
        return int(self.pulses.sum())


def correlation_per_step(a: Array, b: Array) -> Array:
    """Pearson correlation of a[k] and b[k] flattened, per step k, over the pairs where both are finite
    (NaN where fewer than two such pairs, or either side is constant)."""
    x = a.reshape(a.shape[0], -1).astype(np.float64)
    y = b.reshape(b.shape[0], -1).astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=1)
    x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(ok, x - (x.sum(axis=1) / n)[:, None], 0.0)
        y = np.where(ok, y - (y.sum(axis=1) / n)[:, None], 0.0)
        den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
        return np.where((n >= 2) & (den > 0), (x * y).sum(axis=1) / den, np.nan)


class LabLogFollower(_Follower[LabSnapshot]):
    """Follows one run (default: the latest) of a lab step log, reading only new steps each poll."""

    def __init__(self, path: Path, run: str | None = None) -> None:
        self.path = path
        self.run = run
        self.seen = 0
        self._lateness: list[Array] = []
        self._pulses: list[Array] = []
        self._dropped: list[Array] = []
        self._refreshed: list[Array] = []
        self._corr: list[Array] = []
        self._steps: list[Array] = []
        self._episodes: set[int] = set()
        self._sums = np.zeros(6)
        self._f_measured: Array | None = None
        self._f_model: Array | None = None
        self._f_diff: Array | None = None
        self.snapshot: LabSnapshot | None = None

    def _poll(self) -> LabSnapshot:
        from hwloop.backends.lab_report import fidelity_from_sums, fidelity_sums

        with _open(self.path) as f:
            runs = f["runs"]
            if not len(runs):
                raise HwloopError(f"{self.path} holds no run yet")
            if self.run is None:
                self.run = sorted(runs)[-1]
            if self.run not in runs:
                raise HwloopError(f"{self.path} has no run {self.run}; it has: {', '.join(sorted(runs))}")
            g = runs[self.run]
            attrs = {k: str(v) for k, v in g.attrs.items() if k != "digital_synapses"}
            names = set(g)
            has_meas, has_model = "f_measured" in names, "f_model" in names
            score_name = next((n for n in SCORE_NAMES if n in names), None)
            columns = ("step", "episode", "lateness_s", "dropped", "refreshed", "pulse_width_s")
            per_step = [x for x in (*columns, "f_measured", "f_model") if x in names]
            n = min(g[x].shape[0] for x in per_step) if "step" in names else 0
            if n > self.seen:
                sl, k = slice(self.seen, n), n - self.seen
                self._steps.append(g["step"][sl].astype(np.float64))
                self._lateness.append(self._column(g, "lateness_s", sl, k, np.nan))
                self._dropped.append(self._column(g, "dropped", sl, k, 0.0))
                if "refreshed" in names:
                    self._refreshed.append(
                        np.asarray(g["refreshed"][sl], np.float64).reshape(k, -1).sum(axis=1)
                    )
                else:
                    self._refreshed.append(np.zeros(k))
                if "pulse_width_s" in names:
                    widths = g["pulse_width_s"][sl]
                    self._pulses.append((widths.reshape(k, -1) > 0).sum(axis=1).astype(float))
                else:
                    self._pulses.append(np.zeros(k))
                if "episode" in names:
                    self._episodes.update(int(e) for e in np.unique(g["episode"][sl]))
                fm = np.asarray(g["f_measured"][sl], np.float64) if has_meas else None
                fo = np.asarray(g["f_model"][sl], np.float64) if has_model else None
                if fm is not None and fo is not None:
                    digital = np.asarray(g.attrs.get("digital_synapses", np.zeros(fm.shape[1:], bool)), bool)
                    analog = np.broadcast_to(~digital, fm.shape)
                    self._sums += fidelity_sums(fm[analog], fo[analog])
                    self._corr.append(correlation_per_step(np.where(analog, fm, np.nan), fo))
                    self._f_diff = fm[-1] - fo[-1]
                else:
                    self._corr.append(np.full(k, np.nan))
                self._f_measured = None if fm is None else fm[-1]
                self._f_model = None if fo is None else fo[-1]
                self.seen = n
            if self.seen == 0:  # no step yet: the block's maps start blank (NaN), in the log's shape
                blank = {x: np.full(g[x].shape[1:], np.nan) for x in ("f_measured", "f_model") if x in names}
                self._f_measured, self._f_model = blank.get("f_measured"), blank.get("f_model")
                self._f_diff = blank["f_measured"] if has_meas and has_model else None
            score = np.asarray(g[score_name][:], dtype=np.float64) if score_name else None
            events = (
                [e.decode() if isinstance(e, bytes) else str(e) for e in g["events"][:]]
                if ("events" in names)
                else []
            )
        notes = []
        if not has_meas:
            notes.append("no measured-F dataset (f_measured) in this log: its heatmap is left out")
        if not has_model:
            notes.append(
                "no model-F dataset (f_model) in this log: the model heatmap and the fidelity are left out"
            )
        if score_name is None:
            notes.append("no score dataset in this log: the game's JSON result (--json-out) has the score")
        cat = np.concatenate
        self.snapshot = LabSnapshot(
            path=str(self.path),
            run=str(self.run),
            attrs=attrs,
            steps=cat(self._steps) if self._steps else np.zeros(0),
            lateness_s=cat(self._lateness) if self._lateness else np.zeros(0),
            pulses=cat(self._pulses) if self._pulses else np.zeros(0),
            dropped=cat(self._dropped) if self._dropped else np.zeros(0),
            refreshed=cat(self._refreshed) if self._refreshed else np.zeros(0),
            correlation=cat(self._corr) if self._corr else np.zeros(0),
            games=len(self._episodes),
            fidelity=fidelity_from_sums(self._sums),
            f_measured=self._f_measured,
            f_model=self._f_model,
            f_diff=self._f_diff,
            score=score,
            events=events,
            notes=notes,
        )
        return self.snapshot

    @staticmethod
    def _column(g: Any, name: str, sl: slice, k: int, absent: float) -> Array:
        """A per-step scalar column over ``sl`` as floats (``absent`` where the log has no such column)."""
        return np.asarray(g[name][sl], dtype=np.float64) if name in g else np.full(k, absent)
