"""Does the fitted law describe the trace? Residual-structure tests, an explained-variance floor, and the
shape tests that name what a failed trace does instead (see docs/calibration.md for the derivations).

Per device, from its measured trace g (N,) and the residual r = g - fitted law (N,), one pass each:

    noise     sigma of the read noise from neighbouring samples: the mean |second difference|
              |r[n+1] - 2 r[n] + r[n-1]| (beyond 4.5 sigma trimmed, iterated) x sqrt(pi/2) / sqrt(6).
              Differencing removes whatever is smooth on the sampling scale (the misfit of a wrong law
              too), so this is the data's own noise, not the fit's; the residual rather than g removes
              the relaxation's curvature, which on quiet, steep traces would dominate; the trimming
              ignores the few samples of an abrupt drop
    runs_z    Wald-Wolfowitz runs test on the residual signs: z = (runs - mu) / sd; independent
              residuals give z ~ N(0, 1), a law that misses the shape leaves long runs (z << 0)
    lag1      lag-1 autocorrelation of the residuals, sum r[n] r[n+1] / sum r[n]^2; ~ N(0, 1/N) for
              white noise. Its numerator is the systematic residual's power: noise cancels at lag 1
    sys_rel   RMS of the systematic residual, sqrt(max(mean r[n] r[n+1], 0)), over |delta_g|
    r2_max    the R^2 a perfect law would reach given that noise: 1 - N noise^2 / total sum of squares

Verdict: the law describes the trace ("ok") unless
    structured residuals that matter: (runs_z < -STRUCTURE_Z or lag1 sqrt(N) > STRUCTURE_Z)
                                      and sys_rel > SYSTEMATIC_TOL, or
    explained variance below the floor: R^2 < R2_FLOOR * r2_max.
Both structure statistics are one-sided tests at p = 5e-4 each: at 170k devices a correct law is
flagged on ~170 by chance alone, and the systematic tolerance removes even those (pure noise has no
lag-1 power). Very quiet traces (VO2: noise 1e-5 of the amplitude) make any misfit statistically
significant; the tolerance asks whether it matters: a 2% RMS systematic error is below the
device-to-device and cycle-to-cycle spread of real arrays and below what the per-step lambda
approximation of a non-exponential law already costs.

Shape: ``non_monotonic`` when the trace averaged in blocks of 4 samples moves against its relaxation by more
than NONMONOTONIC_FRAC of its range and NONMONOTONIC_Z block-noise sigmas: no monotone law can
describe a trace that holds, rises, then falls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

Array = NDArray[np.float64]

STRUCTURE_Z = 3.29  # one-sided p = 5e-4 for the runs test and for the lag-1 autocorrelation
SYSTEMATIC_TOL = 0.02  # systematic residual RMS that matters, relative to the relaxation amplitude
R2_FLOOR = 0.8  # the law must explain 80% of the variance a perfect law would explain at this noise
NONMONOTONIC_FRAC = 0.1  # a counter-move of 10% of the trace's range ...
NONMONOTONIC_Z = 10.0  # ... and of 10 block-noise sigmas (the range of 1000 Gaussian means is < 8 sigma)
BLOCK = 4  # samples per block mean
MIN_BLOCKS = 8  # shorter traces (< 32 samples) are not tested for monotonicity
TRIM_Z = 4.5
ABS_TO_SIGMA_INV = math.sqrt(2.0 / math.pi)  # mean |x| of a Gaussian is sigma sqrt(2/pi)

N_STATS = 7  # noise, c0, c1, runs_z, counter_move, block_range, block_noise


@njit(cache=True)
def _noise_sigma(r: NDArray[np.float64]) -> float:
    """White-noise sigma of r from the trimmed mean |second difference| (variance 6 sigma^2)."""
    n = r.size
    if n < 3:
        return math.nan
    d2 = np.empty(n - 2)
    total = 0.0
    for i in range(n - 2):
        d2[i] = abs(r[i + 2] - 2.0 * r[i + 1] + r[i])  # centred on 0: what is smooth has cancelled
        total += d2[i]
    mean_abs = total / (n - 2)
    kept_before = n - 2
    for _ in range(4):  # drop the few huge ones (an abrupt drop) beyond 4.5 sigma, and re-average
        cut = TRIM_Z * mean_abs / ABS_TO_SIGMA_INV
        total = 0.0
        kept = 0
        for x in d2:
            if x <= cut:
                total += x
                kept += 1
        if kept == 0 or kept == kept_before:
            break
        mean_abs = total / kept
        kept_before = kept
    return mean_abs / ABS_TO_SIGMA_INV / math.sqrt(6.0)


@njit(cache=True)
def _runs_z(r: NDArray[np.float64]) -> float:
    """Wald-Wolfowitz z of the residual signs (zero counts as positive); -inf if all share one sign."""
    n = r.size
    pos = 0
    runs = 1
    for i in range(n):
        if r[i] >= 0.0:
            pos += 1
        if i > 0 and (r[i] >= 0.0) != (r[i - 1] >= 0.0):
            runs += 1
    neg = n - pos
    if pos == 0 or neg == 0:
        return -math.inf
    mu = 2.0 * pos * neg / n + 1.0
    var = (mu - 1.0) * (mu - 2.0) / (n - 1.0)
    if not var > 0.0:
        return -math.inf
    return (runs - mu) / math.sqrt(var)


@njit(cache=True)
def trace_stats_one(g, r, out):  # type: ignore[no-untyped-def]
    """``trace_stats`` of one device into out (7,)."""
    n = g.size
    sigma = _noise_sigma(r)
    c0 = 0.0
    c1 = 0.0
    for i in range(n):
        c0 += r[i] * r[i]
        if i > 0:
            c1 += r[i] * r[i - 1]
    # block means of the data, and the largest move against the relaxation's direction
    w = BLOCK  # short blocks: a hold-and-rise of a few tens of samples in a long record still shows
    j_count = n // w
    b = np.empty(j_count)
    for j in range(j_count):
        s = 0.0
        for i in range(j * w, (j + 1) * w):
            s += g[i]
        b[j] = s / w
    direction = 1.0 if b[0] >= b[j_count - 1] else -1.0  # +1: falling relaxation
    extreme = b[0]
    counter = 0.0
    lo = b[0]
    hi = b[0]
    for j in range(j_count):
        lo = min(lo, b[j])
        hi = max(hi, b[j])
        if direction > 0:
            extreme = min(extreme, b[j])
            counter = max(counter, b[j] - extreme)
        else:
            extreme = max(extreme, b[j])
            counter = max(counter, extreme - b[j])
    out[0] = sigma
    out[1] = c0 / n
    out[2] = c1 / (n - 1) if n > 1 else math.nan
    out[3] = _runs_z(r)
    out[4] = counter
    out[5] = hi - lo
    out[6] = sigma / math.sqrt(w)


@njit(parallel=True, cache=True)
def trace_stats(g, r):  # type: ignore[no-untyped-def]
    """Per device (D, 7): noise sigma, mean r^2, mean r[n] r[n+1], runs z, the largest block-mean move
    against the relaxation, the block-mean range, the block-mean noise sigma; g and r (D, N), same units."""
    d_count = g.shape[0]
    out = np.empty((d_count, N_STATS))
    for d in prange(d_count):
        trace_stats_one(g[d], r[d], out[d])
    return out


LAW_CODES = {"exp": 0, "biexp": 1, "stretched": 2, "compressed": 2}


@njit(parallel=True, cache=True)
def law_trace_stats(law, t, g, params):  # type: ignore[no-untyped-def]
    """``trace_stats`` with the residual computed on the fly (no (D, N) temporaries): g (D, N) at times
    t (1 or D, N) s, the law's code (``LAW_CODES``) and per device params (D, 6) = (g_inf, delta_g, tau1,
    tau2, w1, beta) in SI units."""
    d_count, n = g.shape
    out = np.empty((d_count, N_STATS))
    shared = t.shape[0] == 1
    step = (t[0, -1] - t[0, 0]) / (n - 1)
    uniform = shared and n > 1
    for i in range(1, n):
        if uniform and abs(t[0, i] - t[0, i - 1] - step) > 1e-9 * step:
            uniform = False
    for d in prange(d_count):
        td = t[0] if shared else t[d]
        c, a, tau1, tau2, w1, beta = params[d]
        r = np.empty(n)
        if law == 0 and uniform:  # exp(-t/tau) as a geometric sequence: one multiply per sample
            e = math.exp(-td[0] / tau1)
            ratio = math.exp(-step / tau1)
            for i in range(n):
                r[i] = g[d, i] - c - a * e
                e *= ratio
            trace_stats_one(g[d], r, out[d])
            continue
        for i in range(n):
            x = td[i]
            if law == 0:
                phi = math.exp(-x / tau1)
            elif law == 1:
                phi = w1 * math.exp(-x / tau1) + (1.0 - w1) * math.exp(-x / tau2)
            else:
                phi = math.exp(-((max(x, 0.0) / tau1) ** beta))
            r[i] = g[d, i] - c - a * phi
        trace_stats_one(g[d], r, out[d])
    return out


def verdict(
    law: str, t: Array, g: Array, fitted: dict[str, Array], tss: Array
) -> tuple[dict[str, Array], NDArray[np.bool_], NDArray[np.bool_]]:
    """Test statistics (see the module docstring) and the masks (poor fit, non-monotonic trace) of
    devices with measured g (D, N) S at times t (1 or D, N) s, fitted by ``law`` with the columns
    ``fitted`` (g_inf, delta_g, tau, tau2, w1, beta; (D,) each, SI units), and the total sum of squares
    of g about its mean (D,)."""
    names = ("g_inf", "delta_g", "tau", "tau2", "w1", "beta")
    params = np.ascontiguousarray(np.stack([fitted[k] for k in names], axis=1))
    s = law_trace_stats(LAW_CODES[law], np.ascontiguousarray(t), np.ascontiguousarray(g), params)
    return judge(s, g.shape[1], fitted["delta_g"], tss)


def judge(
    s: Array, n: int, delta_g: Array, tss: Array
) -> tuple[dict[str, Array], NDArray[np.bool_], NDArray[np.bool_]]:
    """``verdict`` from precomputed ``trace_stats`` s (D, 7) in siemens of traces of n samples."""
    noise, c0, c1, runs_z = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        lag1 = c1 / c0
        sys_rel = np.sqrt(np.maximum(c1, 0.0)) / np.abs(delta_g)
        r2 = 1.0 - n * c0 / tss
        r2_max = 1.0 - n * noise**2 / tss
    structured = (runs_z < -STRUCTURE_Z) | (lag1 * math.sqrt(n) > STRUCTURE_Z)
    poor = (structured & (sys_rel > SYSTEMATIC_TOL)) | (r2 < R2_FLOOR * np.maximum(r2_max, 0.0))
    counter, block_range, block_noise = s[:, 4], s[:, 5], s[:, 6]
    non_monotonic = (counter > NONMONOTONIC_FRAC * block_range) & (counter > NONMONOTONIC_Z * block_noise)
    non_monotonic &= n // BLOCK >= MIN_BLOCKS
    with np.errstate(divide="ignore", invalid="ignore"):
        counter_rel = counter / block_range
    stats = {
        "noise": noise,
        "runs_z": runs_z,
        "lag1": lag1,
        "sys_rel": sys_rel,
        "r2_max": r2_max,
        "counter_rel": counter_rel,
    }
    return stats, poor, non_monotonic


def reason(
    status: str, r2: float, stats: dict[str, float], n: int, law: str = "", beta: float = math.nan
) -> str:
    """One line saying why a fit got its verdict, from its test statistics (scalars of one device)."""
    runs_z, lag1, sys_rel = stats["runs_z"], stats["lag1"], stats["sys_rel"]
    structured = runs_z < -STRUCTURE_Z or lag1 * math.sqrt(n) > STRUCTURE_Z
    floor = R2_FLOOR * max(stats["r2_max"], 0.0)
    if status == "non_monotonic":
        return (
            f"moves against its relaxation by {stats['counter_rel']:.0%} of its range: no monotone law fits"
        )
    parts = []
    if structured and sys_rel > SYSTEMATIC_TOL:
        parts.append(
            f"structured residuals (runs z {runs_z:.1f}, lag-1 {lag1:.2f}) with a systematic part of "
            f"{sys_rel:.1%} of the amplitude (> {SYSTEMATIC_TOL:.0%})"
        )
    if r2 < floor:
        parts.append(
            f"R^2 {r2:.3f} below the floor {floor:.3f} ({R2_FLOOR:g} x {stats['r2_max']:.3f} at this noise)"
        )
    if status == "threshold_collapse":
        parts.insert(0, f"holds then collapses (compressed beta {beta:.2f}) but")
    if status == "ok":
        what = (
            "unstructured residuals"
            if not structured
            else f"systematic residual {sys_rel:.1%} <= {SYSTEMATIC_TOL:.0%}"
        )
        return f"{law} describes the trace: {what}, R^2 {r2:.4f} >= {floor:.3f}"
    return " ".join(parts) if parts else status
