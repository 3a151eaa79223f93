"""Hand-fused CPU kernels for the ideal crossbar's inference path (no autograd).

The STPN step touches its short-term state F (B, H, K) twice: a read that needs, per row i, the
norm n_i = ||W_i + F_i||_2 + 1e-16, the product (W_i + F_i) . z and optionally the energy
sum_j |W_ij + F_ij| z_j^2 / n_i; and an update F_t = lambda * F / n + gamma * (h outer z). Plain
torch makes a full pass over (B, H, K) for each term (G, its square, the norm, the product, F / n,
lambda * ..., h outer z, gamma * ..., the sum). Here each of the two operations is ONE pass over F,
parallel over the B * H rows: the floor of reading F twice and writing it once per step.

Floating point: the row sums are compiled with LLVM's ``reassoc`` flag only, which lets them run
as SIMD partial sums (as torch's own reductions do); nothing else of fast-math is on (no
finite-math assumptions, no approximate reciprocals). The update divides once per row (exactly)
and multiplies each synapse by 1 / n_i, within an ulp of F / n_i. Each row is summed by one thread
in a fixed order, so results do not depend on the thread count and equal the plain formulation to
float rounding. Kernels compile on first use per dtype (float32, float64) and numba caches them
on disk.

``fused_step`` goes one step further for the STPN proper: read, the neuron's tanh and the update
per row in one pass, so each row of F is read from memory once (its second loop hits L1).

The fused kernels never write into their inputs: F_t goes to a new buffer, because the caller may
still hold F_{t-1} (a stored state, the previous step's output of ``STPN.step``), and no test at
call time can prove otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

FUSABLE_DTYPES = (torch.float32, torch.float64)
_NUMBA_MAX_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


@njit(inline="always", fastmath={"reassoc"})
def _row_sums(w_row, f_row, z_row, with_energy):  # pragma: no cover - compiled by numba
    """sum_j g^2, sum_j g z_j and (if asked) sum_j |g| z_j^2 over one row, g = w_row + f_row."""
    sq = f_row.dtype.type(0)  # accumulate in the arrays' own dtype, as torch does
    dot = sq
    en = sq
    if with_energy:
        for j in range(f_row.shape[0]):
            g = w_row[j] + f_row[j]
            sq += g * g
            dot += g * z_row[j]
            en += abs(g) * (z_row[j] * z_row[j])
    else:
        for j in range(f_row.shape[0]):
            g = w_row[j] + f_row[j]
            sq += g * g
            dot += g * z_row[j]
    return sq, dot, en


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read_rows(W, F, z, eps, y, n, row_energy, with_energy):  # pragma: no cover - compiled by numba
    B, H, _ = F.shape
    for r in prange(B * H):  # rows in memory order: F streams through contiguously
        b = r // H
        i = r - b * H
        sq, dot, en = _row_sums(W[i], F[b, i], z[b], with_energy)
        n[b, i] = np.sqrt(sq) + eps
        y[b, i] = dot / n[b, i]
        if with_energy:
            row_energy[b, i] = en / n[b, i]


@njit(parallel=True, cache=True, fastmath=False)
def _update_rows(F, lam, gamma, inv_n, h, z, out):  # pragma: no cover - compiled by numba
    B, H, K = F.shape
    for r in prange(B * H):  # rows in memory order: F and F_t stream through contiguously
        b = r // H
        i = r - b * H
        f_row = F[b, i]
        out_row = out[b, i]
        lam_row = lam[i]
        gamma_row = gamma[i]
        z_row = z[b]
        retention = inv_n[b, i]
        post = h[b, i]
        for j in range(K):
            out_row[j] = lam_row[j] * (f_row[j] * retention) + gamma_row[j] * (post * z_row[j])


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _step_rows(
    W, F, lam, gamma, z, bias, eps, h, n_out, y_out, out, row_energy, with_energy
):  # pragma: no cover
    B, H, K = F.shape
    one = F.dtype.type(1)
    for r in prange(B * H):  # a row of F (K floats) stays in L1 between the two loops
        b = r // H
        i = r - b * H
        f_row = F[b, i]
        z_row = z[b]
        sq, dot, en = _row_sums(W[i], f_row, z_row, with_energy)
        n = F.dtype.type(np.sqrt(sq) + eps)
        n_out[b, i] = n
        y_out[b, i] = dot / n
        post = np.tanh(dot / n + bias[i])
        h[b, i] = post
        if with_energy:
            row_energy[b, i] = en / n
        retention = one / n
        out_row = out[b, i]
        lam_row = lam[i]
        gamma_row = gamma[i]
        for j in range(K):
            out_row[j] = lam_row[j] * (f_row[j] * retention) + gamma_row[j] * (post * z_row[j])


def fusable(*tensors: Tensor) -> bool:
    """True if the fused kernels can take these tensors: all on the CPU in one float32/float64 dtype."""
    dtype = tensors[0].dtype
    return dtype in FUSABLE_DTYPES and all(t.is_cpu and t.dtype == dtype for t in tensors)


def array_of(t: Tensor) -> np.ndarray:
    return (t.detach() if t.requires_grad else t).contiguous().numpy()


def launch(kernel: Callable[..., None], *args: object) -> None:
    """Run a kernel on as many threads as torch may use, and leave torch's setting as it was.

    numba's OpenMP pool shares libgomp with torch; starting it resets the process-wide thread
    count, which would silently undo a user's ``torch.set_num_threads``.
    """
    wanted = torch.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, _NUMBA_MAX_THREADS)))
    try:
        kernel(*args)
    finally:
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


def fused_read(
    weight: Tensor, F: Tensor, z: Tensor, eps: float, energy: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Read G = W + F in one pass: W (H, K), F (B, H, K), z (B, K), one dtype (see ``fusable``).

    Returns y = (G z)_i / n_i (B, H), n_i = ||G_i,:||_2 + eps (B, H), and if ``energy`` the
    per-sample metric sum_ij |G_ij| z_j^2 / n_i (B,), else None.
    """
    f = array_of(F)
    batch, hidden, _ = f.shape
    y = np.empty((batch, hidden), f.dtype)
    n = np.empty((batch, hidden), f.dtype)
    row_energy = np.empty((batch, hidden) if energy else (0, 0), f.dtype)
    launch(_read_rows, array_of(weight), f, array_of(z), eps, y, n, row_energy, energy)
    total_energy = torch.from_numpy(row_energy.sum(axis=1)) if energy else None
    return torch.from_numpy(y), torch.from_numpy(n), total_energy


def fused_update(F: Tensor, lam: Tensor, gamma: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
    """One pass writing F_t = lam * F / n + gamma * (h outer z), (B, H, K), into a new tensor.

    F (B, H, K); lam, gamma (H, K); n, h (B, H); z (B, K). F itself is left untouched.
    """
    f = array_of(F)
    out = np.empty_like(f)
    inv_n = np.reciprocal(array_of(n))  # one division per row instead of one per synapse
    launch(_update_rows, f, array_of(lam), array_of(gamma), inv_n, array_of(h), array_of(z), out)
    return torch.from_numpy(out)


def fused_step(
    weight: Tensor, F: Tensor, lam: Tensor, gamma: Tensor, z: Tensor, bias: Tensor, eps: float, energy: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """A whole STPN time step in one pass per row: read, h = tanh((G z)_i / n_i + b_i), update.

    weight, lam, gamma (H, K); F (B, H, K); z (B, K); bias (H,). Each row of F is read from memory
    once and written once (the second loop over it hits the L1 cache), instead of the read and
    update kernels' two reads. Returns h (B, H), F_t (B, H, K, a new tensor), and the per-sample
    energy metric (B,) if ``energy`` else None.
    """
    h, F_t, _, _, total_energy = fused_step_saving(weight, F, lam, gamma, z, bias, eps, energy)
    return h, F_t, total_energy


def fused_step_saving(
    weight: Tensor, F: Tensor, lam: Tensor, gamma: Tensor, z: Tensor, bias: Tensor, eps: float, energy: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """``fused_step`` that also returns what its backward needs: h, F_t, n (B, H), y (B, H), energy."""
    f = array_of(F)
    batch, hidden, _ = f.shape
    h, n, y = (np.empty((batch, hidden), f.dtype) for _ in range(3))
    out = np.empty_like(f)
    row_energy = np.empty((batch, hidden) if energy else (0, 0), f.dtype)
    arrays = (array_of(t) for t in (weight, F, lam, gamma, z, bias))
    launch(_step_rows, *arrays, eps, h, n, y, out, row_energy, energy)
    total_energy = torch.from_numpy(row_energy.sum(axis=1)) if energy else None
    return torch.from_numpy(h), torch.from_numpy(out), torch.from_numpy(n), torch.from_numpy(y), total_energy
