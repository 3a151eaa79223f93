"""Benchmark: fit a full Pong STPN layer's decay curves (169,984 devices x 200 samples) on this machine.

Measured side by side in one run: ``calibration.fit.fit_decay`` on all curves, and a loop of
``scipy.optimize.curve_fit`` on a subset (extrapolated per curve). Goals: under 10 s for the layer and
at least 50x faster than the curve_fit loop. Also reports accuracy (median relative tau error against
the known truth) and fits the measured VO2 traces when they are present (plot: docs/img/vo2_fit.png).

Run: ``.venv/bin/python benchmarks/bench_fit.py`` (writes benchmarks/results/fit.json).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import curve_fit

from calibration.expfast import fit_exp_kernel
from calibration.fit import fit_decay

DEVICES = 64 * (2592 + 64)  # 169,984 synapses of the Pong STPN layer
SAMPLES = 200
SCIPY_SUBSET = 300
NOISE_REL = 0.01  # read noise sigma relative to the relaxation amplitude
ROOT = Path(__file__).resolve().parents[1]
VO2_DIR = ROOT.parent / "shared" / "data" / "real-decay" / "vo2"


def synthetic(devices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (N,) s, conductances (D, N) S and the true tau (D,) s of single-exponential relaxations."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, SAMPLES)
    tau = rng.lognormal(np.log(1.0), 0.3, devices)
    amp = rng.uniform(1e-9, 3e-9, devices)
    g = 5e-9 + amp[:, None] * np.exp(-t / tau[:, None])
    g += NOISE_REL * amp[:, None] * rng.standard_normal(g.shape)
    return t, g, tau


def scipy_loop(t: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, float]:
    """tau per device from one curve_fit call each (the usual script), and the seconds it took."""
    start = time.perf_counter()
    taus = np.empty(len(g))
    for i, gi in enumerate(g):
        p0 = (gi[-1], gi[0] - gi[-1], 0.3 * t[-1])
        p, _ = curve_fit(lambda x, c, a, tau: c + a * np.exp(-x / tau), t, gi, p0=p0, maxfev=10000)
        taus[i] = p[2]
    return taus, time.perf_counter() - start


def vo2_rows(plot: Path) -> list[dict[str, object]]:
    """Model selection on the measured VO2 relaxation traces (one row per trace); plots them into ``plot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, object]] = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, group in zip(axes, ("fast", "slow"), strict=True):
        files = sorted(VO2_DIR.glob(f"{group}_*.csv"))
        if not files:
            continue
        data = [np.loadtxt(f, delimiter=",", skiprows=1) for f in files]
        t, g = data[0][:, 0], np.stack([d[:, 1] for d in data])
        start = time.perf_counter()
        single = fit_decay(t, g, model="exp")
        best = fit_decay(t, g, model="auto")
        seconds = time.perf_counter() - start
        for i, f in enumerate(files[:4]):
            ax.plot(t * 1e3, g[i] * 1e3, ".", ms=2, color=f"C{i}", alpha=0.5)
            ax.plot(t * 1e3, best.predict(t)[i] * 1e3, "-", color=f"C{i}", label=f"{f.stem}: {best.law[i]}")
            ax.plot(t * 1e3, single.predict(t)[i] * 1e3, ":", color=f"C{i}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("time after the current step (ms, log)")
        ax.set_title(f"VO2 {group} traces: data, selected law (solid), single exp (dotted)", fontsize=9)
        ax.legend(fontsize=7)
        for i, f in enumerate(files):
            rows.append(
                {
                    "trace": f.stem,
                    "law": str(best.law[i]),
                    "status": str(best.status[i]),
                    "tau_s": float(best.tau[i]),
                    "rmse_rel": float(best.rmse_rel[i]),
                    "rmse_rel_exp": float(single.rmse_rel[i]),
                    "group_seconds": seconds,
                }
            )
    axes[0].set_ylabel("conductance (mS)")
    fig.tight_layout()
    if rows:
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=120)
    plt.close(fig)
    return rows


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    t, g, tau = synthetic(DEVICES)
    warm = time.perf_counter()
    fit_decay(t, g[:64], model="exp")  # numba: load (or compile, first run only) the kernel
    warm_s = time.perf_counter() - warm

    start = time.perf_counter()
    fit = fit_decay(t, g, model="exp")
    ours_s = time.perf_counter() - start
    start = time.perf_counter()  # the solver alone, without screening, SI conversion and the verdict
    fit_exp_kernel(np.ascontiguousarray(t[None, :]), g, 3, 50, 1e-7)
    kernel_s = time.perf_counter() - start
    ours_err = float(np.median(np.abs(fit.tau / tau - 1)))

    sub = np.random.default_rng(1).choice(DEVICES, SCIPY_SUBSET, replace=False)
    scipy_tau, scipy_s = scipy_loop(t, g[sub])
    scipy_per_curve = scipy_s / SCIPY_SUBSET
    scipy_full_s = scipy_per_curve * DEVICES
    result = {
        "devices": DEVICES,
        "samples": SAMPLES,
        "noise_rel": NOISE_REL,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "warmup_s": warm_s,
        "fit_decay_s": ours_s,
        "exp_kernel_only_s": kernel_s,
        "fit_decay_ok_fraction": float(fit.ok.mean()),
        "fit_decay_median_tau_rel_err": ours_err,
        "fit_decay_subset_median_tau_rel_err": float(np.median(np.abs(fit.tau[sub] / tau[sub] - 1))),
        "scipy_subset": SCIPY_SUBSET,
        "scipy_subset_s": scipy_s,
        "scipy_extrapolated_full_s": scipy_full_s,
        "scipy_subset_median_tau_rel_err": float(np.median(np.abs(scipy_tau / tau[sub] - 1))),
        "speedup_vs_scipy": scipy_full_s / ours_s,
        "goal_under_10s": ours_s < 10.0,
        "goal_50x": scipy_full_s / ours_s >= 50.0,
        "vo2": vo2_rows(ROOT / "docs" / "img" / "vo2_fit.png"),
    }
    result["headline"] = [  # the figures benchmarks/summary.py puts in the README table
        {
            "name": f"decay fit of {DEVICES} devices x {SAMPLES} samples",
            "value": ours_s,
            "unit": "s",
            "goal": "< 10",
            "default_configuration": True,
        },
        {
            "name": "decay fit vs scipy curve_fit loop",
            "value": result["speedup_vs_scipy"],
            "unit": "x",
            "goal": ">= 50",
            "default_configuration": True,
        },
    ]
    print(f"{'fit of':<34}{'seconds':>12}{'median |tau err|':>20}")
    print(f"{f'fit_decay, {DEVICES} curves':<34}{ours_s:>12.2f}{ours_err:>20.2%}")
    print(
        f"{f'curve_fit loop, {SCIPY_SUBSET} curves':<34}{scipy_s:>12.2f}"
        f"{result['scipy_subset_median_tau_rel_err']:>20.2%}"
    )
    print(f"{'curve_fit loop, extrapolated':<34}{scipy_full_s:>12.1f}")
    print(
        f"speed-up {result['speedup_vs_scipy']:.0f}x (goal >= 50x); layer in {ours_s:.2f} s (goal < 10 s); "
        f"kernel warm-up {warm_s:.2f} s; solver alone {kernel_s:.2f} s (the rest: screening, verdict); "
        f"load average {result['load_average_1min']:.1f} on {os.cpu_count()} cores"
    )
    if result["vo2"]:
        print(
            f"\n{'VO2 trace':<14}{'law':>10}{'status':>10}{'tau (s)':>12}{'rms/amp':>10}{'exp rms/amp':>13}"
        )
        for row in result["vo2"]:
            print(
                f"{row['trace']:<14}{row['law']:>10}{row['status']:>10}{row['tau_s']:>12.3g}"
                f"{row['rmse_rel']:>10.2%}{row['rmse_rel_exp']:>13.2%}"
            )
    out = ROOT / "benchmarks" / "results" / "fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
