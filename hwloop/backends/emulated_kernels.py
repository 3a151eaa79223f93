"""One-pass CPU kernels of the emulated crossbar's read and update (no autograd).

Same scheme as ``hwloop.backends.fused`` (one pass over the short-term state per operation,
parallel over the B * H rows, deterministic row sums), with the extra per-row quantities the device
physics needs gathered in the same pass: the read-noise / read-energy sum sum_j |F_ij| z_j^2, the
sign-dependent device retention (the positive part of F sits on G+, the negative on G-), write
noise, the conductance-window clamp and the decay-bias power. Rows are visited in memory order, so
F and F_t stream through contiguously (measured faster than keeping a row's parameters in cache).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read_rows(
    W, F, z, bias_abs, g_lt, eps, dot, n, abs_f_z2, g_lt_z2, bias_rows, row_energy, with_energy
):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(B * H):
        b = r // H
        i = r - b * H
        w_row = W[i]
        f_row = F[b, i]
        z_row = z[b]
        ba = bias_abs[i]
        gl = g_lt[i]
        sq = w_row[0] - w_row[0]
        acc = sq
        ez = sq
        eg = sq
        eb = sq
        en = sq
        if with_energy:
            for j in range(K):
                f = f_row[j]
                g = w_row[j] + f
                a = abs(f)
                z2 = z_row[j] * z_row[j]
                sq += g * g
                acc += g * z_row[j]
                ez += a * z2
                eg += gl[j] * z2
                eb += ba[j] * a
                en += abs(g) * z2
        else:
            for j in range(K):
                f = f_row[j]
                g = w_row[j] + f
                a = abs(f)
                sq += g * g
                acc += g * z_row[j]
                z2 = z_row[j] * z_row[j]
                ez += a * z2
                eg += gl[j] * z2
                eb += ba[j] * a
        n[b, i] = np.sqrt(sq) + eps
        dot[b, i] = acc
        abs_f_z2[b, i] = ez
        g_lt_z2[b, i] = eg
        bias_rows[b, i] = eb
        if with_energy:
            row_energy[b, i] = en / n[b, i]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _update_rows(
    F, r_mid, r_half, gamma, lo, hi, inv_n, bound, h, z, c2c, c2c_col, out, with_c2c, with_clamp
):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(B * H):
        b = r // H
        i = r - b * H
        f_row = F[b, i]
        out_row = out[b, i]
        rm = r_mid[i]
        rh = r_half[i]
        g_row = gamma[i]
        z_row = z[b]
        scale = inv_n[b, i]
        post = h[b, i]
        sb = bound[b, i]
        if with_c2c:
            noise = c2c[b, i]
            col = c2c_col[b]
            for j in range(K):
                f = f_row[j]
                d = g_row[j] * (post * z_row[j])
                c = col[j]
                if c >= 0:  # a pulse is applied only where z_j != 0: only there is c2c noise
                    d *= 1 + noise[c]
                v = (rm[j] * f + rh[j] * abs(f)) * scale + d
                out_row[j] = min(max(v, lo[i, j] * sb), hi[i, j] * sb) if with_clamp else v
        elif with_clamp:
            lo_row = lo[i]
            hi_row = hi[i]
            for j in range(K):
                f = f_row[j]
                # f * (r+ if f > 0 else r-) written branch-free, so the loop vectorises
                v = (rm[j] * f + rh[j] * abs(f)) * scale + g_row[j] * (post * z_row[j])
                out_row[j] = min(max(v, lo_row[j] * sb), hi_row[j] * sb)
        else:
            for j in range(K):
                f = f_row[j]
                out_row[j] = (rm[j] * f + rh[j] * abs(f)) * scale + g_row[j] * (post * z_row[j])


def _array(t: Tensor) -> np.ndarray:
    return t.numpy() if t.is_contiguous() and not t.requires_grad else t.detach().contiguous().numpy()


def _launch(kernel: Callable[..., None], *args: object) -> None:
    """Run a kernel on torch's thread budget and restore torch's setting (numba shares libgomp)."""
    wanted = torch.get_num_threads()
    threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


def emulated_read(
    W: Tensor, F: Tensor, z: Tensor, bias_abs: Tensor, g_lt: Tensor, eps: float, energy: bool
) -> tuple[Tensor, ...]:
    """One pass over F (B, H, K) with W, bias_abs, g_lt (H, K) and z (B, K).

    Returns, each (B, H): (G z)_i unnormalised, n_i = ||G_i||_2 + eps, sum_j |F_ij| z_j^2,
    sum_j g_lt_ij z_j^2, sum_j bias_abs_ij |F_ij|, and the paper's per-row energy metric
    sum_j |G_ij| z_j^2 / n_i (an empty tensor unless ``energy``).
    """
    batch, hidden, _ = F.shape
    dot, n, ez, eg, eb = (F.new_empty((batch, hidden)) for _ in range(5))
    row_energy = F.new_empty((batch, hidden) if energy else (0, 0))
    arrays = (_array(t) for t in (W, F, z, bias_abs, g_lt))
    outs = (t.numpy() for t in (dot, n, ez, eg, eb, row_energy))
    _launch(_read_rows, *arrays, eps, *outs, energy)
    return dot, n, ez, eg, eb, row_energy


def emulated_update(
    F: Tensor,
    *,
    r_mid: Tensor,
    r_half: Tensor,
    gamma: Tensor,
    window: tuple[Tensor, Tensor] | None,
    inv_n: Tensor,
    bound: Tensor,
    h: Tensor,
    z: Tensor,
    c2c: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """F_t = clip(r(F) * F * inv_n + gamma * (h outer z) * (1 + c2c), lo * bound, hi * bound), new tensor.

    r(F) = r_mid + r_half * sign(F) (H, K), i.e. the retention r+ = r_mid + r_half of the G+ device
    where F > 0 and r- = r_mid - r_half of the G- device where F < 0. ``window``: None (no clip) or
    (lo, hi) (H, K) in weight units, scaled per row by ``bound`` (B, H). ``c2c``: None,
    or (noise (B, H, M), col (B, K) int64): the relative write noise of the synapses sample b writes,
    noise[b, i, col[b, j]], with col = -1 where z_j = 0 (no pulse). F is never overwritten.
    """
    out = torch.empty(F.shape, dtype=F.dtype)
    noise, col = c2c if c2c is not None else (F.new_empty((0, 0, 0)), torch.empty((0, 0), dtype=torch.int64))
    lo, hi = window if window is not None else (F.new_empty((0, 0)), F.new_empty((0, 0)))
    arrays = (_array(t) for t in (F, r_mid, r_half, gamma, lo, hi, inv_n, bound, h, z, noise, col))
    _launch(_update_rows, *arrays, out.numpy(), c2c is not None, window is not None)
    return out
