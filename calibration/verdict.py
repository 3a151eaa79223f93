"""Does the fitted law describe the trace? Residual-structure tests, an explained-variance floor, and the
shape tests that name what a failed trace does instead (see docs/calibration.md for the derivations).

Per device, from its measured trace g (N,) and the residual r = g - fitted law (N,), one pass each:

    noise     sigma of the read noise from the data alone: 1.4826 MAD of the second differences
              g[n+1] - 2 g[n] + g[n-1] over sqrt(6) (a smooth relaxation hardly changes the second
              differences; the MAD ignores the few samples of an abrupt drop)
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

Shape: ``non_monotonic`` when the block-averaged trace (64 blocks) moves against its relaxation by more
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
NONMONOTONIC_Z = 8.0  # ... and of 8 block-noise sigmas (range of 64 Gaussian block means: < 6 sigma)
BLOCKS = 64
MAD_TO_SIGMA = 1.4826

N_STATS = 7  # noise, c0, c1, runs_z, counter_move, block_range, block_noise


@njit(cache=True)
def _noise_sigma(g: NDArray[np.float64]) -> float:
    """Read-noise sigma from the MAD of the second differences (var of a second difference: 6 sigma^2)."""
    n = g.size
    if n < 3:
        return math.nan
    d2 = np.empty(n - 2)
    for i in range(n - 2):
        d2[i] = g[i + 2] - 2.0 * g[i + 1] + g[i]
    med = np.median(d2)
    dev = np.abs(d2 - med)
    mad = np.median(dev)
    if mad > 0.0:
        return MAD_TO_SIGMA * mad / math.sqrt(6.0)
    return math.sqrt(np.mean(dev * dev) / 6.0)  # quantised data: most second differences exactly equal


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
def _one(g, r, out):  # type: ignore[no-untyped-def]
    n = g.size
    sigma = _noise_sigma(g)
    c0 = 0.0
    c1 = 0.0
    for i in range(n):
        c0 += r[i] * r[i]
        if i > 0:
            c1 += r[i] * r[i - 1]
    # block means of the data, and the largest move against the relaxation's direction
    w = max(1, n // BLOCKS)
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
        _one(g[d], r[d], out[d])
    return out


def verdict(
    g: Array, residual: Array, delta_g: Array, tss: Array
) -> tuple[dict[str, Array], NDArray[np.bool_], NDArray[np.bool_]]:
    """Test statistics (see the module docstring) and the masks (poor fit, non-monotonic trace) of
    devices with measured g (D, N) and residuals g - law (D, N) in siemens, fitted amplitude delta_g (D,)
    and total sum of squares of g about its mean (D,)."""
    n = g.shape[1]
    s = trace_stats(np.ascontiguousarray(g), np.ascontiguousarray(residual))
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
    stats = {"noise": noise, "runs_z": runs_z, "lag1": lag1, "sys_rel": sys_rel, "r2_max": r2_max}
    return stats, poor, non_monotonic
