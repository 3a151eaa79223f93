"""The report of a sweep: the metric against each swept parameter with its spread across seeds, a heat
map over two parameters, and tolerance thresholds with bootstrap confidence intervals.

Seeds. Every (chip seed, repeat) pair is one *seed*: an independent draw of the chip and of the test
data. Curves show the mean over seeds, a band of +-1 standard deviation across seeds and every seed's
value as a dot.

Tolerance threshold. ``best`` is the largest mean metric anywhere in the grid (smallest, for a metric
where lower is better, e.g. energy); the target is ``best - margin`` (``best + margin``). Along each
parameter, with the other swept parameters held at each of their value combinations in turn, the mean
curve is walked from its own best grid value towards larger values (an *upper* threshold: "tolerates
up to") and towards smaller ones (a *lower* threshold: "needs at least"); the threshold is where the
curve first crosses the target, linearly interpolated between the two grid values around the crossing.
A curve that never crosses within the swept range is *censored* (the threshold lies beyond the range,
shown as ">" or "<"); a curve whose own best misses the target has no threshold. The 95% confidence
interval comes from a bootstrap over seeds: the seeds are resampled with replacement (``bootstrap``
times), best, target, curves and threshold are recomputed on each resample, and the 2.5% and 97.5%
quantiles of the thresholds are reported (a censored resample counts as beyond the range).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from experiments.sweeps.spec import SweepSpec
from hwloop.errors import HwloopError

CI_LEVEL = 0.95


class ReportError(HwloopError):
    """The results cannot be reported (no finished points, an unknown parameter)."""


@dataclass
class Grid:
    """The finished points as an array: ``values[combo, seed]`` (NaN where a point failed or is missing).

    ``axes``: each parameter's sorted grid values; ``combos``: index tuples into ``axes``, one per row;
    ``seeds``: (chip seed, repeat) per column.
    """

    params: list[str]
    axes: list[list[Any]]
    combos: list[tuple[int, ...]]
    seeds: list[tuple[int, int]]
    values: np.ndarray
    higher_is_better: bool
    metric: str

    def mean(self, columns: np.ndarray | None = None) -> np.ndarray:
        """Mean over seeds (or the seed columns ``columns``) per combo; NaN where nothing finished."""
        data = self.values if columns is None else self.values[:, columns]
        with np.errstate(all="ignore"):
            count = np.sum(~np.isnan(data), axis=1)
            total = np.nansum(data, axis=1)
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def curve_rows(self, param: int, at: tuple[int, ...]) -> list[int]:
        """Row indices of the combos along ``param`` with the other parameters at index tuple ``at``."""
        index = {combo: row for row, combo in enumerate(self.combos)}
        rows = []
        for i in range(len(self.axes[param])):
            combo = (*at[:param], i, *at[param:])
            rows.append(index[combo])
        return rows


def grid_from(spec: SweepSpec, table: pa.Table) -> Grid:
    """Arrange the "ok" rows of a results table on the spec's grid."""
    rows = [r for r in table.to_pylist() if r["status"] == "ok" and r["value"] is not None]
    if not rows:
        raise ReportError("no finished points to report (every point failed or none has run yet)")
    params = spec.params
    axes = [
        sorted({r[p] for r in rows} | set(_numeric(a.grid_values())))
        for p, a in zip(params, spec.grid, strict=True)
    ]
    seeds = sorted({(int(r["chip_seed"]), int(r["repeat"])) for r in rows})
    combos = list(itertools.product(*(range(len(a)) for a in axes)))
    row_of = {combo: i for i, combo in enumerate(combos)}
    col_of = {seed: j for j, seed in enumerate(seeds)}
    pos = [{v: i for i, v in enumerate(a)} for a in axes]
    values = np.full((len(combos), len(seeds)), np.nan)
    for r in rows:
        combo = tuple(pos[k][r[p]] for k, p in enumerate(params))
        values[row_of[combo], col_of[(int(r["chip_seed"]), int(r["repeat"]))]] = float(r["value"])
    return Grid(params, axes, combos, seeds, values, spec.higher_is_better, spec.metric)


def _numeric(values: list[Any]) -> list[Any]:
    return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]


# -- thresholds ------------------------------------------------------------------------------------
@dataclass
class Threshold:
    """Where the metric along ``param`` (others at ``at``) crosses ``target`` = best -/+ margin.

    ``direction``: "upper" (tolerates up to) or "lower" (needs at least). ``value``: the crossing,
    ``None`` when censored (``censored`` says beyond which end) or when the curve never reaches the
    target (``reached`` False). ``ci``: 95% bootstrap interval; an end beyond the range is +-inf.
    """

    param: str
    at: dict[str, Any]
    direction: str
    best: float
    target: float
    value: float | None
    censored: bool
    reached: bool
    ci: tuple[float, float] | None = None
    seeds: int = 0
    resamples: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (inf written as the strings "inf" / "-inf")."""
        ci = None if self.ci is None else [_finite_or_str(x) for x in self.ci]
        return {
            "param": self.param,
            "at": self.at,
            "direction": self.direction,
            "best": self.best,
            "target": self.target,
            "threshold": self.value,
            "censored": self.censored,
            "reached": self.reached,
            "ci95": ci,
            "seeds": self.seeds,
            "bootstrap_resamples": self.resamples,
        }


def _finite_or_str(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def crossing(xs: np.ndarray, ys: np.ndarray, target: float, higher_is_better: bool, direction: str) -> float:
    """The first x, walking from the curve's best point in ``direction``, where ys crosses ``target``.

    Linear interpolation between the grid points around the crossing. Returns +inf ("upper") / -inf
    ("lower") when the curve stays on the good side to the end of the range, NaN when the curve's best
    is already on the bad side. NaN entries of ys (failed points) are skipped.
    """
    keep = ~np.isnan(ys)
    xs, ys = xs[keep], ys[keep]
    if len(xs) == 0:
        return math.nan
    good = ys >= target if higher_is_better else ys <= target
    start = int(np.argmax(ys) if higher_is_better else np.argmin(ys))
    if not good[start]:
        return math.nan
    step = 1 if direction == "upper" else -1
    i = start
    while 0 <= i + step < len(xs):
        j = i + step
        if not good[j]:
            x0, x1, y0, y1 = xs[i], xs[j], ys[i], ys[j]
            return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
        i = j
    return math.inf if direction == "upper" else -math.inf


def thresholds(grid: Grid, margin: float, resamples: int = 1000, seed: int = 0) -> list[Threshold]:
    """Tolerance thresholds of every numeric parameter at every combination of the others (module doc)."""
    sign = -1.0 if grid.higher_is_better else 1.0
    rng = np.random.default_rng(seed)
    n_seeds = len(grid.seeds)
    boot_cols = [rng.integers(0, n_seeds, n_seeds) for _ in range(resamples)] if n_seeds > 1 else []
    boot_means = [grid.mean(cols) for cols in boot_cols]
    mean = grid.mean()
    best = float(np.nanmax(mean) if grid.higher_is_better else np.nanmin(mean))
    target = best + sign * margin
    boot_targets = [
        float(np.nanmax(m) if grid.higher_is_better else np.nanmin(m)) + sign * margin for m in boot_means
    ]
    out: list[Threshold] = []
    for k, param in enumerate(grid.params):
        axis = grid.axes[k]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis) or len(axis) < 2:
            continue
        xs = np.asarray(axis, dtype=float)
        others = [range(len(a)) for j, a in enumerate(grid.axes) if j != k]
        for at in itertools.product(*others):
            rows = grid.curve_rows(k, at)
            at_values = {p: grid.axes[j][i] for (j, p), i in zip(_others(grid.params, k), at, strict=True)}
            for direction in ("upper", "lower"):
                x = crossing(xs, mean[rows], target, grid.higher_is_better, direction)
                reached = not math.isnan(x)
                th = Threshold(
                    param=param,
                    at=at_values,
                    direction=direction,
                    best=best,
                    target=target,
                    value=x if reached and math.isfinite(x) else None,
                    censored=reached and not math.isfinite(x),
                    reached=reached,
                    seeds=n_seeds,
                    resamples=len(boot_means),
                )
                if boot_means:
                    draws = np.array(
                        [
                            crossing(xs, m[rows], t, grid.higher_is_better, direction)
                            for m, t in zip(boot_means, boot_targets, strict=True)
                        ]
                    )
                    draws = draws[~np.isnan(draws)]
                    if len(draws):
                        lo, hi = np.quantile(
                            draws, [(1 - CI_LEVEL) / 2, (1 + CI_LEVEL) / 2], method="inverted_cdf"
                        )
                        th.ci = (float(lo), float(hi))
                out.append(th)
    return [t for t in out if _informative(t, out)]


def _others(params: list[str], k: int) -> list[tuple[int, str]]:
    return [(j, p) for j, p in enumerate(params) if j != k]


def _informative(t: Threshold, all_: list[Threshold]) -> bool:
    """Keep a direction only where it says something: a crossing, or the only censored answer."""
    if t.value is not None:
        return True
    same = [o for o in all_ if o.param == t.param and o.at == t.at]
    if any(o.value is not None for o in same):
        return False
    return t.direction == "upper"  # neither direction crosses: one row says "tolerates the whole range"


def describe(t: Threshold, axis: list[Any]) -> str:
    """One human line for a threshold, e.g. ``<= 0.043 (95% CI 0.031-0.057)``."""
    lo_end, hi_end = float(min(axis)), float(max(axis))
    if not t.reached:
        return "never within margin of the best"
    if t.censored:
        text = f"tolerates the whole range (> {hi_end:g})" if t.direction == "upper" else f"< {lo_end:g}"
    else:
        text = f"{'<=' if t.direction == 'upper' else '>='} {t.value:.4g}"
    if t.ci is None:
        return text + (" (one seed: no CI)" if t.seeds <= 1 else "")
    lo, hi = t.ci
    show = [
        f"{v:.4g}" if math.isfinite(v) else (f">{hi_end:g}" if v > 0 else f"<{lo_end:g}") for v in (lo, hi)
    ]
    return f"{text} (95% CI {show[0]} to {show[1]})"


# -- figure ----------------------------------------------------------------------------------------
MAX_LINES = 6


def plot_report(grid: Grid, found: list[Threshold], margin: float, out: Path, title: str) -> None:
    """Write the report figure: one panel per parameter (metric vs value, seed spread, thresholds),
    plus a heat map of the first two parameters (others averaged) with the best - margin contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(grid.params)
    panels = n + (1 if n >= 2 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.0), squeeze=False)
    mean_all = grid.mean()
    best = float(np.nanmax(mean_all) if grid.higher_is_better else np.nanmin(mean_all))
    target = best + (-margin if grid.higher_is_better else margin)
    for k, param in enumerate(grid.params):
        ax = axes[0, k]
        _param_panel(ax, grid, k, found, target)
        ax.set_xlabel(param)
        ax.set_ylabel(grid.metric)
        ax.axhline(
            target,
            color="0.4",
            ls="--",
            lw=1,
            label=f"best {'-' if grid.higher_is_better else '+'} {margin:g}",
        )
        ax.legend(fontsize=7, loc="best")
    if n >= 2:
        _heatmap(axes[0, n], grid, target)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _param_panel(ax: Any, grid: Grid, k: int, found: list[Threshold], target: float) -> None:
    axis = grid.axes[k]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis)
    xs = np.asarray(axis, dtype=float) if numeric else np.arange(len(axis), dtype=float)
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in axis])
    others = [range(len(a)) for j, a in enumerate(grid.axes) if j != k]
    ats = list(itertools.product(*others))
    colors = ax._get_lines.get_next_color  # matplotlib's colour cycle
    if len(ats) > MAX_LINES:  # too many lines: average over the other parameters
        curves = [("mean over other parameters", [grid.curve_rows(k, at) for at in ats])]
    else:
        curves = []
        for at in ats:
            label = ", ".join(
                f"{p.split('.')[-1]}={grid.axes[j][i]:g}"
                if isinstance(grid.axes[j][i], float)
                else f"{p.split('.')[-1]}={grid.axes[j][i]}"
                for (j, p), i in zip(_others(grid.params, k), at, strict=True)
            )
            curves.append((label or "mean over seeds", [grid.curve_rows(k, at)]))
    for label, row_sets in curves:
        color = colors()
        per_seed = np.nanmean(np.stack([grid.values[rows] for rows in row_sets]), axis=0)  # (values, seeds)
        with np.errstate(all="ignore"):
            mean = np.nanmean(per_seed, axis=1)
            std = np.nanstd(per_seed, axis=1)
        ax.plot(xs, mean, "-o", color=color, ms=3, label=label)
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.18, lw=0)
        for j in range(per_seed.shape[1]):
            ax.plot(xs, per_seed[:, j], ".", color=color, alpha=0.35, ms=3)
        if len(row_sets) == 1 and numeric:
            at_values = _at_of(grid, k, row_sets[0])
            for t in found:
                if t.param == grid.params[k] and t.at == at_values and t.value is not None:
                    err = None
                    if t.ci is not None and all(math.isfinite(v) for v in t.ci):
                        err = [[t.value - t.ci[0]], [t.ci[1] - t.value]]
                    ax.errorbar([t.value], [target], xerr=err, fmt="v", color=color, ms=7, capsize=3)


def _at_of(grid: Grid, k: int, rows: list[int]) -> dict[str, Any]:
    combo = grid.combos[rows[0]]
    return {p: grid.axes[j][combo[j]] for j, p in _others(grid.params, k)}


def _heatmap(ax: Any, grid: Grid, target: float) -> None:
    a0, a1 = grid.axes[0], grid.axes[1]
    mean = grid.mean()
    image = np.full((len(a1), len(a0)), np.nan)
    sums: dict[tuple[int, int], list[float]] = {}
    for row, combo in enumerate(grid.combos):
        if not np.isnan(mean[row]):
            sums.setdefault((combo[0], combo[1]), []).append(float(mean[row]))
    for (i, j), vals in sums.items():
        image[j, i] = float(np.mean(vals))
    im = ax.imshow(
        image, origin="lower", aspect="auto", cmap="viridis" if grid.higher_is_better else "viridis_r"
    )
    ax.figure.colorbar(im, ax=ax, label=grid.metric + (" (mean over others)" if len(grid.axes) > 2 else ""))
    if np.nanmin(image) < target < np.nanmax(image) and min(image.shape) >= 2:
        ax.contour(np.nan_to_num(image, nan=np.nanmin(image)), levels=[target], colors="red", linewidths=1.5)
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    for j in range(len(a1)):
        for i in range(len(a0)):
            if not np.isnan(image[j, i]):
                bright = (image[j, i] - lo) / ((hi - lo) or 1.0)
                bright = bright if grid.higher_is_better else 1 - bright
                color = "black" if bright > 0.6 else "white"  # readable on viridis' light and dark ends
                ax.text(i, j, f"{image[j, i]:.3g}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(a0)), [f"{v:g}" if isinstance(v, float) else str(v) for v in a0], fontsize=7)
    ax.set_yticks(range(len(a1)), [f"{v:g}" if isinstance(v, float) else str(v) for v in a1], fontsize=7)
    ax.set_xlabel(grid.params[0])
    ax.set_ylabel(grid.params[1])
    ax.set_title("mean over seeds; red: the best - margin contour", fontsize=8)
