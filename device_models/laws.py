"""Decay laws of a volatile conductance and their best per-step (STPN lambda) approximation.

Pure numpy (the single-exponential pair ``exp_retention`` / ``exp_tau_s`` also takes torch tensors, for
hardware-aware training): the fits in ``calibration``, the record schema (``device_models.record``) and
the compiled array (``device_models.realisation``) share it. Every lambda <-> tau conversion of the
project goes through this module.

Every law is a normalised relaxation phi(t) with phi(0) = 1, t in seconds; a device's short-term
conductance follows g(t) = g_inf + delta_g * phi(t).

    exp        phi = exp(-t / tau1)
    biexp      phi = w1 exp(-t / tau1) + (1 - w1) exp(-t / tau2),   tau1 <= tau2, 0 <= w1 <= 1
    stretched  phi = exp(-(t / tau1) ** beta),                       0 < beta <= 1 (Kohlrausch)
    compressed phi = exp(-(t / tau1) ** beta),                       beta > 1 (hold, then collapse)

The first three are completely monotone (superpositions of exponential relaxations); on a logarithmic
time axis none of them falls faster than |d phi / d ln t| = 1/e. The compressed law falls as fast as
beta/e around t = tau1 after holding near 1 for t << tau1: the hold-then-collapse of threshold-switching
volatile devices (e.g. VO2 cooling through its insulator-metal transition, or a diffusive Ag filament that
holds, then ruptures). tau1 is then the collapse time: the conductance has lost 1 - 1/e of its
relaxation at t = tau1, whatever beta.

The STPN retains its short-term state per step as F_k = lambda * F_{k-1}, i.e. phi(k dt) = lambda^k,
which only a single exponential realises exactly. For the other laws the best per-step lambda is
the least-squares fit of lambda^k to phi(k dt) over k = 1..horizon_steps (the memory span the
network uses); its RMS residual is the approximation error reported per device.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Law = Literal["exp", "biexp", "stretched", "compressed"]
LAWS: tuple[Law, ...] = ("exp", "biexp", "stretched", "compressed")
DEFAULT_HORIZON_STEPS = 100

Array = NDArray[np.float64]


def relaxation(
    law: str,
    t_s: Any,
    tau1_s: Any,
    tau2_s: Any = None,
    w1: Any = None,
    beta: Any = None,
) -> Array:
    """phi(t) for one law, broadcasting per-device parameters (D, 1) against times (D, N) or (N,)."""
    t = np.asarray(t_s, dtype=np.float64)
    if law == "exp":
        return np.exp(-t / tau1_s)
    if law == "biexp":
        assert tau2_s is not None and w1 is not None
        return w1 * np.exp(-t / tau1_s) + (1.0 - w1) * np.exp(-t / tau2_s)
    if law in ("stretched", "compressed"):
        assert beta is not None
        return np.exp(-((np.maximum(t, 0.0) / tau1_s) ** beta))
    raise ValueError(f"unknown decay law {law!r}; known: {', '.join(LAWS)}")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def exp_retention(dt_s: Any, tau_s: Any) -> Any:
    """Per-step retention (1) of a single-exponential relaxation of time constant ``tau_s`` over a step
    of ``dt_s`` seconds: exp(-dt / tau). numpy arrays, floats or torch tensors (differentiable)."""
    if _is_torch(tau_s) or _is_torch(dt_s):
        import torch

        return torch.exp(-dt_s / tau_s)
    return np.exp(-np.asarray(dt_s, dtype=np.float64) / tau_s)


def exp_tau_s(lam: Any, dt_s: Any) -> Any:
    """Time constant (s) of the single exponential that retains ``lam`` in (0, 1) per step of ``dt_s``
    seconds: -dt / ln(lam), the exact inverse of ``exp_retention``. numpy or torch (differentiable)."""
    if _is_torch(lam):
        import torch

        return -dt_s / torch.log(lam)
    with np.errstate(divide="ignore"):
        return -np.asarray(dt_s, dtype=np.float64) / np.log(lam)


def log_step_time(lam: Any) -> Any:
    """ln(dt / tau) (1) of the single exponential that retains ``lam`` per step: ln(-ln lam), the
    log-time coordinate in which per-step retention tables of other laws are tabulated (numpy)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(-np.log(lam))


def retention_of_log_step_time(ln_y: Any) -> Any:
    """Per-step retention (1) at the log-time ln(dt / tau) = ``ln_y``: exp(-exp(ln_y)), the inverse of
    ``log_step_time`` (numpy)."""
    return np.exp(-np.exp(ln_y))


def step_retention(
    law: str,
    dt_s: Array | float,
    tau1_s: Array,
    tau2_s: Array | None = None,
    w1: Array | None = None,
    beta: Array | None = None,
    horizon_steps: int = DEFAULT_HORIZON_STEPS,
) -> tuple[Array, Array]:
    """Per-step retention lambda (1) of a device relaxing by ``law`` over steps of ``dt_s`` seconds.

    The one tau -> lambda conversion of the project: exp(-dt / tau1) for "exp" (exact, RMS error 0);
    for the other laws the least-squares lambda^k ~ phi(k dt), k = 1..horizon_steps
    (``best_step_lambda``). Parameters broadcast per device, (D,); returns (lambda (D,), RMS error (D,)).
    """
    tau1 = np.atleast_1d(np.asarray(tau1_s, dtype=np.float64))
    dt = np.broadcast_to(np.asarray(dt_s, dtype=np.float64), tau1.shape)
    if law == "exp":
        lam = exp_retention(dt, tau1)
        return lam, np.where(np.isfinite(lam), 0.0, np.nan)
    k = np.arange(1, horizon_steps + 1, dtype=np.float64)

    def per_device(p: Array | None) -> Array | None:
        return None if p is None else np.broadcast_to(np.asarray(p, dtype=np.float64), tau1.shape)[:, None]

    phi = relaxation(
        law, dt[:, None] * k, tau1[:, None], per_device(tau2_s), per_device(w1), per_device(beta)
    )
    return best_step_lambda(phi)


def step_retention_by_law(
    laws: Any,
    usable: NDArray[np.bool_],
    dt_s: float,
    tau1_s: Array,
    tau2_s: Array,
    w1: Array,
    beta: Array,
    horizon_steps: int = DEFAULT_HORIZON_STEPS,
) -> tuple[Array, Array]:
    """``step_retention`` of devices with per-device laws (D,) (names of ``LAWS``) and parameters (D,);
    NaN where not ``usable`` (D,) or the law is not one of ``LAWS``. The one dispatch of a law to its
    per-step lambda, shared by fits and records. Returns (lambda (D,), RMS error (D,))."""
    names = np.asarray(laws)
    lam, err = np.full(names.shape, np.nan), np.full(names.shape, np.nan)
    for law in LAWS:
        sel = (names == law) & usable
        if sel.any():
            lam[sel], err[sel] = step_retention(
                law, dt_s, tau1_s[sel], tau2_s[sel], w1[sel], beta[sel], horizon_steps
            )
    return lam, err


def e_fold_time_s(
    law: str, tau1_s: Array, tau2_s: Array | None = None, w1: Array | None = None, beta: Array | None = None
) -> Array:
    """Time (s) at which phi(t) falls to 1/e, per device: tau1 for "exp" and "stretched"; for "biexp"
    the root of w1 exp(-t/tau1) + (1 - w1) exp(-t/tau2) = 1/e (bisection on log t, between tau1 and
    tau2). A dt-free summary of a law (the record's ``tau_s``), not a per-step retention."""
    tau1 = np.atleast_1d(np.asarray(tau1_s, dtype=np.float64))
    if law != "biexp":
        return tau1.copy()
    assert tau2_s is not None and w1 is not None
    tau2 = np.broadcast_to(np.asarray(tau2_s, dtype=np.float64), tau1.shape)
    lo, hi = np.log(np.minimum(tau1, tau2)), np.log(np.maximum(tau1, tau2))
    for _ in range(60):
        mid = (lo + hi) / 2
        above = relaxation("biexp", np.exp(mid), tau1, tau2, w1) > math.exp(-1.0)
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.exp((lo + hi) / 2)


def best_step_lambda(phi_steps: Array, iterations: int = 60) -> tuple[Array, Array]:
    """Least-squares lambda per device for samples phi(k dt), k = 1..K, given as (D, K).

    Minimises sum_k (lambda^k - phi_k)^2 over lambda in [0, 1] by a batched golden-section search
    (the objective is unimodal for monotone relaxations, the compressed law's hold-then-collapse
    included). Returns (lambda (D,), RMS error (D,)).
    """
    phi = np.atleast_2d(np.asarray(phi_steps, dtype=np.float64))
    k = np.arange(1, phi.shape[1] + 1, dtype=np.float64)

    def cost(lam: Array) -> Array:
        return np.sum((lam[:, None] ** k - phi) ** 2, axis=1)

    invphi = (np.sqrt(5.0) - 1.0) / 2.0
    lo = np.zeros(phi.shape[0])
    hi = np.ones(phi.shape[0])
    for _ in range(iterations):
        a = hi - invphi * (hi - lo)
        b = lo + invphi * (hi - lo)
        left = cost(a) < cost(b)
        hi = np.where(left, b, hi)
        lo = np.where(left, lo, a)
    lam = 0.5 * (lo + hi)
    return lam, np.sqrt(cost(lam) / phi.shape[1])
