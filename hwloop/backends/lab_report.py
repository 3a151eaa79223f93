"""Fidelity of a lab run: how closely the block on the controller followed the STPN it stands in for.

Figures over a run of a step log (``hwloop.backends.lab_log``), every step whose model F exists (not a
game's first step) and every analog synapse (``digital_synapses`` excluded):

* correlation of measured F with the model's F (Pearson, over every (step, synapse) pair);
* RMS ratio: RMS(measured F) / RMS(model F) (1 = the block's F has the model's size);
* lateness: histogram of how far steps ended past their deadline, and the overruns (lateness > 0);
* dropped writes: device writes below the pulse threshold, per step and in total;
* bias held vs prescribed: the line voltages the controller read back against the compiled ones.

``fidelity_from_sums`` turns running sums into the first two (the lab backend's ``stats`` uses it live);
``lab_report`` reads a log; ``plot_report`` draws it. ``hwloop lab report LOG`` prints and plots.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from hwloop.errors import HwloopError

LATENESS_BINS_S = (0.0, 1e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, math.inf)


def fidelity_sums(measured: np.ndarray, model: np.ndarray) -> np.ndarray:
    """[sum a^2, sum b^2, sum ab, sum a, sum b, n] of paired values (a measured, b model) (NaN pairs out)."""
    a, b = np.asarray(measured, dtype=float).ravel(), np.asarray(model, dtype=float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return np.array([a @ a, b @ b, a @ b, a.sum(), b.sum(), a.size], dtype=float)


def fidelity_from_sums(sums: np.ndarray) -> dict[str, float | None]:
    """Correlation, RMS ratio, both RMS values and the count from ``fidelity_sums`` (None when undefined)."""
    saa, sbb, sab, sa, sb, n = (float(x) for x in sums)
    if n < 2:
        return {"correlation": None, "rms_ratio": None, "rms_measured": None, "rms_model": None, "pairs": n}
    var_a, var_b = n * saa - sa * sa, n * sbb - sb * sb
    corr = (n * sab - sa * sb) / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else None
    rms_a, rms_b = math.sqrt(saa / n), math.sqrt(sbb / n)
    return {
        "correlation": corr,
        "rms_ratio": rms_a / rms_b if rms_b > 0 else None,
        "rms_measured": rms_a,
        "rms_model": rms_b,
        "pairs": n,
    }


class LabReport(BaseModel):
    """What ``hwloop lab report`` prints, for one run of a step log."""

    log: str
    run: str
    resource: str
    bias: str
    normalisation: str
    steps: int
    games: int
    dt_s: float
    correlation: float | None
    rms_ratio: float | None
    rms_measured: float | None
    rms_model: float | None
    pairs: int
    overruns: int
    worst_lateness_s: float
    lateness_bins_s: list[float]
    lateness_counts: list[int]
    dropped_writes: int
    refresh_rows: int
    bias_prescribed_v: list[float]
    bias_held_v: list[float]
    bias_max_error_v: float
    events: list[str]


def _runs(path: Path) -> tuple[Any, list[str]]:
    import h5py

    if not path.is_file():
        raise HwloopError(f"step log not found: {path}")
    try:
        f = h5py.File(path, "r", swmr=True)
    except OSError as exc:
        raise HwloopError(f"cannot read the step log {path}: {exc}") from None
    runs = sorted(f["runs"]) if "runs" in f else []
    if not runs:
        f.close()
        raise HwloopError(f"{path} holds no lab runs (not a hwloop lab step log?)")
    return f, runs


def lab_report(path: Path, run: str | None = None) -> tuple[LabReport, dict[str, np.ndarray]]:
    """The report of ``run`` (default: the last) of the step log ``path``, and the per-step series the
    plot draws (measured and model F, lateness, dropped writes)."""
    f, runs = _runs(Path(path))
    with f:
        name = runs[-1] if run is None else run
        if name not in runs:
            raise HwloopError(f"{path} has no run {name!r}; it has {', '.join(runs)}")
        g = f["runs"][name]
        needed = ("f_measured", "f_model", "lateness_s", "dropped", "episode")
        missing = [k for k in needed if k not in g]
        if missing:
            raise HwloopError(
                f"{path} run {name} was written before fidelity logging ({', '.join(missing)} missing)"
            )
        n = min(g[k].shape[0] for k in needed)  # a live run grows while this reads: the common steps
        meas, model = g["f_measured"][:n], g["f_model"][:n]
        digital = np.asarray(g.attrs.get("digital_synapses", np.zeros(meas.shape[1:], bool)), dtype=bool)
        analog = np.broadcast_to(~digital, meas.shape)
        figures = fidelity_from_sums(fidelity_sums(meas[analog], model[analog]))
        late = g["lateness_s"][:n]
        counts, _ = np.histogram(late, bins=np.array(LATENESS_BINS_S))
        dropped = g["dropped"][:n]
        refreshed = g["refreshed"][:n] if "refreshed" in g else np.zeros((0,))
        prescribed = np.concatenate(
            [g.attrs.get("row_bias_prescribed_v", []), g.attrs.get("col_bias_prescribed_v", [])]
        )
        held = np.concatenate([g.attrs.get("row_bias_held_v", []), g.attrs.get("col_bias_held_v", [])])
        err = (
            float(np.max(np.abs(held - prescribed)))
            if prescribed.size and held.size == prescribed.size
            else 0.0
        )
        episodes = g["episode"][:n]
        report = LabReport(
            log=str(path),
            run=name,
            resource=str(g.attrs.get("resource", "")),
            bias=str(g.attrs.get("bias", "no bias (a log from before protocol v3)")),
            normalisation=str(g.attrs.get("normalisation", "native")),
            steps=int(meas.shape[0]),
            games=len(np.unique(episodes)),
            dt_s=float(g.attrs.get("dt_s", math.nan)),
            correlation=figures["correlation"],
            rms_ratio=figures["rms_ratio"],
            rms_measured=figures["rms_measured"],
            rms_model=figures["rms_model"],
            pairs=int(figures["pairs"] or 0),
            overruns=int(np.sum(late > 0)),
            worst_lateness_s=float(late.max()) if late.size else 0.0,
            lateness_bins_s=list(LATENESS_BINS_S),
            lateness_counts=[int(c) for c in counts],
            dropped_writes=int(dropped.sum()),
            refresh_rows=int(refreshed.sum()),
            bias_prescribed_v=prescribed.tolist(),
            bias_held_v=held.tolist(),
            bias_max_error_v=err,
            events=[e.decode() if isinstance(e, bytes) else str(e) for e in g["events"][:]],
        )
        series = {
            "f_measured": meas[analog].reshape(-1),
            "f_model": model[analog].reshape(-1),
            "lateness_s": late,
            "dropped": dropped,
            "prescribed": prescribed,
            "held": held,
        }
    return report, series


def plot_report(report: LabReport, series: dict[str, np.ndarray], out: Path) -> None:
    """Four panels: measured vs model F, lateness histogram, dropped writes per step, bias held vs
    prescribed per line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(10, 8))
    a, b = series["f_measured"], series["f_model"]
    ok = np.isfinite(a) & np.isfinite(b)
    ax[0, 0].plot(b[ok], a[ok], ".", ms=1.5, alpha=0.4)
    if ok.any():
        lim = float(np.max(np.abs(np.concatenate([a[ok], b[ok]])))) or 1.0
        ax[0, 0].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    corr = "-" if report.correlation is None else f"{report.correlation:.3f}"
    ratio = "-" if report.rms_ratio is None else f"{report.rms_ratio:.3f}"
    ax[0, 0].set(xlabel="model F (weight units)", ylabel="measured F", title=f"r = {corr}, RMS ratio {ratio}")
    late_ms = series["lateness_s"] * 1e3
    ax[0, 1].hist(late_ms[late_ms > 0], bins=30) if (late_ms > 0).any() else ax[0, 1].text(
        0.3, 0.5, "no overruns"
    )
    ax[0, 1].set(
        xlabel="lateness of overrunning steps (ms)",
        ylabel="steps",
        title=f"{report.overruns} overruns of {report.steps}",
    )
    ax[1, 0].plot(series["dropped"])
    ax[1, 0].set(xlabel="step", ylabel="dropped device writes", title=f"{report.dropped_writes} dropped")
    if series["prescribed"].size:
        ax[1, 1].plot(series["prescribed"], "o", label="prescribed")
        if series["held"].size == series["prescribed"].size:
            ax[1, 1].plot(series["held"], "x", label="held (read back)")
        ax[1, 1].legend()
    ax[1, 1].set(xlabel="line (rows, then columns)", ylabel="V", title=f"bias: {report.bias}")
    fig.suptitle(f"{report.log} run {report.run} ({report.resource})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
