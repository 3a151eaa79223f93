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
from typing import NamedTuple

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
        if b0 + 4 > B:  # the remainder of the batch: one sample at a time
            w_row, ba, gl = W[i], bias_abs[i], g_lt[i]
            for b in range(b0, B):
                f_row, z_row = F[b, i], z[b]
                sq = F.dtype.type(0)
                ac = ez = eb = eg = sq
                for j in range(K):
                    f, x = f_row[j], z_row[j]
                    g, a, x2 = w_row[j] + f, abs(f), x * x
                    sq += g * g
                    ac += g * x
                    ez += a * x2
                    eb += ba[j] * a
                    eg += gl[j] * x2
                n[b, i] = np.sqrt(sq) + eps
                dot[b, i] = ac
                abs_f_z2[b, i] = ez
                bias_rows[b, i] = eb
                g_lt_z2[b, i] = eg
        else:
            b1, b2, b3 = b0 + 1, b0 + 2, b0 + 3
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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment and finaliser constants
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9)
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)  # fmt: skip
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549671010984292e00,
      4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


@njit(inline="always")
def _mix64(x):  # pragma: no cover - SplitMix64's finaliser: a bijection of uint64 with full avalanche
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(inline="always")
def _quantile(u):  # pragma: no cover - standard normal quantile, Acklam (relative error < 1.2e-9)
    p = min(u, 1.0 - u)
    if p >= _P_LOW:  # central region
        q = u - 0.5
        r = q * q
        num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
        return num / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
    q = np.sqrt(-2.0 * np.log(p))
    x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
        (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
    )
    return x if u < 0.5 else -x


TABLE_BITS = 14  # the quantile table: 2^14 bins in u, linear inside a bin
_BINS = 1 << TABLE_BITS
_SHIFT = np.uint64(32 - TABLE_BITS)
_LOW32 = np.uint64(0xFFFFFFFF)
_FRAC = 1.0 / (1 << (32 - TABLE_BITS))


@njit(cache=True)
def _build_table(bins):  # pragma: no cover
    table = np.empty(bins + 1)
    for k in range(1, bins):
        table[k] = _quantile(k / bins)
    table[0], table[bins] = -np.inf, np.inf  # never read: the outer bins take the exact path
    return table


QUANTILES = _build_table(_BINS)


@njit(inline="always")
def _normal_of(bits, table):  # pragma: no cover
    """A standard normal from 32 random bits: inverse CDF, the top 14 bits pick the bin in u, the
    other 18 the place in it; linear in the bin, exact (Acklam) in the two outer bins of each side."""
    k = np.int64(bits >> _SHIFT)
    frac = (np.float64(bits & np.uint64((1 << (32 - TABLE_BITS)) - 1)) + 0.5) * _FRAC
    if k < 2 or k >= _BINS - 2:  # 2.4e-4 of the draws: the curvature of the tails
        return _quantile((k + frac) / _BINS)
    a = table[k]
    return a + frac * (table[k + 1] - a)


@njit(cache=True)
def row_key(key, row):  # pragma: no cover
    """The key of the write-noise stream of row ``row`` = b H + i in the stream of one update."""
    return _mix64(key + (row + np.uint64(1)) * _GOLDEN)


@njit(inline="always")
def _row_key(key, row):  # pragma: no cover
    return _mix64(key + (row + np.uint64(1)) * _GOLDEN)


@njit(cache=True)
def _pulsed_columns(z, cols, nnz):  # pragma: no cover
    B, K = z.shape
    for b in range(B):
        m = 0
        for j in range(K):
            if z[b, j] != 0:
                cols[b, m] = j
                m += 1
        nnz[b] = m


REFRESH_DOMAIN = 0x5245465245534821  # xor-ed into an update's key: the refresh stream is another stream


_A32 = tuple(np.float32(a) for a in _A)  # Acklam's central coefficients in float32
_B32 = tuple(np.float32(b) for b in _B)
_ONE32, _HALF32 = np.float32(1.0), np.float32(0.5)
_U24 = np.float32(2.0**-24)
_TAIL_LOW = np.uint32(int(_P_LOW * 2**32))  # 32-bit draws below this (or above _TAIL_HIGH): the tails
_TAIL_HIGH = np.uint32(2**32 - 1 - int(_P_LOW * 2**32))


@njit(inline="always", fastmath=True)
def _central(bits):  # pragma: no cover - Acklam's central region in float32, branch-free: loops vectorise
    """The normal quantile of u = (top 24 bits of ``bits`` + 1/2) 2^-24 (float32, fast-math division)."""
    q = (np.float32(bits >> np.uint32(8)) + _HALF32) * _U24 - _HALF32
    r = q * q
    num = (((((_A32[0] * r + _A32[1]) * r + _A32[2]) * r + _A32[3]) * r + _A32[4]) * r + _A32[5]) * q
    return num / (((((_B32[0] * r + _B32[1]) * r + _B32[2]) * r + _B32[3]) * r + _B32[4]) * r + _ONE32)


@njit(inline="always")
def _dense_normals(key, n, bits, out, tails, table):  # pragma: no cover
    """out[:n] = n standard normals of stream ``key`` for every column of a row (bits: uint32, out,
    tails: int64, each holding n + 1).

    Word w of the stream gives draw w (its high 32 bits) and draw half + w (its low 32 bits),
    half = ceil(n / 2). A 32-bit draw b in the central 95.15 % (u = b 2^-32 in [0.02425, 0.97575]) is
    the quantile of u = (b >> 8 + 1/2) 2^-24 by Acklam's central formula, in float32 in a loop that
    vectorises (relative error ~1e-6: float32 rounding and a fast-math division); the 4.85 % outside
    take the table with all 32 bits (``_normal_of``: linear in 2^14 bins, exact in the outermost two
    per side), in float64.
    """
    half = (n + 1) // 2
    for w in range(half):
        x = _mix64(key + np.uint64(w + 1) * _GOLDEN)
        bits[w] = np.uint32(x >> np.uint64(32))
        bits[half + w] = np.uint32(x & _LOW32)
    for m in range(2 * half):
        out[m] = _central(bits[m])
    count = 0  # the tails are gathered without a branch: 1 in 20 is too unpredictable
    for m in range(2 * half):
        tails[count] = m
        b = bits[m]
        count += (b < _TAIL_LOW) | (b > _TAIL_HIGH)
    for t in range(count):
        m = tails[t]
        out[m] = _normal_of(np.uint64(bits[m]), table)


@njit(cache=True, fastmath=True, error_model="numpy")
def _row_normals(key, n, bits, out, tails, table):  # pragma: no cover
    """``_dense_normals`` compiled on its own with fast-math, so that its central loop vectorises with a
    fast division whatever the kernel calling it was compiled with (every kernel draws through this)."""
    _dense_normals(key, n, bits, out, tails, table)


@njit(cache=True, error_model="numpy")
def normals(key, n, table):  # pragma: no cover - the noise stream of one row, for tests and the docs
    """The ``n`` standard normals of stream ``key``, as a row's write noise (n = its pulsed columns) or
    its refresh (n = K) draws them."""
    bits, out = np.empty(n + 1, np.uint32), np.empty(n + 1)
    _row_normals(key, n, bits, out, np.empty(n + 1, np.int64), table)
    return out[:n]


@njit(inline="always")
def _refreshed_row(
    key, f_row, a_row, s, read_var, c2c, two_g_min, gpw, u, eps, tails, dst, table
):  # pragma: no cover
    """dst = the row as a refresh leaves it: f + sqrt(s^2 read_var g_pair + (c2c f)^2) eps on analog
    synapses (a_row 1; digital 0: untouched), g_pair = 2 g_min + |f| / s gpw (S, both devices of the
    short-term pair). Returns (sum of g_pair, sum of |new|) over the analog synapses."""
    K = f_row.shape[0]
    _row_normals(key, K, u, eps, tails, table)
    sum_g = 0.0
    sum_new = 0.0
    k_read = s * s * read_var
    gpw_s = gpw / s
    for j in range(K):
        f = np.float64(f_row[j])
        a = a_row[j]
        g_pair = two_g_min + abs(f) * gpw_s
        cf = c2c * f
        new = f + a * np.sqrt(k_read * g_pair + cf * cf) * eps[j]
        dst[j] = new
        sum_g += a * g_pair
        sum_new += a * abs(new)
    return sum_g, sum_new


@njit(inline="always")
def _noise_row(key, b, H, i, n_b, col, sig, table, u, eps, tails, mult):  # pragma: no cover
    """mult[j] = 1 + sigma_ij eps for the n_b pulsed columns col[:n_b] of row (b, i) (mult is all 1):
    eps[m] the m-th of the row's n_b normals (``_dense_normals``)."""
    _row_normals(_row_key(key, np.uint64(b * H + i)), n_b, u, eps, tails, table)
    for m in range(n_b):
        j = col[m]
        mult[j] = 1 + sig[j] * eps[m]


@njit(inline="always")
def _update_one(
    f_row, o_row, z_row, s, post, sb, rm, rh, g_row, c_row, lo_row, hi_row, mult, with_clamp
):  # pragma: no cover
    """One row of one sample (``_update_rows`` for a batch remainder); returns coef . |z|."""
    acc = f_row.dtype.type(0)
    if with_clamp:
        for j in range(f_row.shape[0]):
            f = f_row[j]
            acc += c_row[j] * abs(z_row[j])
            v = (rm[j] * f + rh[j] * abs(f)) * s + g_row[j] * (post * z_row[j]) * mult[j]
            o_row[j] = min(max(v, lo_row[j] * sb), hi_row[j] * sb)
    else:
        for j in range(f_row.shape[0]):
            f = f_row[j]
            acc += c_row[j] * abs(z_row[j])
            o_row[j] = (rm[j] * f + rh[j] * abs(f)) * s + g_row[j] * (post * z_row[j]) * mult[j]
    return acc


@njit(parallel=True, cache=True, fastmath={"reassoc"}, error_model="numpy")
def _update_rows(
    F,
    r_mid,
    r_half,
    gamma,
    coef,
    lo,
    hi,
    inv_n,
    bound,
    h,
    z,
    cols,
    nnz,
    key,
    sigma,
    table,
    ones,
    out,
    coef_z,
    refresh,
    s_prev,
    refresh_key,
    analog,
    refresh_consts,
    refreshed,
    refresh_sums,
    with_clamp,
    with_c2c,
    with_refresh,
):  # pragma: no cover
    B, H, K = F.shape
    for r in prange(((B + 3) // 4) * H):  # row i of four samples at once: its parameters load once
        q = r // H
        i = r - q * H
        b0 = 4 * q
        rm, rh, g_row, c_row, sig = r_mid[i], r_half[i], gamma[i], coef[i], sigma[i]
        lo_row, hi_row = (lo[i], hi[i]) if with_clamp else (rm, rm)
        # write noise as a factor 1 + sigma eps per pulsed synapse, on rows of ones of this thread
        thread = numba.get_thread_id()
        mult = ones[thread]
        eps = np.empty(K + 1)
        u = np.empty(K + 1, np.uint32)
        tails = np.empty(K + 1, np.int64)
        if with_c2c:
            for b in range(b0, min(b0 + 4, B)):
                _noise_row(key, b, H, i, nnz[b], cols[b], sig, table, u, eps, tails, mult[b - b0])
        # refreshed rows (exact mode): the array's read + erase + rewrite, in a buffer of this thread
        f_in = (F[b0, i], F[min(b0 + 1, B - 1), i], F[min(b0 + 2, B - 1), i], F[min(b0 + 3, B - 1), i])
        if with_refresh:
            bufs = refreshed[thread]
            read_var, c2c_r, two_g_min, gpw = refresh_consts  # (weight units)^2 / S, 1, S, S
            for b in range(b0, min(b0 + 4, B)):
                if refresh[b, i]:
                    rk = _row_key(np.uint64(refresh_key), np.uint64(b * H + i))
                    dst = bufs[b - b0]
                    s_b = np.float64(s_prev[b, i])
                    sg, sn = _refreshed_row(
                        rk, F[b, i], analog[i], s_b, read_var, c2c_r, two_g_min, gpw, u, eps, tails, dst,
                        table,
                    )  # fmt: skip
                    refresh_sums[b, i, 0] = sg
                    refresh_sums[b, i, 1] = sn
            f_in = (
                bufs[0] if refresh[b0, i] else f_in[0],
                bufs[1] if b0 + 1 < B and refresh[b0 + 1, i] else f_in[1],
                bufs[2] if b0 + 2 < B and refresh[b0 + 2, i] else f_in[2],
                bufs[3] if b0 + 3 < B and refresh[b0 + 3, i] else f_in[3],
            )
        if b0 + 4 > B:  # the remainder of the batch: one sample at a time
            for b in range(b0, B):
                coef_z[b, i] = _update_one(
                    f_in[b - b0],
                    out[b, i],
                    z[b],
                    inv_n[b, i],
                    h[b, i],
                    bound[b, i] if with_clamp else rm[0],
                    rm,
                    rh,
                    g_row,
                    c_row,
                    lo_row,
                    hi_row,
                    mult[b - b0],
                    with_clamp,
                )
        else:
            b1, b2, b3 = b0 + 1, b0 + 2, b0 + 3
            f0, f1, f2, f3 = f_in
            o0, o1, o2, o3 = out[b0, i], out[b1, i], out[b2, i], out[b3, i]
            z0, z1, z2, z3 = z[b0], z[b1], z[b2], z[b3]
            s0, s1, s2, s3 = inv_n[b0, i], inv_n[b1, i], inv_n[b2, i], inv_n[b3, i]
            h0, h1, h2, h3 = h[b0, i], h[b1, i], h[b2, i], h[b3, i]
            n0, n1, n2, n3 = mult[0], mult[1], mult[2], mult[3]
            c0 = F.dtype.type(0)
            c1 = c2 = c3 = c0
            if with_clamp:
                l0, l1, l2, l3 = bound[b0, i], bound[b1, i], bound[b2, i], bound[b3, i]
                for j in range(K):
                    # f * (r+ if f > 0 else r-) written branch-free, so the loop vectorises
                    m, d, g, c, lw, hw = rm[j], rh[j], g_row[j], c_row[j], lo_row[j], hi_row[j]
                    c0 += c * abs(z0[j])
                    c1 += c * abs(z1[j])
                    c2 += c * abs(z2[j])
                    c3 += c * abs(z3[j])
                    f = f0[j]
                    o0[j] = min(max((m * f + d * abs(f)) * s0 + g * (h0 * z0[j]) * n0[j], lw * l0), hw * l0)
                    f = f1[j]
                    o1[j] = min(max((m * f + d * abs(f)) * s1 + g * (h1 * z1[j]) * n1[j], lw * l1), hw * l1)
                    f = f2[j]
                    o2[j] = min(max((m * f + d * abs(f)) * s2 + g * (h2 * z2[j]) * n2[j], lw * l2), hw * l2)
                    f = f3[j]
                    o3[j] = min(max((m * f + d * abs(f)) * s3 + g * (h3 * z3[j]) * n3[j], lw * l3), hw * l3)
            else:
                for j in range(K):
                    m, d, g, c = rm[j], rh[j], g_row[j], c_row[j]
                    c0 += c * abs(z0[j])
                    c1 += c * abs(z1[j])
                    c2 += c * abs(z2[j])
                    c3 += c * abs(z3[j])
                    f = f0[j]
                    o0[j] = (m * f + d * abs(f)) * s0 + g * (h0 * z0[j]) * n0[j]
                    f = f1[j]
                    o1[j] = (m * f + d * abs(f)) * s1 + g * (h1 * z1[j]) * n1[j]
                    f = f2[j]
                    o2[j] = (m * f + d * abs(f)) * s2 + g * (h2 * z2[j]) * n2[j]
                    f = f3[j]
                    o3[j] = (m * f + d * abs(f)) * s3 + g * (h3 * z3[j]) * n3[j]
            coef_z[b0, i], coef_z[b1, i], coef_z[b2, i], coef_z[b3, i] = c0, c1, c2, c3
        if with_c2c:  # back to ones for the next row
            for b in range(b0, min(b0 + 4, B)):
                row, col = mult[b - b0], cols[b]
                for m in range(nnz[b]):
                    row[col[m]] = 1


def write_noise_key(seed: int, step: int) -> int:
    """Key (uint64 as int) of the write-noise stream of update ``step`` of a backend seeded ``seed``."""
    mask = (1 << 64) - 1

    def mix(x: int) -> int:
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    return mix((mix(seed & mask) + step * 0x9E3779B97F4A7C15) & mask)


_MAX_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


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


class Refresh(NamedTuple):
    """Exact mode's row refreshes for ``emulated_update``.

    rows (B, H) bool: the rows refreshed this step; s_prev (B, H): their scale before it; key: the
    step's refresh-noise key; analog (H, K) float64: 1 where F sits on devices, 0 on digital synapses
    (left untouched); consts: (read-noise variance per S of g_pair at scale 1, (weight units)^2 / S;
    relative c2c noise of the rewrite; 2 g_min, S; S per weight unit).
    """

    rows: Tensor
    s_prev: Tensor
    key: int
    analog: np.ndarray
    consts: tuple[float, float, float, float]


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
    c2c: tuple[Tensor, int] | None,
    refresh: Refresh | None = None,
) -> tuple[Tensor, Tensor, np.ndarray | None]:
    """F_t = clip(r(F) * F * inv_n + gamma * (h outer z) * (1 + c2c), lo * bound, hi * bound), new tensor.

    r(F) = r_mid + r_half * sign(F) (H, K), i.e. the retention r+ = r_mid + r_half of the G+ device
    where F > 0 and r- = r_mid - r_half of the G- device where F < 0. ``window``: None (no clip) or
    (lo, hi) (H, K) in weight units, scaled per row by ``bound`` (B, H). ``c2c``: None, or
    (sigma (H, K), key): the relative write noise sigma_ij * eps of each pulsed synapse (z_bj != 0;
    no pulse, no noise), eps the m-th standard normal of row (b, i)'s stream for its m-th pulsed column
    (``normals(row_key(key, b * H + i), ...)``); nothing is drawn for the synapses without a pulse.
    ``refresh``: None, or the exact mode's row refreshes (``Refresh``): each flagged row (b, i) is first
    rewritten as the array does it (``_refreshed_row``: read noise through the old scale s_prev and the
    rewrite's c2c noise, one normal per synapse from stream ``row_key(key, b * H + i)`` of
    ``normals``), then decays and is written as any row.
    F is never overwritten. Also returns sum_j write_coef_ij |z_bj| (B, H), gathered in the same pass,
    and with ``refresh`` a (B, H, 2) float64 array: per refreshed row the sums over its analog synapses
    of g_pair (S) and of |F| rewritten (weight units), for the refresh energy (0 on other rows).
    """
    f = _array(F)
    out = np.empty_like(f)
    coef_z = np.empty(f.shape[:2], f.dtype)
    zz = _array(z)
    if c2c is not None:
        sigma, key = _array(c2c[0]), c2c[1]
        cols, nnz = np.empty(zz.shape, np.int64), np.empty(zz.shape[0], np.int64)
        _pulsed_columns(zz, cols, nnz)
    else:
        sigma, key = f[0, :0], 0
        cols, nnz = np.empty((0, 0), np.int64), np.empty(0, np.int64)
    ones = np.ones((_MAX_THREADS, 4, f.shape[2]), f.dtype)  # per thread: write-noise factors of 4 rows
    lo, hi = (_array(t) for t in window) if window is not None else (f[:0, 0], f[:0, 0])
    params = (_array(t) for t in (r_mid, r_half, gamma, write_coef))
    rows = (_array(t) for t in (inv_n, bound, h))
    if refresh is not None:
        rows_r, s_prev = _array(refresh.rows), _array(refresh.s_prev)
        analog, consts, key_r = refresh.analog, refresh.consts, refresh.key
        refreshed = np.empty((_MAX_THREADS, 4, f.shape[2]), f.dtype)
        sums = np.zeros((*f.shape[:2], 2))
    else:
        rows_r, s_prev = np.zeros((0, 0), np.bool_), np.zeros((0, 0), f.dtype)
        analog, consts, key_r = np.empty((0, 0)), (0.0, 0.0, 0.0, 0.0), 0
        refreshed, sums = np.empty((0, 0, 0), f.dtype), np.empty((0, 0, 2))
    flags = (window is not None, c2c is not None, refresh is not None)
    _launch(
        _update_rows,
        f,
        *params,
        lo,
        hi,
        *rows,
        zz,
        cols,
        nnz,
        np.uint64(key),
        sigma,
        QUANTILES,
        ones,
        out,
        coef_z,
        rows_r,
        s_prev,
        np.uint64(key_r),
        analog,
        consts,
        refreshed,
        sums,
        *flags,
    )
    return torch.from_numpy(out), torch.from_numpy(coef_z), sums if refresh is not None else None
