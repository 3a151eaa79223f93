"""The fast path: single-exponential fits of many devices in one fused, parallel kernel (numba).

A full Pong STPN layer is 169,984 devices; a tensor-per-operation solver streams (D, N) arrays
through memory a hundred times. This kernel instead keeps each device's sums in registers and
passes over its N samples once per Levenberg-Marquardt trial, computing exp(-k t) on the fly.

Per device, in normalised units (t scaled to its last sample, y to its range), y = c + a exp(-k t):
  1. k from the integral equation y - y_0 = -k int (y - c) dt (linear least squares in k, k c).
  2. Levenberg-Marquardt on u = ln k with c and a projected out after every accepted step: the
     weighted sums S = sum_n w_n (1, e, e^2, y e, t e, t e^2, t^2 e^2, t y e) give the cost,
     the gradient and the Gauss-Newton matrix of all three parameters without a second pass.
  3. If the residuals are heavier-tailed than Gaussian noise (``_has_outliers``), ``rounds - 1`` IRLS
     rounds with soft-L1 weights (scale 2.5 x the residuals' MAD-sigma).
Outputs per device: (c, a, u), the unscaled covariance (J^T W J)^-1, the weighted and plain
residual sums of squares, the sum of weights, and whether LM converged.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from calibration.verdict import N_STATS, trace_stats_one

ROBUST_SCALE = 2.5
MAD_TO_SIGMA = 1.4826
OUTLIER_Z = 4.5
OUTLIER_RMS_TO_MEAN_ABS = 1.4


Sums = tuple[float, float, float, float, float, float, float, float, float, float]


@njit(cache=True)
def _exp_grid(k: float, t: NDArray[np.float64], uniform: bool, e: NDArray[np.float64]) -> None:
    """e[n] = exp(-k t[n]); on a uniform grid a geometric sequence (one multiply per sample, relative
    rounding error ~N x 1e-16) instead of an exp per sample."""
    if uniform:
        ratio = math.exp(-k * (t[1] - t[0]))
        x = math.exp(-k * t[0])
        for n in range(t.size):
            e[n] = x
            x *= ratio
    else:
        for n in range(t.size):
            e[n] = math.exp(-k * t[n])


@njit(cache=True, fastmath=True)
def _sums(
    k: float,
    t: NDArray[np.float64],
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    uniform: bool,
    e: NDArray[np.float64],
) -> Sums:
    """(S_w, S_wy, S_wyy, S_we, S_wee, S_wey, S_wte, S_wtee, S_wttee, S_wtey) at rate k; ``e`` is scratch."""
    _exp_grid(k, t, uniform, e)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = s9 = 0.0
    for n in range(t.size):  # no loop-carried dependency but the sums: vectorised
        wn = w[n]
        yn = y[n]
        we = wn * e[n]
        wte = we * t[n]
        s0 += wn
        s1 += wn * yn
        s2 += wn * yn * yn
        s3 += we
        s4 += we * e[n]
        s5 += we * yn
        s6 += wte
        s7 += wte * e[n]
        s8 += wte * t[n] * e[n]
        s9 += wte * yn
    return s0, s1, s2, s3, s4, s5, s6, s7, s8, s9


@njit(cache=True)
def _project(s: Sums) -> tuple[float, float, float]:
    """Optimal (c, a) for fixed k from the sums, and the weighted cost at that optimum."""
    det = s[0] * s[4] - s[3] * s[3]
    if not det > 1e-300 * max(1.0, s[0] * s[4]):
        return 0.0, 0.0, np.inf
    c = (s[1] * s[4] - s[3] * s[5]) / det
    a = (s[0] * s[5] - s[3] * s[1]) / det
    cost = s[2] - c * s[1] - a * s[5]
    return c, a, max(cost, 0.0)


@njit(cache=True)
def _normal_matrix(s: Sums, c: float, a: float, k: float) -> tuple[NDArray[np.float64], float]:
    """J^T W J of (c, a, u = ln k) and the u-component of J^T W r (the c, a components vanish)."""
    m = np.empty((3, 3))
    ak = a * k
    m[0, 0], m[0, 1], m[0, 2] = s[0], s[3], -ak * s[6]
    m[1, 1], m[1, 2], m[2, 2] = s[4], -ak * s[7], ak * ak * s[8]
    m[1, 0], m[2, 0], m[2, 1] = m[0, 1], m[0, 2], m[1, 2]
    g_u = -ak * (s[9] - c * s[6] - a * s[7])
    return m, g_u


@njit(cache=True)
def _inv3(m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse of a symmetric 3x3 matrix by cofactors; NaN if singular."""
    inv = np.empty((3, 3))
    inv[0, 0] = m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1]
    inv[0, 1] = m[0, 2] * m[2, 1] - m[0, 1] * m[2, 2]
    inv[0, 2] = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
    inv[1, 1] = m[0, 0] * m[2, 2] - m[0, 2] * m[2, 0]
    inv[1, 2] = m[0, 2] * m[1, 0] - m[0, 0] * m[1, 2]
    inv[2, 2] = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    inv[1, 0], inv[2, 0], inv[2, 1] = inv[0, 1], inv[0, 2], inv[1, 2]
    det = m[0, 0] * inv[0, 0] + m[0, 1] * inv[1, 0] + m[0, 2] * inv[2, 0]
    if not abs(det) > 0.0:
        inv[:, :] = np.nan
        return inv
    return inv / det


@njit(cache=True)
def _integral_rate(t: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """k from regressing y - y_0 on (int_0^t y dt, t - t_0); 3 (tau = a third of the record) if unusable."""
    a11 = a12 = a22 = b1 = b2 = 0.0
    area = 0.0
    for n in range(1, t.size):
        area += 0.5 * (y[n] + y[n - 1]) * (t[n] - t[n - 1])
        dt = t[n] - t[0]
        dy = y[n] - y[0]
        a11 += area * area
        a12 += area * dt
        a22 += dt * dt
        b1 += area * dy
        b2 += dt * dy
    det = a11 * a22 - a12 * a12
    k = -(b1 * a22 - a12 * b2) / det if det > 0 else np.nan
    if not (k > 1e-2 and k < 1e4):
        k = 3.0
    return k


@njit(cache=True)
def _residuals(k, c, a, t, y, uniform, out):  # type: ignore[no-untyped-def]
    """out = y - c - a exp(-k t)."""
    _exp_grid(k, t, uniform, out)
    for n in range(t.size):
        out[n] = y[n] - c - a * out[n]


@njit(cache=True)
def _has_outliers(r: NDArray[np.float64]) -> tuple[bool, float]:
    """Whether residuals have a heavier tail than Gaussian noise: max |r| > 4.5 rms, or rms / mean|r| >
    1.4 (1.2533 for a Gaussian; a few large outliers raise the first, many moderate ones the second);
    and their sum of squares."""
    ss = sa = mx = 0.0
    for x in r:
        ss += x * x
        sa += abs(x)
        mx = max(mx, abs(x))
    rms = math.sqrt(ss / r.size)
    return mx > OUTLIER_Z * rms or rms > OUTLIER_RMS_TO_MEAN_ABS * sa / r.size, ss


@njit(cache=True)
def _is_uniform(t: NDArray[np.float64]) -> bool:
    step = (t[-1] - t[0]) / (t.size - 1)
    for n in range(1, t.size):  # noqa: SIM110 (a loop: numba compiles it, not all() over a generator)
        if abs(t[n] - t[n - 1] - step) > 1e-9 * step:
            return False
    return True


@njit(cache=True)
def _lm(u, t, y, w, uniform, max_iter, tol, e):  # type: ignore[no-untyped-def]
    """Levenberg-Marquardt on u = ln k with (c, a) projected out; returns (u, c, a, cost, sums, converged)."""
    s = _sums(math.exp(u), t, y, w, uniform, e)
    c, a, cost = _project(s)
    damping = 1e-3
    for _ in range(max_iter):
        mat, g_u = _normal_matrix(s, c, a, math.exp(u))
        for i in range(3):
            mat[i, i] *= 1.0 + damping
        du = _inv3(mat)[2, 2] * g_u
        if not math.isfinite(du):
            return u, c, a, cost, s, False
        s_try = _sums(math.exp(u + du), t, y, w, uniform, e)
        c_try, a_try, cost_try = _project(s_try)
        if cost_try <= cost:
            done = abs(du) <= tol * (1.0 + abs(u)) or cost - cost_try <= tol * cost
            u, s, c, a, cost = u + du, s_try, c_try, a_try, cost_try
            damping = max(damping / 3.0, 1e-12)
            if done:
                return u, c, a, cost, s, True
        else:
            damping *= 4.0
            if damping > 1e12:  # no downhill step at any damping: a minimum to machine precision
                return u, c, a, cost, s, True
    return u, c, a, cost, s, False


@njit(cache=True)
def _fit_one(t, uniform, y_raw, rounds, max_iter, tol, out_p, out_cov, out_stats, out_verdict, judge):  # type: ignore[no-untyped-def]
    """One device; t already in units of its last sample time. With ``judge``, the verdict statistics
    of ``calibration.verdict`` in normalised units go to ``out_verdict`` (the data is still in cache)."""
    n = t.size
    y = y_raw - y_raw[-1]
    g_scale = np.abs(y).max()
    y /= g_scale if g_scale > 0 else 1.0
    w = np.ones(n)
    scratch = np.empty(n)
    u0 = math.log(_integral_rate(t, y))
    u, c, a, cost, s, converged = _lm(u0, t, y, w, uniform, max_iter, tol, scratch)
    r = np.empty(n)
    _residuals(math.exp(u), c, a, t, y, uniform, r)
    outliers, rss = _has_outliers(r)
    for _ in range(1, rounds if outliers else 1):  # IRLS: soft-L1 weights from the current residuals
        for i in range(n):
            r[i] = abs(r[i])
        sigma = max(MAD_TO_SIGMA * np.partition(r, n // 2)[n // 2], 1e-12)
        for i in range(n):
            w[i] = 1.0 / math.sqrt(1.0 + (r[i] / (ROBUST_SCALE * sigma)) ** 2)
        u, c, a, cost, s, converged = _lm(u, t, y, w, uniform, max_iter, tol, scratch)
        _residuals(math.exp(u), c, a, t, y, uniform, r)
        rss = np.sum(r * r)
    out_cov[:, :] = _inv3(_normal_matrix(s, c, a, math.exp(u))[0])
    out_p[0], out_p[1], out_p[2] = c, a, u
    out_stats[0] = cost
    out_stats[1] = s[0]
    out_stats[2] = rss
    out_stats[3] = 1.0 if converged else 0.0
    out_stats[4] = g_scale
    out_stats[5] = np.sum((y - y.mean()) ** 2)
    if judge:
        trace_stats_one(y, r, out_verdict)


@njit(cache=True)
def fit_exp_kernel(t, y, rounds, max_iter, tol):  # type: ignore[no-untyped-def]
    """Fit y (D, N) at times t (1 or D, N) s, t[:, -1] > 0; returns normalised params (c, a, u) (D, 3),
    cov (D, 3, 3), stats (D, 6) = (weighted RSS, sum of weights, plain RSS, converged, g_scale, total
    sum of squares): time in units of the last sample time, conductance (y - y[-1]) / g_scale."""
    params, cov, stats, _ = fit_exp_judged(t, y, rounds, max_iter, tol, False)
    return params, cov, stats


@njit(parallel=True, cache=True)
def fit_exp_judged(t, y, rounds, max_iter, tol, judge=True):  # type: ignore[no-untyped-def]
    """``fit_exp_kernel`` plus, with ``judge``, the verdict statistics (D, 7) of each fit in normalised
    units (``calibration.verdict.trace_stats``: noise, mean r^2, lag-1 autocovariance, runs z, counter-
    move, block range, block noise; multiply the conductances by g_scale, the squares by g_scale^2)."""
    d_count = y.shape[0]
    params = np.empty((d_count, 3))
    cov = np.empty((d_count, 3, 3))
    stats = np.empty((d_count, 6))
    verdict = np.full((d_count, N_STATS), np.nan)
    shared_t = t[0] / t[0, -1]
    shared_uniform = _is_uniform(shared_t)
    shared = t.shape[0] == 1
    for d in prange(d_count):
        if shared:
            td, uniform = shared_t, shared_uniform
        else:
            td = t[d] / t[d, -1]
            uniform = _is_uniform(td)
        _fit_one(td, uniform, y[d], rounds, max_iter, tol, params[d], cov[d], stats[d], verdict[d], judge)
    return params, cov, stats, verdict
