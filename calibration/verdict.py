"""Does the fitted law describe the trace? Residual-structure tests, an explained-variance floor, and the
shape tests that name what a failed trace does instead (see docs/calibration.md for the derivations).

Per device, from its measured trace g (N,) and the residual r = g - fitted law (N,), one pass each:

    noise     sigma of the read noise from neighbouring samples: the mean |second difference|
              |r[n+1] - 2 r[n] + r[n-1]| (beyond 4.5 sigma trimmed, iterated) x sqrt(pi/2) / sqrt(6).
              Differencing removes whatever is smooth on the sampling scale (the misfit of a wrong law
              too), so this is the data's own noise, not the fit's; the residual rather than g removes
              the relaxation's curvature, which on quiet, steep traces would dominate; the trimming
              ignores the few samples of an abrupt drop
    runs_z    Wald-Wolfowitz runs test on the residual signs: z = (runs - mu) / sd; independent
              residuals give z ~ N(0, 1), a law that misses the shape leaves long runs (z << 0)
    lag1      lag-1 autocorrelation of the residuals, sum r[n] r[n+1] / sum r[n]^2; ~ N(0, 1/N) for
              white noise. Its numerator is the systematic residual's power: noise cancels at lag 1
    sys_rel   RMS of the systematic residual, sqrt(max(mean r[n] r[n+1], 0)), over |delta_g|
    r2_max    the R^2 a perfect law would reach given that noise: 1 - N noise^2 / total sum of squares

Verdict: the law describes the trace ("ok") unless
    structured residuals that matter: (runs_z < -STRUCTURE_Z or lag1 sqrt(N) > STRUCTURE_Z)
                                      and sys_rel > SYSTEMATIC_TOL, or
    explained variance below the floor: R^2 < R2_FLOOR * r2_max.
Both structure statistics are one-sided tests at p = 5e-4 each: at 170k devices a correct law is
flagged on ~170 by chance alone, and the systematic tolerance removes even those (pure noise has no
lag-1 power). Very quiet traces (VO2: noise 1e-5 of the amplitude) make any misfit statistically
significant; the tolerance asks whether it matters: a 2% RMS systematic error is below the
device-to-device and cycle-to-cycle spread of real arrays and below what the per-step lambda
approximation of a non-exponential law already costs.

Shape: ``non_monotonic`` when the trace averaged in blocks of 4 samples moves against its relaxation by more
than NONMONOTONIC_FRAC of its range and NONMONOTONIC_Z block-noise sigmas: no monotone law can
describe a trace that holds, rises, then falls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

Array = NDArray[np.float64]

STRUCTURE_Z = 3.29  # one-sided p = 5e-4 for the runs test and for the lag-1 autocorrelation
SYSTEMATIC_TOL = 0.02  # systematic residual RMS that matters, relative to the relaxation amplitude
R2_FLOOR = 0.8  # the law must explain 80% of the variance a perfect law would explain at this noise
NONMONOTONIC_FRAC = 0.1  # a counter-move of 10% of the trace's range ...
NONMONOTONIC_Z = 10.0  # ... and of 10 block-noise sigmas (the range of 1000 Gaussian means is < 8 sigma)
BLOCK = 4  # samples per block mean
MIN_BLOCKS = 8  # shorter traces (< 32 samples) are not tested for monotonicity
TRIM_Z = 4.5
ABS_TO_SIGMA_INV = math.sqrt(2.0 / math.pi)  # mean |x| of a Gaussian is sigma sqrt(2/pi)

# jump test (``_jumps``): a level shift of the residual between two windows of w samples on either side of
# a sample boundary, for w in JUMP_WINDOWS, in units of its noise sigma sqrt(2 / w) (robust noise:
# ``_robust_sigma``). A jump is an abrupt shift that the fitted smooth law could not follow.
JUMP_WINDOWS = (1, 2, 4, 8, 16)
JUMP_Z = 5.5  # two-sided tail 3.8e-8 per test; ~5 N correlated tests per trace
JUMP_MIN_REL = 0.05  # ... and a residual shift of 5% of the relaxation amplitude (smaller ones do not matter)
JUMP_CONTRAST = 0.5  # the data's shift one window earlier and later is < half the jump: plateaus
# staircase test (``_staircase``): each step (a jump time and a level) pays ln N in sigma^2 units (BIC);
STAIRCASE_ADEQUATE = 1.5  # the staircase leaves no more than 1.5x the read noise's sum of squares, and
STAIRCASE_GAIN = 12.0  # beats every law by this penalised gain (sigma^2): stepwise (``model="auto"``;
# selection seeds 1-6, 1200 clean traces per law and noise level: none above 10.9; docs/calibration.md)
LAW_MISFIT_GAIN = 15.0  # beats one law by this: that law misfits (a single-law fit: stepwise)
# a compressed-law collapse spanning fewer sample intervals than this is a jump: with fewer than ~4 samples
# inside the 90%-10% fall the data cannot tell a smooth collapse from two or three ruptures in a row
COLLAPSE_SAMPLES = 4.0
STEP_BETA = 90.0  # ... and so is one at the top of the law's range (beta < 100): it wants to be sharper
JUMP_MISSED = 0.5  # the law missed at least half of the data's shift (it did not follow a resolved collapse)
MAX_JUMPS = 4  # jumps kept per trace (the largest first)
MAD_TO_SIGMA = 1.482602218505602  # sigma of a Gaussian from its median absolute deviation

N_BASE_STATS = 7  # noise, c0, c1, runs_z, counter_move, block_range, block_noise
# then the robust noise sigma, the number of jumps, MAX_JUMPS boundary indices (a jump between samples
# b - 1 and b has index b) and MAX_JUMPS jump sizes (g after minus g before; NaN where no jump)
# then the staircase comparison (``_staircase``): the gain (RSS of the law - RSS of the best staircase of
# up to MAX_JUMPS steps) / robust sigma^2, and that staircase's number of steps
N_STATS = N_BASE_STATS + 4 + 2 * MAX_JUMPS
STAIRCASE_MIN_SEGMENT = 1  # samples per plateau: two ruptures may fall in consecutive sample intervals
STAIRCASE_BLOCKS = 20  # blocks of the staircase's lower bound (``_staircase``)
REFINE_REACH = 2.0  # ... only where the greedy staircase's RSS is within this factor of describing the trace
REFINE_PASSES = 2  # passes moving each step of the staircase to its best place between its neighbours


@njit(cache=True)
def _noise_sigma(r: NDArray[np.float64]) -> float:
    """White-noise sigma of r from the trimmed mean |second difference| (variance 6 sigma^2)."""
    n = r.size
    if n < 3:
        return math.nan
    d2 = np.empty(n - 2)
    total = 0.0
    for i in range(n - 2):
        d2[i] = abs(r[i + 2] - 2.0 * r[i + 1] + r[i])  # centred on 0: what is smooth has cancelled
        total += d2[i]
    mean_abs = total / (n - 2)
    kept_before = n - 2
    for _ in range(4):  # drop the few huge ones (an abrupt drop) beyond 4.5 sigma, and re-average
        cut = TRIM_Z * mean_abs / ABS_TO_SIGMA_INV
        total = 0.0
        kept = 0
        for x in d2:
            if x <= cut:
                total += x
                kept += 1
        if kept == 0 or kept == kept_before:
            break
        mean_abs = total / kept
        kept_before = kept
    return mean_abs / ABS_TO_SIGMA_INV / math.sqrt(6.0)


@njit(cache=True)
def _robust_sigma(r: NDArray[np.float64]) -> float:
    """White-noise sigma of r from its first differences (variance 2 sigma^2) with the jumps excluded:
    the mean |difference|, iterated without those beyond TRIM_Z sigma (the few that straddle a jump);
    the residual has no smooth trend left to difference. O(N), no sort."""
    n = r.size
    if n < 3:
        return math.nan
    d = np.empty(n - 1)
    total = 0.0
    for i in range(n - 1):
        d[i] = abs(r[i + 1] - r[i])
        total += d[i]
    mean_abs = total / (n - 1)
    kept_before = n - 1
    for _ in range(6):
        cut = TRIM_Z * mean_abs / ABS_TO_SIGMA_INV
        total = 0.0
        kept = 0
        for x in d:
            if x <= cut:
                total += x
                kept += 1
        if kept == 0 or kept == kept_before:
            break
        mean_abs = total / kept
        kept_before = kept
    return mean_abs / ABS_TO_SIGMA_INV / math.sqrt(2.0)


@njit(cache=True)
def _jumps(g, r, sigma, amplitude, out_idx, out_size):  # type: ignore[no-untyped-def]
    """Abrupt level shifts of the residual r (N,): the boundary b and window w of largest
    z = |mean r[b:b+w] - mean r[b-w:b]| / (sigma sqrt(2 / w)), taken greedily (boundaries within the
    window of a kept jump are not tested again); a jump needs z >= JUMP_Z, a residual shift of at
    least JUMP_MIN_REL x amplitude (what the law missed, not what it followed) in a data shift as large,
    and the data's shift
    over the same windows one window earlier and one later below JUMP_CONTRAST x the jump and below it
    by JUMP_Z of its noise sigmas (plateaus on
    either side: a steep smooth decay shifts more one window earlier, as every convex relaxation does);
    the residual's shift must be at least JUMP_MISSED of the data's (a law that follows a resolved
    collapse has not missed a jump).
    Returns their number; their boundary
    indices and sizes (g after minus before) go to out_idx, out_size (MAX_JUMPS,)."""
    n = r.size
    cr = np.zeros(n + 1)
    cg = np.zeros(n + 1)
    for i in range(n):
        cr[i + 1] = cr[i] + r[i]
        cg[i + 1] = cg[i] + g[i]
    blocked = np.zeros(n + 1, dtype=np.bool_)
    count = 0
    if not (sigma > 0.0) or not (amplitude > 0.0):
        return 0
    # the shift's noise at each scale: white noise gives sigma sqrt(2 / w); slow wander (1/f noise, drift)
    # more, which the spread of the shifts over all boundaries measures (a median: the few boundaries at a
    # jump do not move it). Computed only for a scale where a candidate passes the white-noise test.
    spreads = np.full(len(JUMP_WINDOWS), -1.0)
    for _ in range(MAX_JUMPS):
        best_z = JUMP_Z
        best_b = -1
        best_w = 0
        best_size = 0.0
        for k, w in enumerate(JUMP_WINDOWS):
            if 4 * w > n:
                break
            white = sigma * math.sqrt(2.0 / w)
            for b in range(2 * w, n - 2 * w + 1):
                if blocked[b]:
                    continue
                shift = abs((cr[b + w] - cr[b]) - (cr[b] - cr[b - w])) / w
                if shift <= best_z * white or shift < JUMP_MIN_REL * amplitude:
                    continue
                size = ((cg[b + w] - cg[b]) - (cg[b] - cg[b - w])) / w
                before = ((cg[b] - cg[b - w]) - (cg[b - w] - cg[b - 2 * w])) / w
                after = ((cg[b + 2 * w] - cg[b + w]) - (cg[b + w] - cg[b])) / w
                step = abs(size) >= JUMP_MIN_REL * amplitude and shift >= JUMP_MISSED * abs(size)
                side = max(abs(before), abs(after))
                stands = abs(size) - side >= JUMP_Z * white  # far above its noise
                if not (step and stands and side < JUMP_CONTRAST * abs(size)):  # a step, not a slope
                    continue
                if spreads[k] < 0.0:
                    shifts = np.empty(n - 2 * w + 1)
                    for c in range(w, n - w + 1):
                        shifts[c - w] = ((cr[c + w] - cr[c]) - (cr[c] - cr[c - w])) / w
                    spreads[k] = MAD_TO_SIGMA * np.median(np.abs(shifts - np.median(shifts)))
                z = shift / max(white, spreads[k])
                if z > best_z:
                    best_z, best_b, best_w, best_size = z, b, w, size
        if best_b < 0:
            break
        out_idx[count] = best_b
        out_size[count] = best_size
        count += 1
        for b in range(max(0, best_b - best_w), min(n, best_b + best_w) + 1):
            blocked[b] = True
    return count


@njit(cache=True)
def _segment_means_ok(c1, bounds, m, min_step, direction):  # type: ignore[no-untyped-def]
    """Whether every step between the plateaus bounds[0:m] of the cumulative sums c1 goes the
    relaxation's way (down for direction +1) by at least min_step."""
    prev = (c1[bounds[1]] - c1[bounds[0]]) / (bounds[1] - bounds[0])
    for j in range(1, m - 1):
        mean = (c1[bounds[j + 1]] - c1[bounds[j]]) / (bounds[j + 1] - bounds[j])
        if -(mean - prev) * direction < min_step:
            return False
        prev = mean
    return True


@njit(cache=True)
def _plateaus_rss(c1, c2, bounds, m):  # type: ignore[no-untyped-def]
    """Sum of squares of g about the means of its plateaus bounds[0:m], from the cumulative sums c1 of g
    and c2 of g^2 (c2[n] is the total; each plateau's mean removes its share)."""
    n = bounds[m - 1]
    total = c2[n]
    for j in range(m - 1):
        s_seg = c1[bounds[j + 1]] - c1[bounds[j]]
        total -= s_seg * s_seg / (bounds[j + 1] - bounds[j])
    return total


@njit(cache=True)
def _staircase(g, rss_law, sigma, amplitude, direction, out_idx, out_size):  # type: ignore[no-untyped-def]
    """Binary segmentation of g (N,) into plateaus: at most MAX_JUMPS steps, each new step the split
    that lowers the sum of squares most, then every step moved to its best place between its neighbours
    (REFINE_PASSES passes: the greedy split of two close ruptures lands between them, the refined one on
    them). Steps go the relaxation's way (``direction`` +1: down; a rupture never raises a falling
    relaxation) by at least JUMP_MIN_REL x amplitude; plateaus of at least STAIRCASE_MIN_SEGMENT samples.
    Returns (best penalised gain, its step count): the gain of k steps
    is (rss_law - RSS of the k-step staircase) / sigma^2 - k ln N (BIC), maximised over the k
    whose staircase describes the trace (RSS <= STAIRCASE_ADEQUATE N sigma^2; -inf if none does);
    that staircase's step indices and sizes go to out_idx, out_size."""
    n = g.size
    c1 = np.zeros(n + 1)
    c2 = np.zeros(n + 1)
    for i in range(n):
        c1[i + 1] = c1[i] + g[i]
        c2[i + 1] = c2[i] + g[i] * g[i]
    if not (sigma > 0.0):
        return -math.inf, 0
    # no staircase describes the trace when even its flat parts cannot: of STAIRCASE_BLOCKS equal blocks
    # at most MAX_JUMPS hold a step, and every other block lies on one plateau, so the staircase's RSS
    # is at least the sum of the smallest (blocks - MAX_JUMPS) within-block sums of squares. A smooth
    # decay that is quiet against its own slope (most real traces) ends here, in O(N).
    blocks = min(STAIRCASE_BLOCKS, n)
    sse = np.empty(blocks)
    for j in range(blocks):
        lo, hi = j * n // blocks, (j + 1) * n // blocks
        s_seg = c1[hi] - c1[lo]
        sse[j] = (c2[hi] - c2[lo]) - s_seg * s_seg / (hi - lo)
    if np.sum(np.sort(sse)[: blocks - MAX_JUMPS]) > STAIRCASE_ADEQUATE * n * sigma * sigma:
        return -math.inf, 0
    min_step = JUMP_MIN_REL * amplitude
    bounds = np.empty(MAX_JUMPS + 2, dtype=np.int64)
    bounds[0], bounds[1] = 0, n
    m = 2  # number of boundaries (segments + 1)
    best_gain, best_k = -math.inf, 0
    for k in range(1, MAX_JUMPS + 1):
        best_red, best_b = 0.0, -1
        for j in range(m - 1):
            lo, hi = bounds[j], bounds[j + 1]
            s_all = c1[hi] - c1[lo]
            for b in range(lo + STAIRCASE_MIN_SEGMENT, hi - STAIRCASE_MIN_SEGMENT + 1):
                nl, nr = b - lo, hi - b
                ml, mr = (c1[b] - c1[lo]) / nl, (c1[hi] - c1[b]) / nr
                red = nl * ml * ml + nr * mr * mr - s_all * s_all / (hi - lo)
                if red > best_red and -(mr - ml) * direction >= min_step:
                    best_red, best_b = red, b
        if best_b < 0:
            break
        pos = m
        while pos > 0 and bounds[pos - 1] > best_b:
            bounds[pos] = bounds[pos - 1]
            pos -= 1
        bounds[pos] = best_b
        m += 1
        greedy = _plateaus_rss(c1, c2, bounds, m)
        # refining moves steps by a few samples; it cannot make a staircase that is far from describing
        # the trace (a smooth decay, quiet against its slope) describe it: skip the cost there
        refine = REFINE_PASSES if greedy <= REFINE_REACH * STAIRCASE_ADEQUATE * n * sigma * sigma else 0
        for _ in range(refine):  # each step to its best place between its neighbours
            for j in range(1, m - 1):
                lo, hi = bounds[j - 1], bounds[j + 1]
                best_fit, best_at = -math.inf, bounds[j]
                for b in range(lo + STAIRCASE_MIN_SEGMENT, hi - STAIRCASE_MIN_SEGMENT + 1):
                    nl, nr = b - lo, hi - b
                    ml, mr = (c1[b] - c1[lo]) / nl, (c1[hi] - c1[b]) / nr
                    fit = nl * ml * ml + nr * mr * mr
                    if fit > best_fit and -(mr - ml) * direction >= min_step:
                        best_fit, best_at = fit, b
                bounds[j] = best_at
        if not _segment_means_ok(c1, bounds, m, min_step, direction):
            continue  # not a staircase of ruptures: no gain at this k
        total = _plateaus_rss(c1, c2, bounds, m)
        gain = (rss_law - total) / (sigma * sigma) - math.log(n) * k
        if gain > best_gain and total <= STAIRCASE_ADEQUATE * n * sigma * sigma:  # plateaus and noise only
            best_gain, best_k = gain, k
            for i in range(k):
                lo, b, hi = bounds[i], bounds[i + 1], bounds[i + 2]
                out_idx[i] = b
                out_size[i] = (c1[hi] - c1[b]) / (hi - b) - (c1[b] - c1[lo]) / (b - lo)
    return best_gain, best_k


@njit(cache=True)
def _runs_z(r: NDArray[np.float64]) -> float:
    """Wald-Wolfowitz z of the residual signs (zero counts as positive); -inf if all share one sign."""
    n = r.size
    pos = 0
    runs = 1
    for i in range(n):
        if r[i] >= 0.0:
            pos += 1
        if i > 0 and (r[i] >= 0.0) != (r[i - 1] >= 0.0):
            runs += 1
    neg = n - pos
    if pos == 0 or neg == 0:
        return -math.inf
    mu = 2.0 * pos * neg / n + 1.0
    var = (mu - 1.0) * (mu - 2.0) / (n - 1.0)
    if not var > 0.0:
        return -math.inf
    return (runs - mu) / math.sqrt(var)


@njit(cache=True)
def trace_stats_one(g, r, out):  # type: ignore[no-untyped-def]
    """``trace_stats`` of one device into out (N_STATS,)."""
    n = g.size
    sigma = _noise_sigma(r)
    c0 = 0.0
    c1 = 0.0
    for i in range(n):
        c0 += r[i] * r[i]
        if i > 0:
            c1 += r[i] * r[i - 1]
    # block means of the data, and the largest move against the relaxation's direction
    w = BLOCK  # short blocks: a hold-and-rise of a few tens of samples in a long record still shows
    j_count = n // w
    b = np.empty(j_count)
    for j in range(j_count):
        s = 0.0
        for i in range(j * w, (j + 1) * w):
            s += g[i]
        b[j] = s / w
    direction = 1.0 if b[0] >= b[j_count - 1] else -1.0  # +1: falling relaxation
    extreme = b[0]
    counter = 0.0
    lo = b[0]
    hi = b[0]
    for j in range(j_count):
        lo = min(lo, b[j])
        hi = max(hi, b[j])
        if direction > 0:
            extreme = min(extreme, b[j])
            counter = max(counter, b[j] - extreme)
        else:
            extreme = max(extreme, b[j])
            counter = max(counter, extreme - b[j])
    out[0] = sigma
    out[1] = c0 / n
    out[2] = c1 / (n - 1) if n > 1 else math.nan
    out[3] = _runs_z(r)
    out[4] = counter
    out[5] = hi - lo
    out[6] = sigma / math.sqrt(w)
    robust = _robust_sigma(r)
    amplitude = hi - lo  # the block-mean range: the relaxation's amplitude, little affected by noise
    for k in range(2 * MAX_JUMPS):
        out[N_BASE_STATS + 2 + k] = math.nan
    out[N_BASE_STATS] = robust
    at = out[N_BASE_STATS + 2 : N_BASE_STATS + 2 + MAX_JUMPS]
    size = out[N_BASE_STATS + 2 + MAX_JUMPS : N_BASE_STATS + 2 + 2 * MAX_JUMPS]
    out[N_BASE_STATS + 1] = _jumps(g, r, robust, amplitude, at, size)
    stair_at = np.full(MAX_JUMPS, math.nan)
    stair_size = np.full(MAX_JUMPS, math.nan)
    # on every trace, not only structured ones: at 5-10% noise a staircase's gain over the law is
    # significant long before the runs or lag-1 tests see the plateaus
    gain, steps = _staircase(g, c0, robust, amplitude, direction, stair_at, stair_size)
    out[N_STATS - 2] = gain
    out[N_STATS - 1] = steps
    if out[N_BASE_STATS + 1] == 0 and gain > STAIRCASE_GAIN:  # no single abrupt jump: the staircase's
        at[:] = stair_at
        size[:] = stair_size


@njit(parallel=True, cache=True)
def trace_stats(g, r):  # type: ignore[no-untyped-def]
    """Per device (D, 7): noise sigma, mean r^2, mean r[n] r[n+1], runs z, the largest block-mean move
    against the relaxation, the block-mean range, the block-mean noise sigma; g and r (D, N), same units."""
    d_count = g.shape[0]
    out = np.empty((d_count, N_STATS))
    for d in prange(d_count):
        trace_stats_one(g[d], r[d], out[d])
    return out


LAW_CODES = {"exp": 0, "biexp": 1, "stretched": 2, "compressed": 2}


@njit(parallel=True, cache=True)
def law_trace_stats(law, t, g, params):  # type: ignore[no-untyped-def]
    """``trace_stats`` with the residual computed on the fly (no (D, N) temporaries): g (D, N) at times
    t (1 or D, N) s, the law's code (``LAW_CODES``) and per device params (D, 6) = (g_inf, delta_g, tau1,
    tau2, w1, beta) in SI units."""
    d_count, n = g.shape
    out = np.empty((d_count, N_STATS))
    shared = t.shape[0] == 1
    step = (t[0, -1] - t[0, 0]) / (n - 1)
    uniform = shared and n > 1
    for i in range(1, n):
        if uniform and abs(t[0, i] - t[0, i - 1] - step) > 1e-9 * step:
            uniform = False
    for d in prange(d_count):
        td = t[0] if shared else t[d]
        c, a, tau1, tau2, w1, beta = params[d]
        r = np.empty(n)
        if law == 0 and uniform:  # exp(-t/tau) as a geometric sequence: one multiply per sample
            e = math.exp(-td[0] / tau1)
            ratio = math.exp(-step / tau1)
            for i in range(n):
                r[i] = g[d, i] - c - a * e
                e *= ratio
            trace_stats_one(g[d], r, out[d])
            continue
        for i in range(n):
            x = td[i]
            if law == 0:
                phi = math.exp(-x / tau1)
            elif law == 1:
                phi = w1 * math.exp(-x / tau1) + (1.0 - w1) * math.exp(-x / tau2)
            else:
                phi = math.exp(-((max(x, 0.0) / tau1) ** beta))
            r[i] = g[d, i] - c - a * phi
        trace_stats_one(g[d], r, out[d])
    return out


def verdict(
    law: str, t: Array, g: Array, fitted: dict[str, Array], tss: Array
) -> tuple[dict[str, Array], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Test statistics (see the module docstring) and the masks (poor fit, non-monotonic trace,
    abrupt jump: ``stepwise``; the staircase's verdict needs every law's ``stair_gain`` and is taken in
    ``calibration.fit``) of devices with measured g (D, N) S at times t (1 or D, N) s, fitted by ``law`` with
    the columns ``fitted`` (g_inf, delta_g, tau, tau2, w1, beta; (D,) each, SI units), and the total sum
    of squares of g about its mean (D,)."""
    names = ("g_inf", "delta_g", "tau", "tau2", "w1", "beta")
    params = np.ascontiguousarray(np.stack([fitted[k] for k in names], axis=1))
    s = law_trace_stats(LAW_CODES[law], np.ascontiguousarray(t), np.ascontiguousarray(g), params)
    return judge(s, g.shape[1], fitted["delta_g"], tss, t)


def jump_times(index: Array, t: Array) -> Array:
    """Times (s) of jumps at boundary indices ``index`` (D, J) (NaN: none), midway between the samples
    b - 1 and b of times t (1 or D, N)."""
    d, n = index.shape[0], t.shape[1]
    tt = np.broadcast_to(t, (d, n))
    b = np.where(np.isfinite(index), index, 1).astype(np.int64).clip(1, n - 1)
    mid = 0.5 * (np.take_along_axis(tt, b - 1, axis=1) + np.take_along_axis(tt, b, axis=1))
    return np.where(np.isfinite(index), mid, np.nan)


def unresolved_collapse(tau_s: Array, beta: Array, t: Array) -> NDArray[np.bool_]:
    """(D,) mask of compressed-law fits whose collapse (from 90% to 10% of the relaxation, lasting
    tau ((ln 10)^(1/beta) - (ln(10/9))^(1/beta)) s) is shorter than COLLAPSE_SAMPLES sample intervals
    of times t (1 or D, N) s around tau: the data cannot tell it from a jump (a rupture), and its tau
    is a rupture time, not a time constant."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        width = tau_s * (math.log(10.0) ** (1.0 / beta) - math.log(10.0 / 9.0) ** (1.0 / beta))
        tt = np.broadcast_to(t, (tau_s.size, t.shape[1]))
        at = np.clip((tt < tau_s[:, None]).sum(1), 1, t.shape[1] - 1)
        dt = np.take_along_axis(tt, at[:, None], 1)[:, 0] - np.take_along_axis(tt, at[:, None] - 1, 1)[:, 0]
        return np.asarray((width < COLLAPSE_SAMPLES * dt) | (beta >= STEP_BETA))


def judge(
    s: Array, n: int, delta_g: Array, tss: Array, t: Array
) -> tuple[dict[str, Array], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """``verdict`` from precomputed ``trace_stats`` s (D, N_STATS) in siemens of traces of n samples at
    times t (1 or D, n) s."""
    noise, c0, c1, runs_z = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    robust = s[:, N_BASE_STATS]
    n_jumps = s[:, N_BASE_STATS + 1]
    jump_index = s[:, N_BASE_STATS + 2 : N_BASE_STATS + 2 + MAX_JUMPS]
    jump_size = s[:, N_BASE_STATS + 2 + MAX_JUMPS : N_BASE_STATS + 2 + 2 * MAX_JUMPS]
    with np.errstate(divide="ignore", invalid="ignore"):
        lag1 = c1 / c0
        sys_rel = np.sqrt(np.maximum(c1, 0.0)) / np.abs(delta_g)
        r2 = 1.0 - n * c0 / tss
        r2_max = 1.0 - n * robust**2 / tss
    structured = (runs_z < -STRUCTURE_Z) | (lag1 * math.sqrt(n) > STRUCTURE_Z)
    poor = (structured & (sys_rel > SYSTEMATIC_TOL)) | (r2 < R2_FLOOR * np.maximum(r2_max, 0.0))
    counter, block_range, block_noise = s[:, 4], s[:, 5], s[:, 6]
    non_monotonic = (counter > NONMONOTONIC_FRAC * block_range) & (counter > NONMONOTONIC_Z * block_noise)
    non_monotonic &= n // BLOCK >= MIN_BLOCKS
    stair_gain = s[:, N_STATS - 2]
    stepwise = n_jumps >= 1  # the staircase's verdict needs every law's gain (``calibration.fit``)
    with np.errstate(divide="ignore", invalid="ignore"):
        counter_rel = counter / block_range
    stats = {
        "noise": noise,
        "runs_z": runs_z,
        "lag1": lag1,
        "sys_rel": sys_rel,
        "r2_max": r2_max,
        "counter_rel": counter_rel,
        "n_jumps": n_jumps,
        "stair_gain": stair_gain,
        "jump_t": jump_times(jump_index, t),
        "jump_size": jump_size,
    }
    return stats, poor, non_monotonic, stepwise


def reason(
    status: str, r2: float, stats: dict[str, float], n: int, law: str = "", beta: float = math.nan
) -> str:
    """One line saying why a fit got its verdict, from its test statistics (scalars of one device)."""
    runs_z, lag1, sys_rel = stats["runs_z"], stats["lag1"], stats["sys_rel"]
    structured = runs_z < -STRUCTURE_Z or lag1 * math.sqrt(n) > STRUCTURE_Z
    floor = R2_FLOOR * max(stats["r2_max"], 0.0)
    if status == "stepwise":
        return "relaxes by abrupt jumps between plateaus (dashed: where): no decay law, no tau"
    if status == "non_monotonic":
        return (
            f"moves against its relaxation by {stats['counter_rel']:.0%} of its range: no monotone law fits"
        )
    parts = []
    if structured and sys_rel > SYSTEMATIC_TOL:
        parts.append(
            f"structured residuals (runs z {runs_z:.1f}, lag-1 {lag1:.2f}) with a systematic part of "
            f"{sys_rel:.1%} of the amplitude (> {SYSTEMATIC_TOL:.0%})"
        )
    if r2 < floor:
        parts.append(
            f"R^2 {r2:.3f} below the floor {floor:.3f} ({R2_FLOOR:g} x {stats['r2_max']:.3f} at this noise)"
        )
    if status == "threshold_collapse":
        parts.insert(0, f"holds then collapses (compressed beta {beta:.2f}) but")
    if status == "ok":
        what = (
            "unstructured residuals"
            if not structured
            else f"systematic residual {sys_rel:.1%} <= {SYSTEMATIC_TOL:.0%}"
        )
        return f"{law} describes the trace: {what}, R^2 {r2:.4f} >= {floor:.3f}"
    return " ".join(parts) if parts else status
