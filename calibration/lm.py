"""A batched, robust Levenberg-Marquardt solver: D independent small least-squares problems at once.

Each device d has samples y[d] (N,) at times t[d] and a model with P parameters. All D problems
advance together: one Jacobian (D, N, P), one batched P x P normal-equation solve per step (torch,
float64). Robustness comes from iteratively reweighted least squares with the soft-L1 loss
rho(r) = 2 s^2 (sqrt(1 + (r/s)^2) - 1), s = ``ROBUST_SCALE`` x the residual MAD of the device,
so an outlier's influence is bounded while Gaussian residuals keep weights near 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

# Model: (params (D, P), t (D, N) or (1, N)) -> (prediction (D, N), Jacobian d pred / d params (D, N, P)).
Model = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

ROBUST_SCALE = 2.5  # soft-L1 scale in units of the MAD-estimated residual sigma
MAD_TO_SIGMA = 1.4826


class LMResult(NamedTuple):
    """Solution per device: params (D, P), residuals y - pred (D, N), IRLS weights (D, N),
    the unscaled covariance (J^T W J)^-1 (D, P, P), and whether each device converged (D,)."""

    params: Tensor
    residual: Tensor
    weights: Tensor
    cov_unscaled: Tensor
    converged: Tensor


def robust_weights(residual: Tensor, floor: float = 1e-12) -> Tensor:
    """Soft-L1 IRLS weights 1/sqrt(1 + (r/s)^2), s from each device's residual MAD (D, N)."""
    sigma = MAD_TO_SIGMA * residual.abs().median(dim=1, keepdim=True).values
    s = ROBUST_SCALE * sigma.clamp_min(floor)
    return torch.rsqrt(1.0 + (residual / s) ** 2)


def _normal_equations(jac: Tensor, w: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    wj = jac * w.unsqueeze(-1)
    return torch.bmm(wj.transpose(1, 2), jac), torch.bmm(wj.transpose(1, 2), r.unsqueeze(-1)).squeeze(-1)


def levenberg_marquardt(
    model: Model,
    p0: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    robust: bool = True,
    bounds: tuple[Tensor, Tensor] | None = None,
    outer: int = 3,
    inner: int = 60,
    tol: float = 1e-9,
) -> LMResult:
    """Minimise sum_n w_dn (y_dn - model(p_d, t_dn))^2 for every device d together.

    ``outer`` IRLS rounds (1 when not robust) of up to ``inner`` damped Gauss-Newton steps each; the
    weights stay fixed within a round so every accepted step lowers that round's cost. ``bounds``
    (lower, upper), each (P,), box the parameters (a step is clipped into the box): a fit that runs
    off to a degenerate limit stops at the edge instead of wandering.
    """
    p = p0.clone()
    d = p.shape[0]
    pred, jac = model(p, t)
    r = y - pred
    w = torch.ones_like(y)
    converged = torch.zeros(d, dtype=torch.bool)
    for _round in range(outer if robust else 1):
        if robust:
            w = robust_weights(r)
        cost = (w * r * r).sum(1)
        damping = torch.full((d,), 1e-3, dtype=p.dtype)
        converged = torch.zeros(d, dtype=torch.bool)
        for _ in range(inner):
            a, b = _normal_equations(jac, w, r)
            diag = torch.diagonal(a, dim1=1, dim2=2)
            ridge = 1e-12 * diag.amax(1, keepdim=True).clamp_min(1e-300)
            damped = a + torch.diag_embed(damping[:, None] * diag + ridge)
            step, info = torch.linalg.solve_ex(damped, b)
            solved = (info == 0) & torch.isfinite(step).all(1)
            step = torch.where(solved[:, None], step, torch.zeros_like(step))
            p_try = p + step if bounds is None else torch.clamp(p + step, bounds[0], bounds[1])
            step = p_try - p
            pred_try, jac_try = model(p_try, t)
            r_try = y - pred_try
            cost_try = (w * r_try * r_try).sum(1)
            accept = torch.isfinite(cost_try) & (cost_try <= cost) & ~converged
            small = (cost - cost_try).abs() <= tol * cost.clamp_min(1e-300)
            tiny_step = solved & (step.abs().amax(1) <= tol * (1.0 + p.abs().amax(1)))
            converged |= (accept & small) | tiny_step
            p = torch.where(accept[:, None], p_try, p)
            r = torch.where(accept[:, None], r_try, r)
            jac = torch.where(accept[:, None, None], jac_try, jac)
            cost = torch.where(accept, cost_try, cost)
            damping = torch.where(accept, damping / 3.0, damping * 4.0).clamp(1e-12, 1e12)
            if bool(converged.all()):
                break
    a, _ = _normal_equations(jac, w, r)
    cov, info = torch.linalg.inv_ex(a)
    cov = torch.where((info == 0)[:, None, None], cov, torch.full_like(cov, float("nan")))
    return LMResult(p, r, w, cov, converged)
