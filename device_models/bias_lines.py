"""Decay biases a crossbar can hold: one voltage per line, not one source per device.

A passive array of H rows by 2K columns (G+ of synapse (i, j) in column j, G- in column K + j) has
H row lines and 2K column lines; device (r, c) sits at row_v[r] - col_v[c]. The bias topologies
(``BiasTopology``) and their line drivers (DACs):

    lines    H + 2K drivers    bias(r, c) = row_v[r] - col_v[c]            (the default; a real array)
    rows     H drivers         bias(r, c) = row_v[r], columns held at 0 V
    device   2HK sources       bias(r, c) free per device (1T1R-style access; an idealisation)
    none     0 drivers         every line at 0 V

Compiling per-device target biases onto lines (``fit_line_bias``) is a least-squares problem in the
law's log-time: a bias error dV on a device of e-fold voltage e is an error of dV / e in ln tau
(``device_models.memristor.tau_at_bias``), so each device's residual is weighted by 1 / e, and only
devices that hold a volatile state count. Every device must stay inside the card's bias window
[b_min, b_max] (which the card keeps below the write threshold). With v = -col_v the constraint
row_v[r] + v[c] in [b_min, b_max] for every (r, c) holds exactly when the row voltages span a width
a and the column voltages a width (b_max - b_min) - a around a common mode; the split a is taken
from the unconstrained fit (each side keeps its own share of the spread), and the fit is then
solved with those box bounds by ``scipy.optimize.lsq_linear`` (sparse, two non-zeros per device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import lsq_linear
from scipy.sparse import csr_matrix

from device_models.errors import HwloopError

Array = NDArray[np.float64]
BiasTopology = Literal["lines", "rows", "device", "none"]
BIAS_TOPOLOGIES: tuple[str, ...] = get_args(BiasTopology)
DEFAULT_TOPOLOGY: BiasTopology = "lines"


class BiasTopologyError(HwloopError):
    """An unknown bias topology, or line voltages asked of an impossible window."""


def check_topology(name: str) -> BiasTopology:
    """``name`` if it is a known topology; one clear error otherwise."""
    if name not in BIAS_TOPOLOGIES:
        raise BiasTopologyError(f"bias must be one of {', '.join(BIAS_TOPOLOGIES)}, got {name!r}")
    return name  # type: ignore[return-value]


def dac_count(topology: str, shape: tuple[int, int]) -> int:
    """Independent bias sources (line drivers) an (H, K) layer's H x 2K array needs under ``topology``."""
    h, k = shape
    return {"lines": h + 2 * k, "rows": h, "device": 2 * h * k, "none": 0}[check_topology(topology)]


@dataclass(frozen=True)
class LineBias:
    """Idle voltages of the array's lines (V); device (r, c) sits at ``row_v[r] - col_v[c]``.

    row_v: (H,) one per row line. col_v: (2K,) one per column line; column c < K holds G+ of synapse
    column c, column K + c holds G-. residual_ln_tau: RMS over the weighted devices of the fit's error
    in ln(time) (0 when every target was met). topology: "lines" or "rows" (col_v all 0 V).
    """

    row_v: Array
    col_v: Array
    residual_ln_tau: float
    topology: str = "lines"

    def device_bias_v(self) -> Array:
        """(2, H, K) bias of every device (V): [G+ at row_v - col_v[:K], G- at row_v - col_v[K:]]."""
        k = self.col_v.size // 2
        full = self.row_v[:, None] - self.col_v[None, :]
        return np.stack([full[:, :k], full[:, k:]])

    @property
    def dac_count(self) -> int:
        """Line drivers this bias needs (row lines, plus column lines unless topology is "rows")."""
        return self.row_v.size + (self.col_v.size if self.topology == "lines" else 0)


def fit_line_bias(
    target_v: Array, efold_v: Array, weight: Array, window_v: tuple[float, float], topology: str = "lines"
) -> LineBias:
    """Line voltages whose device biases best meet per-device targets, in the law's log-time.

    target_v: (2, H, K) bias (V) each device needs (already inside the window; a target outside is
    clipped to it first). efold_v: (2, H, K) or scalar e-fold voltage of tau(V) per device (V).
    weight: (2, H, K) >= 0, 0 for devices whose bias does not matter (stuck, broken). window_v:
    (b_min, b_max) of the card. topology: "lines" (rows and columns) or "rows" (columns at 0 V).
    Minimises sum_d weight_d ((bias_d - target_d) / efold_d)^2 with every bias inside the window.
    """
    lo, hi = float(window_v[0]), float(window_v[1])
    if not hi > lo:
        raise BiasTopologyError(f"bias window must have b_max > b_min, got {lo:g}..{hi:g} V")
    t = np.clip(np.asarray(target_v, dtype=np.float64), lo, hi)
    k = t.shape[2]
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), t.shape)
    e = np.abs(np.broadcast_to(np.asarray(efold_v, dtype=np.float64), t.shape))
    sw = np.sqrt(np.where(np.isfinite(t) & (w > 0), w, 0.0)) / e  # sqrt weight in ln(time) per volt
    t = np.where(sw > 0, t, 0.0)
    # devices as (H, 2K): column c < K is G+ of synapse column c, K + c its G-
    t_hc = np.concatenate([t[0], t[1]], axis=1)
    sw_hc = np.concatenate([sw[0], sw[1]], axis=1)
    if topology == "rows":
        den = (sw_hc**2).sum(1)
        row = np.where(den > 0, (sw_hc**2 * t_hc).sum(1) / np.maximum(den, 1e-300), (lo + hi) / 2)
        row = np.clip(row, lo, hi)
        col = np.zeros(2 * k)
    elif topology == "lines":
        row, v = _two_way_fit(t_hc, sw_hc, lo, hi)
        col = -v
    else:
        raise BiasTopologyError(f"line voltages exist for topologies 'lines' and 'rows', not {topology!r}")
    bias = row[:, None] - col[None, :]
    err = (bias - t_hc) * sw_hc
    total = float((sw_hc**2).sum())
    residual = float(np.sqrt((err**2).sum() / total)) if total > 0 else 0.0
    return LineBias(row, col, residual, topology)


def _two_way_fit(t: Array, sw: Array, lo: float, hi: float) -> tuple[Array, Array]:
    """(u (H,), v (C,)) minimising sum sw^2 (u_r + v_c - t_rc)^2 with every u_r + v_c in [lo, hi].

    The exact feasible set is max u + max v <= hi and min u + min v >= lo; it is met by boxes
    u in [m + lo/2, m + lo/2 + a], v in [-m + lo/2, -m + lo/2 + (hi - lo) - a] for any common mode m
    and split a. The split comes from the spreads of the unconstrained fit.
    """
    h, c = t.shape
    rows, cols = np.nonzero(sw > 0)
    if rows.size == 0:
        mid = (lo + hi) / 4
        return np.full(h, mid), np.full(c, mid)
    data = sw[rows, cols]
    n = rows.size
    a_mat = csr_matrix(
        (np.concatenate([data, data]), (np.tile(np.arange(n), 2), np.concatenate([rows, h + cols]))),
        shape=(n, h + c),
    )
    b = data * t[rows, cols]
    free = lsq_linear(a_mat, b, lsq_solver="lsmr", method="trf", tol=1e-10)
    u, v = free.x[:h], free.x[h:]
    used_u, used_v = np.any(sw > 0, axis=1), np.any(sw > 0, axis=0)
    width = hi - lo
    spread_u, spread_v = float(np.ptp(u[used_u])), float(np.ptp(v[used_v]))
    inside = u[used_u].max() + v[used_v].max() <= hi and u[used_u].min() + v[used_v].min() >= lo
    if not inside:
        total = spread_u + spread_v
        a = width * (spread_u / total if total > 0 else 0.5)
        base = lo / 2
        lower = np.concatenate([np.full(h, base), np.full(c, base)])
        upper = np.concatenate([np.full(h, base + a), np.full(c, base + width - a)])
        boxed = lsq_linear(a_mat, b, bounds=(lower, upper), lsq_solver="lsmr", method="trf", tol=1e-10)
        u, v = np.clip(boxed.x[:h], lower[:h], upper[:h]), np.clip(boxed.x[h:], lower[h:], upper[h:])
    # a line with no device that matters still biases its devices: put it mid-way in what keeps them
    # all inside the window, given the other side's lines
    u = np.where(used_u, u, (lo - v[used_v].min() + hi - v[used_v].max()) / 2)
    v = np.where(used_v, v, (lo - u.min() + hi - u.max()) / 2)
    return u, v
