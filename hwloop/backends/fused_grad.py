"""The fused STPN step for training: the one-pass forward of ``fused`` with a hand-derived backward.

Plain torch autograd of one step makes ~8 passes over F (B, H, K) forward and ~20 backward, and
keeps their intermediates alive for the whole BPTT window. Here the forward is ``fused_step`` and the
backward reads F_{t-1} and dL/dF_t once and writes dL/dF_{t-1} once, per row of synapses.

Forward, per sample and row i (z = [x_t, h_{t-1}], G = W + F_{t-1}):

    n_i = ||G_i||_2 + eps,  y_i = (G z)_i / n_i,  h_i = tanh(y_i + b_i),
    F_t = lambda * F_{t-1} / n + gamma * (h outer z)

Backward, given dh (dL/dh_t from the outputs) and dF' (dL/dF_t from later steps):

    dh_i  += sum_j dF'_ij gamma_ij z_j                 (h enters F_t)
    da_i   = dh_i (1 - h_i^2);  db_i = da_i;  ds_i = da_i / n_i
    dn_i   = -(da_i y_i + sum_j dF'_ij lambda_ij F_ij / n_i) / n_i
    dG_ij  = ds_i z_j + dn_i G_ij / ||G_i||
    dF_ij  = dF'_ij lambda_ij / n_i + dG_ij;   dW_ij = sum_b dG_ij
    dlambda_ij = sum_b dF'_ij F_ij / n_i;      dgamma_ij = sum_b dF'_ij h_i z_j
    dz_j   = sum_i (ds_i G_ij + dF'_ij gamma_ij h_i)

Rows are processed in parallel over i with the batch inside, so the per-row sums over b for dW,
dlambda and dgamma need no atomics; dz is summed over i by torch from a (B, H, K) buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor
from torch.autograd.function import FunctionCtx

from hwloop.backends.fused import array_of, fused_step_saving, launch


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _step_grad_rows(  # pragma: no cover - compiled by numba
    W, F, lam, gamma, z, h, n, y, dh_out, dF_next, has_dF_next, eps, dF, dz_parts, dW, dlam, dgamma, dbias
):
    B, H, K = F.shape
    zero, one = F.dtype.type(0), F.dtype.type(1)
    for i in prange(H):
        w_row, lam_row, gamma_row = W[i], lam[i], gamma[i]
        dw_row, dlam_row, dgamma_row = dW[i], dlam[i], dgamma[i]
        dw_row[:] = zero
        dlam_row[:] = zero
        dgamma_row[:] = zero
        db = zero
        for b in range(B):
            f_row, z_row = F[b, i], z[b]
            post, n_i = h[b, i], n[b, i]
            inv_n = one / n_i
            via_h = zero  # sum_j dF' gamma z
            via_n = zero  # sum_j dF' lambda F
            if has_dF_next:
                d_row = dF_next[b, i]
                for j in range(K):
                    via_h += d_row[j] * gamma_row[j] * z_row[j]
                    via_n += d_row[j] * lam_row[j] * f_row[j]
            da = (dh_out[b, i] + via_h) * (one - post * post)
            db += da
            ds = da * inv_n
            dn = -(da * y[b, i] + via_n * inv_n) * inv_n
            g_norm = n_i - eps
            c = dn / g_norm if g_norm > zero else zero
            out_row, m_row = dF[b, i], dz_parts[b, i]
            for j in range(K):
                g = w_row[j] + f_row[j]
                dg = ds * z_row[j] + c * g
                m = ds * g
                dw_row[j] += dg
                if has_dF_next:
                    d = d_row[j]
                    out_row[j] = d * lam_row[j] * inv_n + dg
                    m += d * gamma_row[j] * post
                    dlam_row[j] += d * f_row[j] * inv_n
                    dgamma_row[j] += d * post * z_row[j]
                else:
                    out_row[j] = dg
                m_row[j] = m
        dbias[i] = db


class FusedStpnStep(torch.autograd.Function):
    """(W, F_{t-1}, lambda, gamma, z, bias) -> (h_t, F_t) with the fused forward and backward above."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        weight: Tensor,
        F: Tensor,
        lam: Tensor,
        gamma: Tensor,
        z: Tensor,
        bias: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor]:
        h, F_t, n, y, _ = fused_step_saving(weight, F, lam, gamma, z, bias, eps, False)
        ctx.save_for_backward(weight, F, lam, gamma, z, h, n, y)
        ctx.eps = eps  # type: ignore[attr-defined]
        return h, F_t

    @staticmethod
    def backward(ctx: Any, dh: Tensor | None, dF_next: Tensor | None) -> tuple[Tensor | None, ...]:
        weight, F, lam, gamma, z, h, n, y = ctx.saved_tensors
        f = array_of(F)
        batch, hidden, k = f.shape
        dh_arr = array_of(dh) if dh is not None else np.zeros((batch, hidden), f.dtype)
        has_next = dF_next is not None
        d_next = array_of(dF_next) if dF_next is not None else np.zeros((1, 1, 1), f.dtype)
        dF, dz_parts = np.empty_like(f), np.empty_like(f)
        dW, dlam, dgamma = (np.empty((hidden, k), f.dtype) for _ in range(3))
        dbias = np.empty(hidden, f.dtype)
        arrays = [array_of(t) for t in (weight, F, lam, gamma, z, h, n, y)]
        launch(
            _step_grad_rows, *arrays, dh_arr, d_next, has_next, ctx.eps, dF, dz_parts, dW, dlam, dgamma, dbias
        )
        dz = torch.from_numpy(dz_parts).sum(dim=1)
        needs = ctx.needs_input_grad
        grads = (dW, dF, dlam, dgamma, None, dbias)
        out: list[Tensor | None] = [
            torch.from_numpy(g) if g is not None and needs[k_] else None for k_, g in enumerate(grads)
        ]
        out[4] = dz if needs[4] else None
        return (*out, None)


def fused_step_with_grad(
    weight: Tensor, F: Tensor, lam: Tensor, gamma: Tensor, z: Tensor, bias: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """One differentiable STPN step (h_t (B, H), F_t (B, H, K)) on the fused CPU kernels; shapes and
    dtypes as ``fused.fused_step``. Gradients equal plain torch autograd's to float rounding."""
    h, F_t = FusedStpnStep.apply(weight, F, lam, gamma, z, bias, eps)
    return h, F_t
