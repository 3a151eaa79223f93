"""Batched fits of measured conductance relaxations: g(t) = g_inf + delta_g * phi(t).

    fit = fit_decay(t, g, model="exp")     # t (N,) or (D, N) seconds since the pulse; g (D, N) siemens
    fit.tau, fit.g_inf, fit.delta_g        # (D,) s, S, S; with *_err one-sigma uncertainties
    fit.lam(dt)                            # (D,) per-step retention for a time step dt (s)

Laws (``device_models.laws``): "exp", "biexp", "stretched", "compressed" (hold, then collapse), or
"auto" (all four; per device the simplest law whose AICc is within 2 of the lowest, the compressed law
only when its AICc beats every completely monotone law by ``COMPRESSED_MARGIN``). All devices are solved
together: each device's time is scaled by its last sample time and its conductance by its range. "exp"
runs the fused kernel of ``calibration.expfast`` (integral-equation start, variable-projection
Levenberg-Marquardt, IRLS); the other laws start from the best of a grid of variable-projection
candidates and run the batched robust Levenberg-Marquardt of ``calibration.lm``.

A fit is "ok" only if the law describes the trace (``calibration.verdict``; docs/calibration.md):
    * no residual structure that matters: the Wald-Wolfowitz runs test on the residual signs and the
      lag-1 autocorrelation of the residuals (each one-sided, p = 5e-4) find no structure, or the
      systematic part of the residuals (its RMS is sqrt of the lag-1 autocovariance: the noise cancels)
      is below 2% of the relaxation amplitude;
    * an explained-variance floor: R^2 >= 0.8 x the R^2 a perfect law reaches at the trace's own noise
      level (estimated from the second differences of neighbouring samples).
Each fit carries these statistics (``noise``, ``runs_z``, ``lag1``, ``sys_rel``, ``r2_max``).

Every device gets a status. Devices whose fit failed carry NaN numbers; the three verdicts on a
converged fit keep the best law's numbers for inspection (never use them: ``ok`` is the only usable
status, and ``lam`` is NaN for every other):
    ok                   the law describes the trace; fitted, converged, tau resolved by the sampling
    poor_fit             the best law leaves structured residuals or explains too little variance
    threshold_collapse   hold, then collapse faster than any superposition of exponential relaxations
                         (the compressed law wins with beta >= 1.5), but even that law does not describe
                         the trace (e.g. a metallic plateau that sags, a collapse, then a slow tail)
    non_monotonic        the trace moves against its relaxation by more than 10% of its range (holds,
                         rises, then falls): no monotone law describes it
    nan                  a non-finite time or conductance sample
    too_few_points       fewer samples than parameters + 1
    nonincreasing_time   times not strictly increasing
    negative_time        a time before the pulse (t < 0)
    flat                 no significant relaxation (|delta_g| < 3 sigma, or a constant trace)
    tau_unresolved       tau shorter than half the sampling interval, longer than 10x the record,
                         known to worse than 25%, or a shape parameter at its bound
    no_convergence       the solver did not converge
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from calibration.expfast import fit_exp_judged, fit_exp_kernel
from calibration.lm import levenberg_marquardt
from calibration.verdict import (
    LAW_MISFIT_GAIN,
    MAX_JUMPS,
    STAIRCASE_GAIN,
    judge,
    unresolved_collapse,
    verdict,
)
from device_models.laws import DEFAULT_HORIZON_STEPS, LAWS, relaxation, step_retention_by_law
from device_models.record import CalibrationError

Array = NDArray[np.float64]
MODELS = (*LAWS, "auto")
N_PARAMS = {"exp": 3, "biexp": 5, "stretched": 4, "compressed": 4}
# The compressed law is a hold-then-collapse description; on exponential data it has one parameter too
# many and its beta runs to 1. It is chosen only on strong evidence (AICc lower by 10: "essentially no
# support" for the other laws, Burnham & Anderson), never by the tie rule alone.
COMPRESSED_MARGIN = 10.0
COLLAPSE_BETA = 1.5  # beta/e = 0.55 > 1/e: faster than any superposition of exponential relaxations
# powers of g_scale that turn the kernel's normalised verdict statistics into siemens (see trace_stats)
_TO_SI_POWER = np.array(
    [1.0, 2.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0] + [0.0] * MAX_JUMPS + [1.0] * MAX_JUMPS + [0.0, 0.0]
)
AICC_TIE = (
    2.0  # laws within 2 of the lowest AICc are equally supported: take the simplest (Burnham & Anderson)
)
CHUNK_ELEMENTS = 2_000_000  # devices x samples per batched solve (bounds memory at ~100 MB)
# The exp kernel makes no (D, N) temporaries (about 25 numbers out per device), so its chunks only pace
# the progress callback; each parallel launch waits for every thread to be scheduled, which on a busy
# machine costs more than the work of a small chunk.
EXP_CHUNK_ELEMENTS = 20_000_000
# Below this many devices x samples the torch solve of "biexp" / "stretched" runs on one thread: its
# per-step products (P x N by N x P per device) are microseconds of work, and a multi-threaded OpenMP
# region per op costs far more on a busy machine (each region waits for every team thread to be
# scheduled). numba's first parallel launch (the "exp" kernel) raises OpenMP's thread count for torch
# as well, so even OMP_NUM_THREADS=1 does not prevent it.
SERIAL_ELEMENTS = 250_000


@dataclass
class DecayFit:
    """Per-device result of ``fit_decay``; every array is (D,). The law's numbers are NaN where the fit
    failed and kept for inspection on poor_fit / threshold_collapse / non_monotonic devices; only "ok"
    devices are usable (``ok``, and ``lam`` is NaN elsewhere). The verdict's test statistics: ``noise``
    (read-noise sigma from the data, S), ``runs_z`` (runs test z of the residual signs), ``lag1``
    (lag-1 autocorrelation of the residuals), ``sys_rel`` (systematic residual RMS / |delta_g|),
    ``r2_max`` (R^2 of a perfect law at that noise), ``counter_rel`` (largest move against the relaxation /
    the trace's range); see ``calibration.verdict``."""

    law: NDArray[np.str_]
    status: NDArray[np.str_]
    tau: Array
    tau_err: Array
    g_inf: Array
    g_inf_err: Array
    delta_g: Array
    delta_g_err: Array
    tau2: Array
    w1: Array
    beta: Array
    rmse: Array
    rmse_rel: Array
    r2: Array
    aicc: Array
    n_points: int
    aicc_by_law: dict[str, Array] = field(default_factory=dict)
    noise: Array = field(default_factory=lambda: np.zeros(0))
    runs_z: Array = field(default_factory=lambda: np.zeros(0))
    lag1: Array = field(default_factory=lambda: np.zeros(0))
    sys_rel: Array = field(default_factory=lambda: np.zeros(0))
    r2_max: Array = field(default_factory=lambda: np.zeros(0))
    counter_rel: Array = field(default_factory=lambda: np.zeros(0))
    n_jumps: Array = field(default_factory=lambda: np.zeros(0))
    stair_gain: Array = field(default_factory=lambda: np.zeros(0))
    jump_t: Array = field(default_factory=lambda: np.zeros((0, MAX_JUMPS)))
    jump_size: Array = field(default_factory=lambda: np.zeros((0, MAX_JUMPS)))

    @property
    def ok(self) -> NDArray[np.bool_]:
        """(D,) mask of devices with status "ok"."""
        return self.status == "ok"

    def phi(self, t_s: Array) -> Array:
        """Normalised relaxation phi(t) per device, (D, N) for t (N,) or (D, N) in seconds."""
        t = np.asarray(t_s, dtype=np.float64)
        t = np.broadcast_to(t, (self.tau.size, t.shape[-1]))
        out = np.full(t.shape, np.nan)
        for law in LAWS:
            sel = self.law == law
            if sel.any():
                out[sel] = relaxation(
                    law,
                    t[sel],
                    self.tau[sel, None],
                    self.tau2[sel, None],
                    self.w1[sel, None],
                    self.beta[sel, None],
                )
        return out

    def predict(self, t_s: Array) -> Array:
        """Fitted conductance g(t) in siemens, (D, N)."""
        return self.g_inf[:, None] + self.delta_g[:, None] * self.phi(t_s)

    def lam(self, dt: float, horizon_steps: int = DEFAULT_HORIZON_STEPS) -> Array:
        """(D,) per-step retention for a time step dt (s): exp(-dt/tau) for single-exponential devices,
        the best per-step approximation over ``horizon_steps`` steps for the other laws."""
        return self.lam_and_error(dt, horizon_steps)[0]

    def lam_and_error(self, dt: float, horizon_steps: int = DEFAULT_HORIZON_STEPS) -> tuple[Array, Array]:
        """(lambda, RMS error of lambda^k against phi(k dt) over k = 1..horizon_steps), each (D,)."""
        if not (dt > 0 and math.isfinite(dt)):
            raise CalibrationError(f"dt must be a positive number of seconds, got {dt}")
        return step_retention_by_law(
            self.law, self.ok, dt, self.tau, self.tau2, self.w1, self.beta, horizon_steps
        )  # a fit that failed its verdict has no lambda


def fit_decay(
    t: Array,
    g: Array,
    model: str = "exp",
    *,
    robust: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DecayFit:
    """Fit every device's relaxation g (D, N) siemens at times t (N,) or (D, N) seconds.

    ``model`` is "exp", "biexp", "stretched" or "auto" (per-device AICc selection among the three).
    ``robust`` uses the soft-L1 loss (outlier-resistant); ``progress(done, total)`` is called per chunk.
    Malformed arrays raise ``CalibrationError``; bad devices get a status (see the module docstring).
    """
    if model not in MODELS:
        raise CalibrationError(f"unknown decay model {model!r}; choose one of {', '.join(MODELS)}")
    tt, gg = _as_arrays(t, g)
    if model == "auto":
        return _select(tt, gg, robust, progress)
    fit = _fit_law(model, tt, gg, robust, progress)
    _mark_stepwise(fit, fit.stair_gain > LAW_MISFIT_GAIN)  # one law tried: the stricter margin
    return fit


# statuses a staircase verdict leaves alone: never fitted, already stepwise (an abrupt jump), or not monotone
_KEEP = ("nan", "too_few_points", "nonincreasing_time", "negative_time", "stepwise", "non_monotonic")


def _mark_stepwise(fit: DecayFit, beaten: NDArray[np.bool_]) -> None:
    """Status ``stepwise`` where a staircase of plateaus beats the law (``beaten``, (D,)); the
    staircase's steps are already in ``jump_t`` / ``jump_size`` (``calibration.verdict._staircase``)."""
    fit.status[beaten & ~np.isin(fit.status, _KEEP)] = "stepwise"


def _as_arrays(t: Array, g: Array) -> tuple[Array, Array]:
    gg = np.asarray(g, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)
    if gg.ndim == 1:
        gg = gg[None, :]
    if gg.ndim != 2 or gg.shape[0] < 1:
        raise CalibrationError(f"g must be (D, N) conductances, got shape {np.shape(g)}")
    if tt.ndim == 1:
        tt = tt[None, :]
    if tt.ndim != 2 or tt.shape[1] != gg.shape[1] or tt.shape[0] not in (1, gg.shape[0]):
        raise CalibrationError(f"t must be (N,) or (D, N) matching g {gg.shape}, got shape {np.shape(t)}")
    return tt, gg


def _select(t: Array, g: Array, robust: bool, progress: Callable[[int, int], None] | None) -> DecayFit:
    order = sorted(LAWS, key=N_PARAMS.__getitem__)  # simplest first
    fits = {law: _fit_law(law, t, g, robust, progress) for law in order}
    # a staircase must beat every law, not only the one that misfits: the trace is stepwise where it beats
    # the best law by STAIRCASE_GAIN; a law it beats by LAW_MISFIT_GAIN misfits (no competitor, below)
    # (-inf: the law's residuals are white, no staircase beats it; NaN: the law was not fitted)
    gains = [np.where(np.isnan(f.stair_gain), np.inf, f.stair_gain) for f in fits.values()]
    best_gain = np.min(gains, axis=0)
    stepwise = (best_gain > STAIRCASE_GAIN) & np.isfinite(best_gain)
    for f in fits.values():
        misfit = (f.stair_gain > LAW_MISFIT_GAIN) & ~np.isin(f.status, _KEEP)
        f.status[misfit] = np.where(stepwise[misfit], "stepwise", "poor_fit")
        f.jump_t[misfit & ~stepwise] = np.nan
        f.jump_size[misfit & ~stepwise] = np.nan
    # every converged, resolved fit competes (its verdict travels with it); the compressed law only
    # on strong evidence against every completely monotone law
    raw = {law: np.where(np.isfinite(fits[law].tau), fits[law].aicc, np.inf) for law in order}
    # against every monotone fit that reached a minimum, resolved or not: a biexp whose fast time cannot
    # be told still shows that the compressed law's gain is within what a monotone law achieves
    # (a monotone law whose residual jumps, ``stepwise``, is no competitor: a resolved collapse that
    # the compressed law follows leaves such jumps in every monotone law's residual; nor is a fit that
    # never converged: at 5-10% noise a biexp stuck on a compressed trace would block the law that fits)
    monotone = [
        np.where(
            np.isfinite(fits[law].aicc) & ~np.isin(fits[law].status, ("stepwise", "no_convergence")),
            fits[law].aicc,
            np.inf,
        )
        for law in order
        if law != "compressed"
    ]
    monotone_best = np.min(monotone, axis=0)
    raw["compressed"] = np.where(
        raw["compressed"] < monotone_best - COMPRESSED_MARGIN, raw["compressed"], np.inf
    )
    scores = np.stack([raw[law] for law in order])
    # among the laws that describe the trace when there are any: AICc may prefer a simpler law that
    # leaves structure (noise hides a second time constant from AICc, not from the runs test)
    describes = np.stack([fits[law].ok for law in order]) & np.isfinite(scores)
    scores = np.where(describes.any(axis=0) & ~describes, np.inf, scores)
    # the simplest law within AICC_TIE of the best one
    best = np.argmax(scores <= scores.min(axis=0) + AICC_TIE, axis=0)
    any_ok = np.isfinite(scores).any(axis=0)
    base = fits["exp"]
    columns: dict[str, Any] = {k: v.copy() for k, v in vars(base).items() if isinstance(v, np.ndarray)}
    out = DecayFit(**columns, n_points=base.n_points)
    for i, law in enumerate(order):
        sel = any_ok & (best == i)
        for name, value in vars(fits[law]).items():
            if isinstance(value, np.ndarray):
                getattr(out, name)[sel] = value[sel]
    out.law = np.where(any_ok, np.array(order)[best], base.law)
    out.aicc_by_law = {law: fits[law].aicc for law in order}
    _mark_stepwise(out, stepwise)
    return out


# -- one law, all devices -----------------------------------------------------------------------
def _fit_law(
    law: str, t: Array, g: Array, robust: bool, progress: Callable[[int, int], None] | None
) -> DecayFit:
    d, n = g.shape
    p = N_PARAMS[law]
    status = _screen(t, g, p)
    res: dict[str, Any] = {
        k: np.full(d, np.nan) for k in ("tau", "tau_err", "g_inf", "g_inf_err", "delta_g", "delta_g_err")
    }
    res |= {k: np.full(d, np.nan) for k in ("tau2", "w1", "beta", "rmse", "rmse_rel", "r2", "aicc")}
    res |= {
        k: np.full(d, np.nan)
        for k in ("noise", "runs_z", "lag1", "sys_rel", "r2_max", "counter_rel", "n_jumps", "stair_gain")
    }
    res |= {k: np.full((d, MAX_JUMPS), np.nan) for k in ("jump_t", "jump_size")}
    valid = np.zeros(d, dtype=bool)
    todo = np.flatnonzero(status == "ok")
    chunk = max(1, (EXP_CHUNK_ELEMENTS if law == "exp" else CHUNK_ELEMENTS) // n)
    for start in range(0, todo.size, chunk):
        idx = todo[start : start + chunk]
        rows = (
            slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        )  # a view when contiguous
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # bad devices: NaN, judged below
            out, st, fitted = _solve_chunk(law, t if t.shape[0] == 1 else t[rows], g[rows], robust)
        status[idx] = st
        valid[idx] = fitted
        for k, v in out.items():
            res[k][idx] = v
        if progress is not None:
            progress(min(start + chunk, todo.size), todo.size)
    bad = ~valid
    for k in ("tau", "tau_err", "g_inf", "g_inf_err", "delta_g", "delta_g_err", "tau2", "w1", "beta"):
        res[k][bad] = np.nan
    return DecayFit(law=np.full(d, law), status=status, n_points=n, **res)


def _screen(t: Array, g: Array, n_params: int) -> NDArray[np.str_]:
    """Per-device data checks before any fitting."""
    d, n = g.shape
    status = np.full(d, "ok", dtype="<U20")
    finite = np.isfinite(t).all(1) & np.isfinite(g).all(1)  # t (1, N) broadcasts against g's devices
    status[~finite] = "nan"
    if n < n_params + 1:
        status[finite] = "too_few_points"
        return status
    increasing = np.broadcast_to((np.diff(t, axis=1) > 0).all(1), (d,))
    status[finite & ~increasing] = "nonincreasing_time"
    status[finite & increasing & (t[:, 0] < 0)] = "negative_time"
    return status


def _solve_chunk(
    law: str, t: Array, g: Array, robust: bool
) -> tuple[dict[str, Array], NDArray[np.str_], NDArray[np.bool_]]:
    """Fit one chunk of screened devices in normalised units and convert back to SI; judge the fits.
    Returns the columns, the statuses and which devices' numbers are a converged, resolved fit."""
    t_scale = t[:, -1:]  # (1 or D, 1): the last sample time, > 0 after screening
    g_ref = g[:, -1:]
    at_edge: NDArray[np.bool_] = np.zeros(g.shape[0], dtype=bool)
    if law == "exp":  # the fused kernel normalises each device itself
        p, cov_u, stats, judged = fit_exp_judged(
            np.ascontiguousarray(t), np.ascontiguousarray(g), 3 if robust else 1, 50, 1e-7
        )
        wrss, wsum, rss_n, converged = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3] > 0
        g_scale, tss_n = stats[:, 4:5], stats[:, 5]
        judged *= np.where(g_scale > 0, g_scale, 1.0) ** _TO_SI_POWER  # normalised units -> siemens
    else:
        g_scale = np.abs(g - g_ref).max(1, keepdims=True)
        tn = torch.from_numpy(np.ascontiguousarray(t / t_scale))
        yn = torch.from_numpy(np.ascontiguousarray((g - g_ref) / g_scale))
        k = _exp_rate(tn, yn)  # numba, parallel: before the thread count is pinned below
        with _torch_threads(1 if yn.numel() <= SERIAL_ELEMENTS else None):
            p0 = _INIT[law](tn, yn, k)
            sol = levenberg_marquardt(_MODELS[law], p0, tn, yn, robust=robust, bounds=_BOUNDS[law])
        p, cov_u, converged = sol.params.numpy(), sol.cov_unscaled.numpy(), sol.converged.numpy()
        w, r = sol.weights.numpy(), sol.residual.numpy()
        wrss, wsum, rss_n = (w * r * r).sum(1), w.sum(1), (r * r).sum(1)
        lo, hi = (b.numpy() for b in _BOUNDS[law])
        hi = np.where(_STEP_EDGE[law], np.inf, hi)  # a compressed beta at its top is a step: still resolved
        at_edge = np.asarray(((p <= lo + 1e-6) | (p >= hi - 1e-6)).any(1))  # ran off to a degenerate limit
        tss_n = ((yn - yn.mean(1, keepdim=True)) ** 2).sum(1).numpy()
    n_par = p.shape[1]
    n = g.shape[1]
    s2 = wrss / max(n - n_par, 1) * n / wsum
    cov = cov_u * s2[:, None, None]
    var = np.diagonal(cov, axis1=1, axis2=2)
    ts, gs = np.broadcast_to(t_scale, (g.shape[0], 1))[:, 0], g_scale[:, 0]
    out = {"tau2": np.full(len(p), np.nan), "w1": np.full(len(p), np.nan), "beta": np.full(len(p), np.nan)}
    out["g_inf"] = g_ref[:, 0] + gs * p[:, 0]
    out["g_inf_err"] = gs * np.sqrt(var[:, 0])
    if law == "biexp":
        fast_first = p[:, 3] >= p[:, 4]
        a1, a2 = np.where(fast_first, p[:, 1], p[:, 2]), np.where(fast_first, p[:, 2], p[:, 1])
        u1, u2 = np.where(fast_first, p[:, 3], p[:, 4]), np.where(fast_first, p[:, 4], p[:, 3])
        var_u1 = np.where(fast_first, var[:, 3], var[:, 4])
        out["delta_g"] = gs * (a1 + a2)
        out["delta_g_err"] = gs * np.sqrt(np.abs(var[:, 1] + var[:, 2] + 2 * cov[:, 1, 2]))
        out["tau"], out["tau2"] = ts * np.exp(-u1), ts * np.exp(-u2)
        out["tau_err"] = out["tau"] * np.sqrt(var_u1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["w1"] = a1 / (a1 + a2)
    else:
        out["delta_g"] = gs * p[:, 1]
        out["delta_g_err"] = gs * np.sqrt(var[:, 1])
        out["tau"] = ts * np.exp(-p[:, 2])
        out["tau_err"] = out["tau"] * np.sqrt(var[:, 2])
        if law in _BETA:
            out["beta"] = _BETA[law](torch.from_numpy(p[:, 3])).numpy()
    rss = rss_n * gs**2
    tss = tss_n * gs**2
    out["rmse"] = np.sqrt(rss / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rmse_rel"] = out["rmse"] / np.abs(out["delta_g"])
        out["r2"] = 1.0 - rss / tss
    out["aicc"] = (
        n * np.log(np.maximum(rss / n, 1e-300)) + 2 * n_par + 2 * n_par * (n_par + 1) / max(n - n_par - 1, 1)
    )
    status = _judge(out, t, converged | at_edge)
    status[at_edge & np.isin(status, ("ok", "flat"))] = "tau_unresolved"
    status[gs == 0] = "flat"  # a constant trace
    fitted = status == "ok"
    if law == "exp":  # the kernel judged each fit while its data was in cache
        stats, poor, non_monotonic, stepwise = judge(judged, n, out["delta_g"], tss, t)
    else:
        stats, poor, non_monotonic, stepwise = verdict(law, t, g, out, tss)
    out |= stats
    status[fitted & poor] = "poor_fit"
    if law == "compressed":
        status[fitted & poor & (out["beta"] >= COLLAPSE_BETA)] = "threshold_collapse"
    if law == "compressed":  # a collapse the sampling does not resolve is a jump
        sudden = unresolved_collapse(out["tau"], out["beta"], t) & np.isfinite(out["tau"]) & ~stepwise
        stepwise = stepwise | sudden
        out["n_jumps"][sudden] = 1.0
        out["jump_t"][sudden, 0] = out["tau"][sudden]
        out["jump_size"][sudden, 0] = -out["delta_g"][sudden]
    # abrupt level shifts that the law could not follow: whatever the fit's other numbers say
    status[stepwise & (gs > 0) & ~np.isin(status, ("nan", "too_few_points"))] = "stepwise"
    status[non_monotonic & (gs > 0)] = "non_monotonic"
    return out, status, fitted


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch on ``threads`` intra-op threads (None: unchanged), then restore."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _judge(out: dict[str, Array], t: Array, converged: NDArray[np.bool_]) -> NDArray[np.str_]:
    """Status of fitted devices: convergence, significance of the relaxation, resolution of tau."""
    d = converged.size
    status = np.full(d, "ok", dtype="<U20")
    sample_dt = np.median(np.diff(t, axis=1), axis=1)  # (1,) for a shared time axis, else (D,)
    span = t[:, -1] - t[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_err = out["tau_err"] / out["tau"]
        flat = ~(np.abs(out["delta_g"]) >= 3.0 * out["delta_g_err"])
        unresolved = ~((out["tau"] >= 0.5 * sample_dt) & (out["tau"] <= 10.0 * span) & (rel_err <= 0.25))
    finite = np.isfinite(out["tau"]) & np.isfinite(out["g_inf"]) & np.isfinite(out["delta_g"])
    status[unresolved] = "tau_unresolved"
    status[flat] = "flat"
    status[~(converged & finite)] = "no_convergence"
    return status


# -- models in normalised units: t in units of the last sample time, g in units of the range -----
def _biexp_model(p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    k1, k2 = torch.exp(p[:, 3:4]), torch.exp(p[:, 4:5])
    e1, e2 = torch.exp(-k1 * t), torch.exp(-k2 * t)
    pred = p[:, 0:1] + p[:, 1:2] * e1 + p[:, 2:3] * e2
    cols = [torch.ones_like(pred), e1.expand_as(pred), e2.expand_as(pred)]
    jac = torch.stack([*cols, -p[:, 1:2] * k1 * t * e1, -p[:, 2:3] * k2 * t * e2], dim=-1)
    return pred, jac


def _kohlrausch_model(
    beta_of: Callable[[Tensor], tuple[Tensor, Tensor]],
) -> Callable[..., tuple[Tensor, Tensor]]:
    """c + a exp(-(k t)^beta), parameters (c, a, u = ln k, v) with beta, d beta/dv = beta_of(v)."""

    def model(p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        k = torch.exp(p[:, 2:3])
        beta, dbeta = beta_of(p[:, 3:4])
        kt = (k * t).clamp_min(1e-300)
        x = kt**beta
        e = torch.exp(-x)
        pred = p[:, 0:1] + p[:, 1:2] * e
        d_u = -p[:, 1:2] * e * beta * x
        d_v = -p[:, 1:2] * e * x * torch.log(kt) * dbeta
        jac = torch.stack([torch.ones_like(pred), e.expand_as(pred), d_u, d_v], dim=-1)
        return pred, jac

    return model


def _stretched_beta(v: Tensor) -> tuple[Tensor, Tensor]:
    """beta = sigmoid(v) in (0, 1) and d beta / dv."""
    beta = torch.sigmoid(v)
    return beta, beta * (1.0 - beta)


COMPRESSED_BETA_SPAN = 99.0  # compressed beta = 1 + 99 sigmoid(v): (1, 100)


def _compressed_beta(v: Tensor) -> tuple[Tensor, Tensor]:
    """beta = 1 + 99 sigmoid(v) in (1, 100) and d beta / dv."""
    s = torch.sigmoid(v)
    return 1.0 + COMPRESSED_BETA_SPAN * s, COMPRESSED_BETA_SPAN * s * (1.0 - s)


# upper parameter bounds that are a physical limit rather than a degenerate one: the compressed law's
# beta -> 100 is an abrupt step at tau (VO2 collapsing within a few ms of a 0.3 s hold)
_STEP_EDGE = {
    "biexp": np.zeros(5, dtype=bool),
    "stretched": np.zeros(4, dtype=bool),
    "compressed": np.array([False, False, False, True]),
}
_BETA = {"stretched": lambda v: _stretched_beta(v)[0], "compressed": lambda v: _compressed_beta(v)[0]}
_MODELS = {
    "biexp": _biexp_model,
    "stretched": _kohlrausch_model(_stretched_beta),
    "compressed": _kohlrausch_model(_compressed_beta),
}
# ln k within [-7, 12] (tau from ~6e-6 to ~1100 record lengths: beyond, tau_unresolved); for the stretched
# law logit(beta) within [-4, 6] (beta 0.018 .. 0.9975). Amplitudes and baseline are free.
_INF = float("inf")
_BOUNDS = {
    "biexp": (torch.tensor([-_INF, -_INF, -_INF, -7.0, -7.0]), torch.tensor([_INF, _INF, _INF, 12.0, 12.0])),
    "stretched": (torch.tensor([-_INF, -_INF, -7.0, -4.0]), torch.tensor([_INF, _INF, 12.0, 6.0])),
    # logit((beta - 1) / 99) within [-8, 8]: beta 1.033 .. 99.97. At the lower bound the trace is no
    # sharper than an exponential (the compressed law has nothing to add: tau_unresolved)
    "compressed": (torch.tensor([-_INF, -_INF, -7.0, -8.0]), torch.tensor([_INF, _INF, 12.0, 8.0])),
}


# -- initialisation -------------------------------------------------------------------------------
def _linear_coeffs(basis: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares coefficients (D, M) of y (D, N) on basis (D, N, M) and the residual sum (D,)."""
    a = torch.bmm(basis.transpose(1, 2), basis)
    a = a + 1e-12 * torch.diag_embed(torch.diagonal(a, dim1=1, dim2=2) + 1e-30)
    b = torch.bmm(basis.transpose(1, 2), y.unsqueeze(-1))
    coef, _ = torch.linalg.solve_ex(a, b)
    coef = coef.squeeze(-1)
    resid = y - torch.bmm(basis, coef.unsqueeze(-1)).squeeze(-1)
    sse = (resid * resid).sum(1)
    return coef, torch.where(torch.isfinite(sse), sse, torch.full_like(sse, float("inf")))


def _exp_rate(t: Tensor, y: Tensor) -> Tensor:
    """Least-squares single-exponential rate k (D,) in normalised units: the start of the other laws."""
    params, _, _ = fit_exp_kernel(t.numpy(), y.numpy(), 1, 50, 1e-7)
    k = torch.from_numpy(np.exp(params[:, 2]))
    return torch.where(torch.isfinite(k) & (k > 1e-3) & (k < 1e5), k, torch.full_like(k, 3.0))


def _biexp_init(t: Tensor, y: Tensor, k: Tensor) -> Tensor:
    """Best of a grid of (k1, k2) around the single-exponential rate k (D,), (c, a1, a2) projected."""
    best_p = torch.zeros(y.shape[0], 5, dtype=y.dtype)
    best_sse = torch.full((y.shape[0],), float("inf"), dtype=y.dtype)
    for m1 in (1.5, 3.0, 10.0, 30.0, 100.0):
        for m2 in (1.0, 1.5, 3.0, 10.0, 30.0, 100.0):
            k1, k2 = (k * m1)[:, None], (k / m2)[:, None]
            e1, e2 = torch.exp(-k1 * t).expand_as(y), torch.exp(-k2 * t).expand_as(y)
            coef, sse = _linear_coeffs(torch.stack([torch.ones_like(y), e1, e2], dim=-1), y)
            better = sse < best_sse
            p = torch.cat([coef, torch.log(k1), torch.log(k2)], dim=1)
            best_p = torch.where(better[:, None], p, best_p)
            best_sse = torch.where(better, sse, best_sse)
    return best_p


def _stretched_init(t: Tensor, y: Tensor, k: Tensor) -> Tensor:
    """Best of a grid of (k, beta) around the single-exponential rate k (D,), (c, a) projected."""
    best_p = torch.zeros(y.shape[0], 4, dtype=y.dtype)
    best_sse = torch.full((y.shape[0],), float("inf"), dtype=y.dtype)
    for beta in (0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 0.95):
        v = math.log(beta / (1.0 - beta))
        for m in (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0):
            km = (k * m)[:, None]
            e = torch.exp(-((km * t).clamp_min(0.0) ** beta)).expand_as(y)
            coef, sse = _linear_coeffs(torch.stack([torch.ones_like(y), e], dim=-1), y)
            better = sse < best_sse
            p = torch.cat([coef, torch.log(km), torch.full_like(km, v)], dim=1)
            best_p = torch.where(better[:, None], p, best_p)
            best_sse = torch.where(better, sse, best_sse)
    return best_p


def _compressed_init(t: Tensor, y: Tensor, k: Tensor) -> Tensor:
    """Best of a grid of (k, beta > 1), (c, a) projected: rates around the single-exponential k (D,)
    and around the half-relaxation time of the data (a hold, then a collapse: t_half ~ tau)."""
    d = y.shape[0]
    half = (y - y[:, -1:]).abs() < 0.5 * (y[:, :1] - y[:, -1:]).abs()  # y is normalised to end at 0
    first = torch.where(half.any(1), half.float().argmax(1), torch.full((d,), y.shape[1] - 1))
    t_half = torch.gather(t.expand_as(y), 1, first[:, None])[:, 0].clamp_min(1e-6)
    best_p = torch.zeros(d, 4, dtype=y.dtype)
    best_sse = torch.full((d,), float("inf"), dtype=y.dtype)
    for beta in (1.3, 2.0, 3.0, 5.0, 8.0, 13.0, 25.0, 50.0):
        v = math.log((beta - 1.0) / (1.0 + COMPRESSED_BETA_SPAN - beta))
        rates = [k * m for m in (0.3, 1.0, 3.0)]
        rates += [math.log(2.0) ** (1.0 / beta) / t_half * m for m in (0.8, 1.0, 1.25)]
        for rate in rates:
            km = rate[:, None]
            e = torch.exp(-((km * t).clamp_min(0.0) ** beta)).expand_as(y)
            coef, sse = _linear_coeffs(torch.stack([torch.ones_like(y), e], dim=-1), y)
            better = sse < best_sse
            p = torch.cat([coef, torch.log(km), torch.full_like(km, v)], dim=1)
            best_p = torch.where(better[:, None], p, best_p)
            best_sse = torch.where(better, sse, best_sse)
    return best_p


_INIT = {"biexp": _biexp_init, "stretched": _stretched_init, "compressed": _compressed_init}
