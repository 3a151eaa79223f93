"""Tolerance thresholds: the crossing against hand-computed interpolation, the bootstrap CI against a
known truth, and the report figure and table from the CLI."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from experiments.sweeps.report import Grid, crossing, thresholds
from experiments.sweeps.spec import spec_from_mapping
from experiments.sweeps.store import ResultStore


def test_crossing_interpolates_linearly_between_the_grid_values_around_it() -> None:
    xs = np.array([0.0, 1.0, 2.0, 3.0])
    ys = np.array([1.0, 0.9, 0.7, 0.5])
    # 0.8 lies halfway between 0.9 (x=1) and 0.7 (x=2)
    assert crossing(xs, ys, 0.8, True, "upper") == pytest.approx(1.5)
    assert crossing(xs, ys, 0.4, True, "upper") == math.inf  # never crosses: censored beyond the range
    assert crossing(xs, ys, 0.8, True, "lower") == -math.inf  # nothing below the best point
    assert math.isnan(crossing(xs, ys, 1.1, True, "upper"))  # the curve never reaches the target
    # a parameter where more is better (levels): the threshold is a lower one, walked from the best down
    assert crossing(xs, ys[::-1].copy(), 0.8, True, "lower") == pytest.approx(1.5)
    # lower-is-better metric (energy): target above the best, crossing where the curve rises through it
    assert crossing(xs, np.array([1.0, 2.0, 4.0, 8.0]), 3.0, False, "upper") == pytest.approx(1.5)
    # a failed point (NaN) is skipped: interpolation runs between its neighbours
    assert crossing(xs, np.array([1.0, np.nan, 0.6, 0.5]), 0.8, True, "upper") == pytest.approx(1.0)


def synthetic_grid(noise: float, seeds: int, rng: np.random.Generator) -> tuple[Grid, float]:
    """metric = 1 - x^2 for x in 0..1 plus a per-seed offset; the 0.1 drop from the best (1) is at
    x = sqrt(0.1) on the noise-free curve."""
    xs = list(np.linspace(0.0, 1.0, 21))
    true = np.array([1 - x**2 for x in xs])
    offsets = noise * rng.standard_normal(seeds)
    values = true[:, None] + offsets[None, :]
    grid = Grid(
        params=["x"],
        axes=[xs],
        combos=[(i,) for i in range(len(xs))],
        seeds=[(s, 0) for s in range(seeds)],
        values=values,
        higher_is_better=True,
        metric="m",
    )
    return grid, math.sqrt(0.1)


def test_threshold_matches_the_analytic_crossing_and_its_ci_is_degenerate_without_seed_spread() -> None:
    grid, truth = synthetic_grid(0.0, 4, np.random.default_rng(0))
    [th] = thresholds(grid, margin=0.1, resamples=200)
    assert th.direction == "upper"
    assert th.value == pytest.approx(truth, abs=0.01)  # grid step 0.05; chord interpolation error < 0.01
    assert th.ci == (pytest.approx(th.value), pytest.approx(th.value))


def test_bootstrap_ci_covers_the_true_threshold_at_about_the_stated_rate() -> None:
    """Per-seed offsets move the whole curve, and with it best and target: the threshold is then
    invariant, so use a per-seed *slope* spread instead, whose effect on the crossing is known."""
    rng = np.random.default_rng(1)
    xs = np.linspace(0.0, 1.0, 41)
    covered, trials = 0, 40
    for _ in range(trials):
        slopes = 1.0 + 0.3 * rng.standard_normal(8)  # metric = 1 - slope * x^2, mean slope 1
        values = 1 - slopes[None, :] * xs[:, None] ** 2
        grid = Grid(
            ["x"], [list(xs)], [(i,) for i in range(len(xs))], [(s, 0) for s in range(8)], values, True, "m"
        )
        [th] = thresholds(grid, margin=0.1, resamples=300, seed=int(rng.integers(1 << 30)))
        assert th.ci is not None
        truth = math.sqrt(0.1 / 1.0)  # the population mean curve crosses 0.9 here
        covered += th.ci[0] <= truth <= th.ci[1]
    # a percentile bootstrap with 8 seeds under-covers somewhat; far below 95% would mean a broken CI
    assert covered >= 0.75 * trials


def test_one_seed_gives_a_threshold_without_ci_and_two_parameters_give_one_per_other_value() -> None:
    axes = [[0.0, 0.5, 1.0], [0.0, 1.0]]
    combos = list(itertools.product(range(3), range(2)))
    # metric = 1 - a*x - 0.2*y  (x first parameter, y second); best 1 at (0, 0)
    values = np.array([[1 - 0.4 * axes[0][i] - 0.2 * axes[1][j]] for i, j in combos])
    grid = Grid(["x", "y"], axes, combos, [(0, 0)], values, True, "m")
    found = thresholds(grid, margin=0.1)
    x_at_y0 = next(t for t in found if t.param == "x" and t.at == {"y": 0.0})
    assert x_at_y0.value == pytest.approx(0.25) and x_at_y0.ci is None  # 1 - 0.4 x = 0.9
    y_at_x0 = next(t for t in found if t.param == "y" and t.at == {"x": 0.0})
    assert y_at_x0.value == pytest.approx(0.5)  # 1 - 0.2 y = 0.9
    x_at_y1 = next(t for t in found if t.param == "x" and t.at == {"y": 1.0})
    assert not x_at_y1.reached  # at y = 1 the best is 0.8: never within 0.1 of 1


def test_report_cli_writes_a_figure_and_thresholds_from_a_results_dataset(tmp_path: Path, hwloop_run) -> None:
    """A dataset written through the store (synthetic metrics) is reported end to end."""
    spec = spec_from_mapping(
        {
            "name": "synthetic",
            "task": {"kind": "art-eval", "n": 10},
            "grid": [
                {"param": "variability.read_noise_rel", "values": [0.0, 0.01, 0.02, 0.04]},
                {"param": "variability.d2d_tau_rel", "values": [0.0, 0.5]},
            ],
            "seeds": {"chip": [0, 1, 2]},
        }
    )
    store = ResultStore(tmp_path / "res", spec)
    rows = []
    for p in spec.points():
        noise, tau = p.params["variability.read_noise_rel"], p.params["variability.d2d_tau_rel"]
        value = 0.95 - 10 * noise - 0.02 * tau + 0.001 * p.chip_seed
        rows.append(
            {
                "point_id": p.id,
                **p.params,
                "chip_seed": p.chip_seed,
                "repeat": p.repeat,
                "status": "ok",
                "attempts": 1,
                "value": value,
                "accuracy": value,
                "finished_at": datetime.now(UTC),
            }
        )
    store.append(rows)
    out, js = tmp_path / "fig.png", tmp_path / "th.json"
    result = hwloop_run("sweep", "report", str(tmp_path / "res"), "--out", str(out), "--json-out", str(js))
    assert result.code == 0, result.err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    report = json.loads(js.read_text())
    th = next(
        t
        for t in report["thresholds"]
        if t["param"] == "variability.read_noise_rel" and t["at"] == {"variability.d2d_tau_rel": 0.0}
    )
    # best mean 0.951 at (0, 0); target 0.901; 0.951 - 10 x = 0.901 -> x = 0.005 exactly (linear curve)
    assert th["threshold"] == pytest.approx(0.005)
    assert "bootstrap over 3 seeds" in result.err
