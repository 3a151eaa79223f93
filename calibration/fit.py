"""Batched fits of measured conductance relaxations: g(t) = g_inf + delta_g * phi(t).

    fit = fit_decay(t, g, model="exp")     # t (N,) or (D, N) seconds since the pulse; g (D, N) siemens
    fit.tau, fit.g_inf, fit.delta_g        # (D,) s, S, S; with *_err one-sigma uncertainties
    fit.lam(dt)                            # (D,) per-step retention for a time step dt (s)

Laws (``device_models.laws``): "exp", "biexp", "stretched", or "auto" (all three; per device the
simplest law whose AICc is within 2 of the lowest). All devices are solved together: each device's
time is scaled by its last sample time and its conductance by its range. "exp" runs the fused kernel
of ``calibration.expfast`` (integral-equation start, variable-projection Levenberg-Marquardt, IRLS);
the other laws start from the best of a grid of variable-projection candidates and run the batched
robust Levenberg-Marquardt of ``calibration.lm``.

Every device gets a status; only "ok" devices carry numbers (the rest are NaN), so a bad trace never
yields a silent wrong tau:
    ok                   fitted, converged, tau resolved by the sampling
    nan                  a non-finite time or conductance sample
    too_few_points       fewer samples than parameters + 1
    nonincreasing_time   times not strictly increasing
    negative_time        a time before the pulse (t < 0)
    flat                 no significant relaxation (|delta_g| < 3 sigma, or a constant trace)
    tau_unresolved       tau shorter than half the sampling interval, longer than 10x the record,
                         or known to worse than 25%
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

from calibration.expfast import fit_exp_kernel
from calibration.lm import levenberg_marquardt
from device_models.laws import DEFAULT_HORIZON_STEPS, LAWS, relaxation, step_retention
from device_models.record import CalibrationError

Array = NDArray[np.float64]
MODELS = (*LAWS, "auto")
N_PARAMS = {"exp": 3, "biexp": 5, "stretched": 4}
AICC_TIE = (
    2.0  # laws within 2 of the lowest AICc are equally supported: take the simplest (Burnham & Anderson)
)
CHUNK_ELEMENTS = 2_000_000  # devices x samples per batched solve (bounds memory at ~100 MB)
# Below this many devices x samples the torch solve of "biexp" / "stretched" runs on one thread: its
# per-step products (P x N by N x P per device) are microseconds of work, and a multi-threaded OpenMP
# region per op costs far more on a busy machine (each region waits for every team thread to be
# scheduled). numba's first parallel launch (the "exp" kernel) raises OpenMP's thread count for torch
# as well, so even OMP_NUM_THREADS=1 does not prevent it.
SERIAL_ELEMENTS = 250_000


@dataclass
class DecayFit:
    """Per-device result of ``fit_decay``; every array is (D,), NaN where status != "ok"."""

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
        lam, err = np.full(self.tau.shape, np.nan), np.full(self.tau.shape, np.nan)
        for law in LAWS:  # the one per-step lambda of a law: ``device_models.laws.step_retention``
            sel = (self.law == law) & (self.ok | (law == "exp"))
            if sel.any():
                lam[sel], err[sel] = step_retention(
                    law, dt, self.tau[sel], self.tau2[sel], self.w1[sel], self.beta[sel], horizon_steps
                )
        return lam, err


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
    return _fit_law(model, tt, gg, robust, progress)


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
    scores = np.stack([np.where(fits[law].ok, fits[law].aicc, np.inf) for law in order])
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
    todo = np.flatnonzero(status == "ok")
    chunk = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, todo.size, chunk):
        idx = todo[start : start + chunk]
        rows = (
            slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        )  # a view when contiguous
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # bad devices: NaN, judged below
            out, st = _solve_chunk(law, t if t.shape[0] == 1 else t[rows], g[rows], robust)
        status[idx] = st
        for k, v in out.items():
            res[k][idx] = v
        if progress is not None:
            progress(min(start + chunk, todo.size), todo.size)
    bad = status != "ok"
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


def _solve_chunk(law: str, t: Array, g: Array, robust: bool) -> tuple[dict[str, Array], NDArray[np.str_]]:
    """Fit one chunk of screened devices in normalised units and convert back to SI."""
    t_scale = t[:, -1:]  # (1 or D, 1): the last sample time, > 0 after screening
    g_ref = g[:, -1:]
    at_edge: NDArray[np.bool_] = np.zeros(g.shape[0], dtype=bool)
    if law == "exp":  # the fused kernel normalises each device itself
        p, cov_u, stats = fit_exp_kernel(
            np.ascontiguousarray(t), np.ascontiguousarray(g), 3 if robust else 1, 50, 1e-7
        )
        wrss, wsum, rss_n, converged = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3] > 0
        g_scale, tss_n = stats[:, 4:5], stats[:, 5]
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
        if law == "stretched":
            beta = 1.0 / (1.0 + np.exp(-p[:, 3]))
            out["beta"] = beta
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
    return out, status


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


def _stretched_model(p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    k = torch.exp(p[:, 2:3])
    beta = torch.sigmoid(p[:, 3:4])
    kt = (k * t).clamp_min(1e-300)
    x = kt**beta
    e = torch.exp(-x)
    pred = p[:, 0:1] + p[:, 1:2] * e
    d_u = -p[:, 1:2] * e * beta * x
    d_v = -p[:, 1:2] * e * x * torch.log(kt) * beta * (1.0 - beta)
    jac = torch.stack([torch.ones_like(pred), e.expand_as(pred), d_u, d_v], dim=-1)
    return pred, jac


_MODELS = {"biexp": _biexp_model, "stretched": _stretched_model}
# ln k within [-7, 12] (tau from ~6e-6 to ~1100 record lengths: beyond, tau_unresolved); for the stretched
# law logit(beta) within [-4, 6] (beta 0.018 .. 0.9975). Amplitudes and baseline are free.
_INF = float("inf")
_BOUNDS = {
    "biexp": (torch.tensor([-_INF, -_INF, -_INF, -7.0, -7.0]), torch.tensor([_INF, _INF, _INF, 12.0, 12.0])),
    "stretched": (torch.tensor([-_INF, -_INF, -7.0, -4.0]), torch.tensor([_INF, _INF, 12.0, 6.0])),
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


_INIT = {"biexp": _biexp_init, "stretched": _stretched_init}
