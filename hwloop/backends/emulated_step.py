"""The emulated crossbar's whole STPN step in one numba pass over the synapses (no autograd).

``EmulatedCrossbar.step`` composed from ``read`` and ``update`` costs two kernel passes over F, about
forty small torch operations (read noise, refresh decision, energy counters) and two dispatches of
~35 arguments each: at batch 1 that Python alone took longer than the ideal backend's whole step.
Here one kernel does, per row (b, i) of F: the read sums (G z, ||G||, sum |F| z^2, the decay-bias
power, sum g_lt z^2), the read noise (the caller's pre-drawn normals, so its stream is the one
``read`` draws), h = tanh(y + bias), exact normalisation's scale and refresh decision, the refresh
itself, decay, the write with its cycle-to-cycle noise, the window clamp, and the energy sums; and
after the rows, the step's totals for the energy counters. The formulas and the noise streams are
those of ``emulated_read`` / ``emulated_update`` (``emulated_kernels``) and ``EmulatedCrossbar``'s
Python around them, so the step equals read-then-update to float rounding.

Memory layout, for bandwidth (batch 1 streams every per-synapse array once per step): the
parameters every synapse needs (bias_abs, r_mid, r_half, window low and high) are one dense
(5 or 6, H, K) block, streamed; the ones only a pulsed synapse (z_bj != 0) needs (g_lt, write
energy coefficient, gamma, c2c sigma, ...) are gathered at the row's pulsed columns only. Rows are
visited i-major (row i of every sample in turn), so a parameter row is loaded from memory once per
step and read from cache for the other samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from hwloop.backends.emulated_kernels import QUANTILES, _array, _launch, _row_key, _row_normals

# index of each total in ``StepConstants``' totals row (float64, summed over the step's rows)
READ_SUM, BIAS_SUM, WRITTEN_SUM, REFRESH_G_SUM, REFRESH_NEW_SUM, REFRESHED_ROWS, MAX_GAIN = range(7)
TOTALS = 7
# dense block rows and sparse block rows
D_BIAS_ABS, D_R_MID, D_R_HALF, D_LO, D_HI, D_BIAS_SGN = range(6)
S_G_LT, S_COEF_ABS, S_GAMMA, S_SIGMA, S_ANALOG, S_COEF_SGN = range(6)
# scalars
C_EPS, C_READ_VAR, C_TWO_G_MIN, C_GPW, C_MAX_GAIN, C_REFRESH_READ_VAR, C_REFRESH_C2C = range(7)


class StepConstants(NamedTuple):
    """Per-step constants of one programmed array, built once by ``EmulatedCrossbar``.

    W (H, K): the long-term weights. row_bounds (3, H) float64, per row: the largest retention
    max_j r_mid + |r_half|, the narrowest window min_j min(-lo, hi) (weight units at scale 1) and the
    largest write factor max_j |gamma| (1 + 6.5 sigma) (|eps| < 6.4 from 32-bit draws); with them a
    row whose step cannot reach its window skips the clamp (an exact no-op there; batch 1 only: at
    batch >= 4 the clamp, with the window rows in cache, costs less than the pass that proves it).
    dense (6, H, K): bias_abs (V^2 S per weight unit of |F|),
    r_mid, r_half (retention r+ = r_mid + r_half on F > 0, r- = r_mid - r_half on F < 0), window
    lo, hi (weight units, or unused), bias_sgn (or unused). sparse (6, H, K): g_lt of both devices
    of a read synapse (S), write-energy coefficient |gamma| g (S per weight unit), effective gamma,
    c2c sigma (0 on digital synapses), analog (1 where F sits on devices), coef_sgn (or unused);
    sparse_t (6, K, H): the same column-major, for the gathers at the pulsed columns. zeros (K,): a row
    of zeros, read in cache for bias_abs when the energy counters are off (the bias tables are then
    not streamed, and the read sums' loop, so the rounding of G z and n, stays the same).
    consts (7,) float64: norm epsilon, read-noise variance per S (weight units^2 / S; 0: no read
    noise), 2 g_min (S), S per weight unit, max write gain, the refresh read's noise variance per S
    (0: none), the rewrite's relative c2c sigma. flags: exact, clamp, c2c, read noise, counters,
    bias_sgn, coef_sgn.
    """

    W: np.ndarray
    row_bounds: np.ndarray
    dense: np.ndarray
    sparse: np.ndarray
    sparse_t: np.ndarray
    zeros: np.ndarray
    consts: np.ndarray
    flags: tuple[bool, bool, bool, bool, bool, bool, bool]


_FLAGS = {"reassoc"}  # row sums as SIMD partial sums (as torch's reductions); nothing else of fast-math
# Each loop of a row is a function of its own (not inlined): compiled alone, each vectorises, which
# LLVM would not always do inside the whole step's body (too many arrays for its runtime alias checks).


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _read_sums(w_row, f_row, z_row, ba):  # pragma: no cover
    """sum g^2, sum g z, sum |f| z^2, sum bias_abs |f| over a row, g = w + f."""
    sq = f_row.dtype.type(0)
    dot = ez = eb = sq
    for j in range(f_row.shape[0]):
        f, x = f_row[j], z_row[j]
        g, a = w_row[j] + f, abs(f)
        sq += g * g
        dot += g * x
        ez += a * (x * x)
        eb += ba[j] * a
    return sq, dot, ez, eb


@njit(cache=True, error_model="numpy")
def _abs_max_bits(bits_row, mask):  # pragma: no cover
    """max_j |f_j| as the bit pattern of a float (sign bit masked off): integer max vectorises, a float
    max reduction does not (it must order NaNs)."""
    am = bits_row.dtype.type(0)
    for j in range(bits_row.shape[0]):
        v = bits_row[j] & mask
        am = v if v > am else am
    return am


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _dot(a_row, f_row):  # pragma: no cover
    acc = f_row.dtype.type(0)
    for j in range(f_row.shape[0]):
        acc += a_row[j] * f_row[j]
    return acc


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _energy_sum(w_row, f_row, z_row):  # pragma: no cover
    """The paper's energy metric's row sum: sum |w + f| z^2."""
    en = f_row.dtype.type(0)
    for j in range(f_row.shape[0]):
        x = z_row[j]
        en += abs(w_row[j] + f_row[j]) * (x * x)
    return en


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pulsed_sums(gl, co, z_row, col, nb):  # pragma: no cover
    """Over the pulsed columns col[:nb] (z = 0 adds nothing): sum g_lt z^2, sum coef |z|, sum z^2."""
    eg = z_row.dtype.type(0)
    cz = zsq = eg
    for m in range(nb):
        j = col[m]
        x = z_row[j]
        x2 = x * x
        eg += gl[j] * x2
        cz += co[j] * abs(x)
        zsq += x2
    return eg, cz, zsq


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pulsed_dot(cs, z_row, col, nb):  # pragma: no cover
    acc = z_row.dtype.type(0)
    for m in range(nb):
        j = col[m]
        acc += cs[j] * z_row[j]
    return acc


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pulsed_sums_t(gl_t, co_t, i, z_row, col, nb):  # pragma: no cover
    """``_pulsed_sums`` of row i with g_lt and coef column-major (K, H)."""
    eg = z_row.dtype.type(0)
    cz = zsq = eg
    for m in range(nb):
        j = col[m]
        x = z_row[j]
        x2 = x * x
        eg += gl_t[j, i] * x2
        cz += co_t[j, i] * abs(x)
        zsq += x2
    return eg, cz, zsq


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _pulsed_dot_t(cs_t, i, z_row, col, nb):  # pragma: no cover
    acc = z_row.dtype.type(0)
    for m in range(nb):
        j = col[m]
        acc += cs_t[j, i] * z_row[j]
    return acc


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _decay(f_row, rm, rh, inv, o):  # pragma: no cover
    """o = r(f) f inv: r+ = rm + rh on f > 0, r- = rm - rh on f < 0, written branch-free."""
    for j in range(f_row.shape[0]):
        f = f_row[j]
        o[j] = (rm[j] * f + rh[j] * abs(f)) * inv


@njit(inline="always", fastmath=_FLAGS, error_model="numpy")
def _rewritten(f, a, eps, k_read, gpw_s, tgm, c2):  # pragma: no cover
    """One synapse of a refreshed row, read, erased and rewritten: (f + a sqrt(k_read g_pair + (c2 f)^2)
    eps, g_pair), g_pair = tgm + |f| gpw_s (a: 1 analog, 0 digital). Inlined where it is used."""
    g_pair = tgm + abs(f) * gpw_s
    cf = c2 * f
    return f + a * np.sqrt(k_read * g_pair + cf * cf) * eps, g_pair


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _refresh(f_row, an, eps, dst, k_read, gpw_s, tgm, c2):  # pragma: no cover
    """A refreshed row (read, erase, rewrite: ``EmulatedCrossbar._refresh_of``) into dst:
    new = f + an sqrt(k_read g_pair + (c2 f)^2) eps, g_pair = tgm + |f| gpw_s (an: 1 analog, 0 digital).
    Returns the sums over the analog synapses of g_pair (S) and |new| (weight units)."""
    sum_g = f_row.dtype.type(0)
    sum_new = sum_g
    for j in range(f_row.shape[0]):
        a = an[j]
        new, g_pair = _rewritten(f_row[j], a, eps[j], k_read, gpw_s, tgm, c2)
        dst[j] = new
        sum_g += a * g_pair
        sum_new += a * abs(new)
    return np.float64(sum_g), np.float64(sum_new)


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _writes(o, ga_t, sg_t, i, z_row, col, nb, eps, hb, with_c2c):  # pragma: no cover
    """o += gamma (h z) (1 + sigma eps_m) at the pulsed columns col[:nb] of row i (eps_m: the m-th's
    normal); gamma and sigma column-major (K, H)."""
    one = o.dtype.type(1)
    for m in range(nb):
        j = col[m]
        mult = o.dtype.type(one + sg_t[j, i] * eps[m]) if with_c2c else one
        o[j] = o[j] + ga_t[j, i] * (hb * z_row[j]) * mult


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _update(f_row, rm, rh, ga, z_row, e, inv, hb, o):  # pragma: no cover
    """o = r(f) f inv + gamma (h z) (1 + e): decay of every synapse and the write of the pulsed ones
    (z = 0 writes nothing), e the relative c2c noise of each write (0 where none)."""
    one = o.dtype.type(1)
    for j in range(f_row.shape[0]):
        f = f_row[j]
        o[j] = (rm[j] * f + rh[j] * abs(f)) * inv + ga[j] * (hb * z_row[j]) * (one + e[j])


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _update_clamped(f_row, rm, rh, ga, z_row, e, inv, hb, o, lo, hi, s):  # pragma: no cover
    """``_update`` clipped to the window [lo s, hi s] (as selects: min / max branch on NaN)."""
    one = o.dtype.type(1)
    for j in range(f_row.shape[0]):
        f = f_row[j]
        v = (rm[j] * f + rh[j] * abs(f)) * inv + ga[j] * (hb * z_row[j]) * (one + e[j])
        low, high = lo[j] * s, hi[j] * s
        v = low if v < low else v
        o[j] = high if v > high else v


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _update_refreshed(
    f_row, an, eps, k_read, gpw_s, tgm, c2, rm, rh, ga, z_row, e, inv, hb, o, lo, hi, s, clamp
):  # pragma: no cover
    """A refreshed row's ``_refresh`` and its ``_update`` (``_update_clamped`` if ``clamp``) in one
    pass: the rewritten value (the same expression as ``_refresh``'s, in F's dtype) is decayed and
    written from a register instead of a row buffer. Returns ``_refresh``'s sums."""
    one = o.dtype.type(1)
    sum_g = f_row.dtype.type(0)
    sum_new = sum_g
    for j in range(f_row.shape[0]):
        a = an[j]
        new, g_pair = _rewritten(f_row[j], a, eps[j], k_read, gpw_s, tgm, c2)
        sum_g += a * g_pair
        sum_new += a * abs(new)
        v = (rm[j] * new + rh[j] * abs(new)) * inv + ga[j] * (hb * z_row[j]) * (one + e[j])
        if clamp:
            low, high = lo[j] * s, hi[j] * s
            v = low if v < low else v
            v = high if v > high else v
        o[j] = v
    return np.float64(sum_g), np.float64(sum_new)


@njit(cache=True, fastmath=_FLAGS, error_model="numpy")
def _clamp(o, lo, hi, s):  # pragma: no cover
    """o = clip(o, lo s, hi s), as two selects (min / max branch on NaN and do not vectorise)."""
    for j in range(o.shape[0]):
        v, low, high = o[j], lo[j] * s, hi[j] * s
        v = low if v < low else v
        o[j] = high if v > high else v


@njit(parallel=True, cache=True, fastmath={"reassoc"}, error_model="numpy")
def _step_rows(
    W,
    F,
    F_bits,
    row_bounds,
    z,
    bias,
    dense,
    sparse,
    sparse_t,
    zeros,
    consts,
    read_noise,
    s_prev,
    write_key,
    refresh_key,
    table,
    cols,
    nnz,
    bits,
    scratch,
    tails,
    h_out,
    out,
    scale_out,
    row_energy,
    row_stats,
    totals,
    exact,
    with_clamp,
    with_c2c,
    with_read_noise,
    counting,
    with_bias_sgn,
    with_coef_sgn,
    with_energy,
):  # pragma: no cover - compiled by numba
    B, H, K = F.shape
    zero = F.dtype.type(0)
    one = F.dtype.type(1)
    z_max = np.empty(B, F.dtype)
    for b in range(B):  # the pulsed columns of each sample: only these are written
        m = 0
        zm = zero
        for j in range(K):
            if z[b, j] != 0:
                cols[b, m] = j
                m += 1
                zm = max(zm, abs(z[b, j]))
        nnz[b] = m
        z_max[b] = zm
    abs_mask = F_bits.dtype.type(0)
    abs_mask = ~abs_mask >> F_bits.dtype.type(1)  # every bit but the sign
    eps_norm = F.dtype.type(consts[C_EPS])
    read_var, two_g_min, gpw = consts[C_READ_VAR], consts[C_TWO_G_MIN], consts[C_GPW]
    max_gain = F.dtype.type(consts[C_MAX_GAIN])
    refresh_var, refresh_c2c = consts[C_REFRESH_READ_VAR], consts[C_REFRESH_C2C]
    for i in prange(H):  # row i of every sample: its parameter rows load from memory once
        thread = numba.get_thread_id()
        u, eps, tl, e = bits[thread], scratch[thread, 0], tails[thread], scratch[thread, 1]
        dst, as_float = scratch[thread, 2, :K], scratch[thread, 3]
        refresh_eps = scratch[thread, 2]  # batch >= 4: a refreshed row's normals (no dst there)
        as_bits, dst_bits = as_float.view(F_bits.dtype), dst.view(F_bits.dtype)
        r_max, window_min, write_max = row_bounds[0, i], row_bounds[1, i], row_bounds[2, i]
        w_row, rm, rh = W[i], dense[D_R_MID, i], dense[D_R_HALF, i]
        ba = dense[D_BIAS_ABS, i] if counting else zeros  # no counters: no bias table streamed
        lo, hi, bs = dense[D_LO, i], dense[D_HI, i], dense[D_BIAS_SGN, i]
        ga, sg, an = sparse[S_GAMMA, i], sparse[S_SIGMA, i], sparse[S_ANALOG, i]
        for b in range(B):
            f_row, z_row, col, nb = F[b, i], z[b], cols[b], nnz[b]
            # -- read: one pass over the row, and the sums over its pulsed columns ---------------
            sq, dot, ez, eb = _read_sums(w_row, f_row, z_row, ba)
            if with_bias_sgn and counting:
                eb += _dot(bs, f_row)
            en = _energy_sum(w_row, f_row, z_row) if with_energy else zero
            if B >= 4:  # the parameter rows stay in cache for the batch: gather along them
                eg, cz, zsq = _pulsed_sums(sparse[S_G_LT, i], sparse[S_COEF_ABS, i], z_row, col, nb)
                csg = _pulsed_dot(sparse[S_COEF_SGN, i], z_row, col, nb) if with_coef_sgn else zero
            else:  # batch 1 streams them: column-major, a pulsed column's rows share its cache lines
                eg, cz, zsq = _pulsed_sums_t(sparse_t[S_G_LT], sparse_t[S_COEF_ABS], i, z_row, col, nb)
                csg = _pulsed_dot_t(sparse_t[S_COEF_SGN], i, z_row, col, nb) if with_coef_sgn else zero
            n = F.dtype.type(np.sqrt(sq) + eps_norm)
            sp = s_prev[b, i]
            if exact:  # F on its own pair, read through the scale s: sums in S z^2
                st = two_g_min * np.float64(zsq) + gpw * np.float64(ez) / np.float64(sp)
                sum_energy = np.float64(eg) + st
                sum_noise = np.float64(eg) + np.float64(sp) * np.float64(sp) * st
            else:
                sum_energy = sum_noise = np.float64(eg) + gpw * np.float64(ez)
            if with_read_noise:
                dot = dot + F.dtype.type(np.sqrt(max(read_var * sum_noise, 0.0))) * read_noise[b, i]
            hb = np.tanh(dot / n + bias[i])
            h_out[b, i] = hb
            if with_energy:
                row_energy[b, i] = en / n
            # -- scale, refresh ---------------------------------------------------------------
            refresh = False
            if exact:
                s_new = sp / n
                if s_new * max_gain < one:
                    refresh = True
                    s_new = one
                inv = one / n
            else:
                s_new = sp
                inv = one
            scale_out[b, i] = s_new
            gain = one / s_new  # the physical write amplitude is h / s; F (weight units) gains gamma h z
            # -- decay (a refreshed row first read, erased and rewritten), writes, window -----------
            o = out[b, i]
            sum_g = sum_new = 0.0
            src = f_row
            k_read = gpw_s = tgm = c2 = zero
            if refresh:  # read, erase, rewrite (``EmulatedCrossbar._refresh_of``), in F's dtype
                k_read = F.dtype.type(np.float64(sp) * np.float64(sp) * refresh_var)
                gpw_s = F.dtype.type(gpw / np.float64(sp))
                tgm, c2 = F.dtype.type(two_g_min), F.dtype.type(refresh_c2c)
                # batch >= 4: its normals kept for the one dense loop below (the write's go to eps)
                normals = refresh_eps if B >= 4 else eps
                _row_normals(_row_key(refresh_key, np.uint64(b * H + i)), K, u, normals, tl, table)
                if B < 4:
                    sum_g, sum_new = _refresh(f_row, an, eps, dst, k_read, gpw_s, tgm, c2)
                    src = dst
            clamp = with_clamp
            # batch >= 4: the window rows are in cache and the clamp is a select in the one dense loop,
            # cheaper than the pass over the row that would prove it a no-op; batch 1 would stream them
            if clamp and B < 4:  # no synapse can reach the window: |r f / n + gamma h z (1 + c2c)| below it
                as_bits[0] = _abs_max_bits(dst_bits if refresh else F_bits[b, i], abs_mask)
                reach = np.float64(r_max) * np.float64(as_float[0]) * np.float64(inv)
                reach += write_max * abs(np.float64(hb)) * np.float64(z_max[b])
                clamp = not reach * 1.0001 < window_min * np.float64(s_new)
            if with_c2c:
                _row_normals(_row_key(write_key, np.uint64(b * H + i)), nb, u, eps, tl, table)
            if B >= 4:  # parameter rows in cache: decay, write and clamp in one dense loop
                if with_c2c:  # the writes' relative noise, scattered into a row of zeros
                    for m in range(nb):
                        j = col[m]
                        e[j] = sg[j] * eps[m]
                if refresh:
                    sum_g, sum_new = _update_refreshed(
                        f_row,
                        an,
                        refresh_eps,
                        k_read,
                        gpw_s,
                        tgm,
                        c2,
                        rm,
                        rh,
                        ga,
                        z_row,
                        e,
                        inv,
                        hb,
                        o,
                        lo,
                        hi,
                        s_new,
                        clamp,
                    )
                elif clamp:
                    _update_clamped(src, rm, rh, ga, z_row, e, inv, hb, o, lo, hi, s_new)
                else:
                    _update(src, rm, rh, ga, z_row, e, inv, hb, o)
                if with_c2c:  # back to zeros: a dense store vectorises, a scatter does not
                    e[:] = zero
            else:  # batch 1 streams every parameter row from memory: touch gamma and sigma where pulsed only
                _decay(src, rm, rh, inv, o)
                _writes(o, sparse_t[S_GAMMA], sparse_t[S_SIGMA], i, z_row, col, nb, eps, hb, with_c2c)
                if clamp:
                    _clamp(o, lo, hi, s_new)
            if counting:
                st_row = row_stats[b, i]
                st_row[READ_SUM] = sum_energy
                st_row[BIAS_SUM] = np.float64(eb) / np.float64(sp)
                post = np.float64(hb * gain)
                written = abs(post) * np.float64(cz)
                if with_coef_sgn:
                    written += post * np.float64(csg)
                st_row[WRITTEN_SUM] = written
                st_row[REFRESH_G_SUM] = sum_g
                st_row[REFRESH_NEW_SUM] = sum_new
                st_row[REFRESHED_ROWS] = 1.0 if refresh else 0.0
                st_row[MAX_GAIN] = np.float64(gain)
            else:
                row_stats[b, i, REFRESHED_ROWS] = 1.0 if refresh else 0.0
                row_stats[b, i, MAX_GAIN] = np.float64(gain)
    for k in range(TOTALS):  # the step's totals, in a fixed order (independent of the threads)
        totals[k] = 0.0
    for b in range(B):
        for i in range(H):
            st_row = row_stats[b, i]
            if counting:
                for k in range(REFRESHED_ROWS):
                    totals[k] += st_row[k]
            totals[REFRESHED_ROWS] += st_row[REFRESHED_ROWS]
            totals[MAX_GAIN] = max(totals[MAX_GAIN], st_row[MAX_GAIN])


class StepBuffers:
    """Scratch of the step kernel for one (B, H, K) and dtype, allocated once and reused."""

    def __init__(self, batch: int, hidden: int, k: int, dtype: np.dtype) -> None:
        threads = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
        self.shape = (batch, hidden, k, dtype)
        self.cols = np.empty((batch, k), np.int64)
        self.nnz = np.empty(batch, np.int64)
        self.bits = np.empty((threads, k + 1), np.uint32)
        # per thread: the row's normals; its write noise, dense; a refreshed row; a float for bit casts
        self.scratch = np.zeros((threads, 4, k + 1), dtype)
        self.tails = np.empty((threads, k + 1), np.int64)
        self.row_stats = np.zeros((batch, hidden, TOTALS))
        self.totals = np.zeros(TOTALS)
        self.read_noise = torch.empty((batch, hidden), dtype=torch.from_numpy(np.empty(0, dtype)).dtype)
        self.no_energy = np.empty((0, 0), dtype)


def emulated_step(
    c: StepConstants,
    F: Tensor,
    z: Tensor,
    bias: Tensor,
    s_prev: Tensor,
    read_noise: Tensor | None,
    write_key: int,
    refresh_key: int,
    buffers: StepBuffers,
    energy: bool,
) -> tuple[Tensor, Tensor, Tensor, np.ndarray | None]:
    """One step of the emulated array on F (B, H, K), z (B, K), bias (H,), s_prev (B, H).

    read_noise: (B, H) standard normals (the read's own stream) or None. Returns h (B, H), F_t (B, H,
    K, a new tensor), the new scale s (B, H), the per-row energy metric sum_j |G_ij| z_j^2 / n_i
    (B, H) if ``energy``; the step's totals are left in ``buffers.totals`` (indices READ_SUM ...).
    """
    f = _array(F)
    batch, hidden, _ = f.shape
    h = np.empty((batch, hidden), f.dtype)
    scale = np.empty((batch, hidden), f.dtype)
    out = np.empty_like(f)
    row_energy = np.empty((batch, hidden), f.dtype) if energy else buffers.no_energy
    noise = read_noise.numpy() if read_noise is not None else buffers.no_energy
    _launch(
        _step_rows,
        c.W,
        f,
        f.view(np.uint32 if f.dtype == np.float32 else np.uint64),
        c.row_bounds,
        _array(z),
        _array(bias),
        c.dense,
        c.sparse,
        c.sparse_t,
        c.zeros,
        c.consts,
        noise,
        _array(s_prev),
        np.uint64(write_key),
        np.uint64(refresh_key),
        QUANTILES,
        buffers.cols,
        buffers.nnz,
        buffers.bits,
        buffers.scratch,
        buffers.tails,
        h,
        out,
        scale,
        row_energy,
        buffers.row_stats,
        buffers.totals,
        *c.flags,
        energy,
    )
    return (
        torch.from_numpy(h),
        torch.from_numpy(out),
        torch.from_numpy(scale),
        row_energy if energy else None,
    )
