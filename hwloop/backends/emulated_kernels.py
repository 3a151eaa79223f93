"""One-pass CPU kernels of the emulated crossbar's read and update (no autograd).

Same scheme as ``hwloop.backends.fused`` (one pass over the short-term state per operation,
deterministic row sums), with the extra per-row quantities the device physics needs gathered in the
same pass: the read-noise / read-energy sums sum_j |F_ij| z_j^2 and sum_j g_lt_ij z_j^2, the
decay-bias power, the sign-dependent device retention (the positive part of F sits on G+, the
negative on G-), write noise and the conductance-window clamp. The read and the plain update visit
row i of four samples in one loop, so each per-synapse parameter row (W, bias, g_lt; retentions,
gamma) is loaded once for four rows of F: measured at H=64, K=2656, B=16, this makes the extra
parameter streams nearly free (one row at a time, the read took ~1.6-2x and the update ~1.2x the
time of the ideal kernels).
Output buffers come from numpy, whose allocator reuses freed pages (torch.empty faults fresh ones).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read_rows(W, F, z, bias_abs, g_lt, eps, dot, n, abs_f_z2, bias_rows, g_lt_z2):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(((B + 3) // 4) * H):  # row i of four samples at once: its parameters load once
        q = r // H
        i = r - q * H
        b0 = 4 * q
        b1, b2, b3 = (
            min(b0 + 1, B - 1),
            min(b0 + 2, B - 1),
            min(b0 + 3, B - 1),
        )  # the last group repeats B - 1
        w_row, ba, gl = W[i], bias_abs[i], g_lt[i]
        f0, f1, f2, f3 = F[b0, i], F[b1, i], F[b2, i], F[b3, i]
        z0, z1, z2, z3 = z[b0], z[b1], z[b2], z[b3]
        sq0 = F.dtype.type(0)  # accumulate in the arrays' own dtype, as torch does
        sq1 = sq2 = sq3 = ac0 = ac1 = ac2 = ac3 = ez0 = ez1 = ez2 = ez3 = sq0
        eb0 = eb1 = eb2 = eb3 = eg0 = eg1 = eg2 = eg3 = sq0
        for j in range(K):
            w, c, gg = w_row[j], ba[j], gl[j]
            f = f0[j]
            g, a, x, x2 = w + f, abs(f), z0[j], z0[j] * z0[j]
            sq0 += g * g
            ac0 += g * x
            ez0 += a * x2
            eb0 += c * a
            eg0 += gg * x2
            f = f1[j]
            g, a, x, x2 = w + f, abs(f), z1[j], z1[j] * z1[j]
            sq1 += g * g
            ac1 += g * x
            ez1 += a * x2
            eb1 += c * a
            eg1 += gg * x2
            f = f2[j]
            g, a, x, x2 = w + f, abs(f), z2[j], z2[j] * z2[j]
            sq2 += g * g
            ac2 += g * x
            ez2 += a * x2
            eb2 += c * a
            eg2 += gg * x2
            f = f3[j]
            g, a, x, x2 = w + f, abs(f), z3[j], z3[j] * z3[j]
            sq3 += g * g
            ac3 += g * x
            ez3 += a * x2
            eb3 += c * a
            eg3 += gg * x2
        for b, sq, ac, ez, eb, eg in (
            (b0, sq0, ac0, ez0, eb0, eg0),
            (b1, sq1, ac1, ez1, eb1, eg1),
            (b2, sq2, ac2, ez2, eb2, eg2),
            (b3, sq3, ac3, ez3, eb3, eg3),
        ):
            n[b, i] = np.sqrt(sq) + eps
            dot[b, i] = ac
            abs_f_z2[b, i] = ez
            bias_rows[b, i] = eb
            g_lt_z2[b, i] = eg


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _row_energy(W, F, z, n, row_energy):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(B * H):
        b = r // H
        i = r - b * H
        w_row = W[i]
        f_row = F[b, i]
        z_row = z[b]
        en = F.dtype.type(0)
        for j in range(K):
            en += abs(w_row[j] + f_row[j]) * (z_row[j] * z_row[j])
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
        else:
            lo_row = lo[i]
            hi_row = hi[i]
            for j in range(K):
                f = f_row[j]
                # f * (r+ if f > 0 else r-) written branch-free, so the loop vectorises
                v = (rm[j] * f + rh[j] * abs(f)) * scale + g_row[j] * (post * z_row[j])
                out_row[j] = min(max(v, lo_row[j] * sb), hi_row[j] * sb)


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _update_rows_plain(F, r_mid, r_half, gamma, coef, inv_n, h, z, out, coef_z):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(((B + 3) // 4) * H):  # row i of four samples at once: its parameters load once
        q = r // H
        i = r - q * H
        b0 = 4 * q
        b1, b2, b3 = min(b0 + 1, B - 1), min(b0 + 2, B - 1), min(b0 + 3, B - 1)
        f0, f1, f2, f3 = F[b0, i], F[b1, i], F[b2, i], F[b3, i]
        o0, o1, o2, o3 = out[b0, i], out[b1, i], out[b2, i], out[b3, i]
        z0, z1, z2, z3 = z[b0], z[b1], z[b2], z[b3]
        s0, s1, s2, s3 = inv_n[b0, i], inv_n[b1, i], inv_n[b2, i], inv_n[b3, i]
        h0, h1, h2, h3 = h[b0, i], h[b1, i], h[b2, i], h[b3, i]
        rm = r_mid[i]
        rh = r_half[i]
        g_row = gamma[i]
        c_row = coef[i]
        c0 = F.dtype.type(0)
        c1 = c2 = c3 = c0
        for j in range(K):
            # f * (r+ if f > 0 else r-) written branch-free, so the loop vectorises
            m, d, g, c = rm[j], rh[j], g_row[j], c_row[j]
            c0 += c * abs(z0[j])
            c1 += c * abs(z1[j])
            c2 += c * abs(z2[j])
            c3 += c * abs(z3[j])
            f = f0[j]
            o0[j] = (m * f + d * abs(f)) * s0 + g * (h0 * z0[j])
            f = f1[j]
            o1[j] = (m * f + d * abs(f)) * s1 + g * (h1 * z1[j])
            f = f2[j]
            o2[j] = (m * f + d * abs(f)) * s2 + g * (h2 * z2[j])
            f = f3[j]
            o3[j] = (m * f + d * abs(f)) * s3 + g * (h3 * z3[j])
        coef_z[b0, i], coef_z[b1, i], coef_z[b2, i], coef_z[b3, i] = c0, c1, c2, c3


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
    sum_j bias_abs_ij |F_ij|, sum_j g_lt_ij z_j^2, and the paper's per-row energy metric
    sum_j |G_ij| z_j^2 / n_i (a second pass, and an empty tensor unless ``energy``).
    """
    w, f, zz = _array(W), _array(F), _array(z)
    batch, hidden, _ = f.shape
    outs = tuple(np.empty((batch, hidden), f.dtype) for _ in range(5))
    _launch(_read_rows, w, f, zz, _array(bias_abs), _array(g_lt), eps, *outs)
    row_energy = np.empty((batch, hidden) if energy else (0, 0), f.dtype)
    if energy:
        _launch(_row_energy, w, f, zz, outs[1], row_energy)
    return tuple(torch.from_numpy(a) for a in (*outs, row_energy))


def emulated_update(
    F: Tensor,
    *,
    r_mid: Tensor,
    r_half: Tensor,
    gamma: Tensor,
    write_coef: Tensor,
    window: tuple[Tensor, Tensor] | None,
    inv_n: Tensor,
    bound: Tensor,
    h: Tensor,
    z: Tensor,
    c2c: tuple[Tensor, Tensor] | None,
) -> tuple[Tensor, Tensor | None]:
    """F_t = clip(r(F) * F * inv_n + gamma * (h outer z) * (1 + c2c), lo * bound, hi * bound), new tensor.

    r(F) = r_mid + r_half * sign(F) (H, K), i.e. the retention r+ = r_mid + r_half of the G+ device
    where F > 0 and r- = r_mid - r_half of the G- device where F < 0. ``window``: None (no clip) or
    (lo, hi) (H, K) in weight units, scaled per row by ``bound`` (B, H). ``c2c``: None,
    or (noise (B, H, M), col (B, K) int64): the relative write noise of the synapses sample b writes,
    noise[b, i, col[b, j]], with col = -1 where z_j = 0 (no pulse). F is never overwritten.
    Also returns sum_j write_coef_ij |z_bj| (B, H) when no clip and no c2c (gathered in the same
    pass), else None.
    """
    f = _array(F)
    out = np.empty_like(f)
    if c2c is None and window is None:
        coef_z = np.empty(f.shape[:2], f.dtype)
        arrays = (_array(t) for t in (r_mid, r_half, gamma, write_coef, inv_n, h, z))
        _launch(_update_rows_plain, f, *arrays, out, coef_z)
        return torch.from_numpy(out), torch.from_numpy(coef_z)
    noise, col = c2c if c2c is not None else (F.new_empty((0, 0, 0)), torch.empty((0, 0), dtype=torch.int64))
    lo, hi = window if window is not None else (F.new_empty((0, 0)), F.new_empty((0, 0)))
    arrays = (_array(t) for t in (r_mid, r_half, gamma, lo, hi, inv_n, bound, h, z, noise, col))
    _launch(_update_rows, f, *arrays, out, c2c is not None, window is not None)
    return torch.from_numpy(out), None
