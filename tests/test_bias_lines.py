"""Decay biases held by lines (device_models.bias_lines): against the device law, an independent
optimiser, closed forms, and what the array must never do (bias a device past the write threshold)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import minimize

from device_models.bias_lines import BIAS_TOPOLOGIES, dac_count, fit_line_bias
from device_models.card import DeviceCard, DeviceCardError, load_card
from device_models.realisation import Realisation
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses

CARD = load_card()
DT_S = 1 / 15


def test_line_bias_lambda_is_the_device_law_solved_at_v_row_minus_v_col() -> None:
    """Every device of a drawn chip (d2d on) retains what an ODE of its own decay law, held at
    V_row[r] - V_col[c] for dt, keeps: the lines are the only source of each device's bias."""
    real = Realisation.from_card(CARD, dt_s=DT_S, seed=4, shape=(3, 5), stuck=False)
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.9, 0.995, (3, 5))
    bias, achieved = real.bias_for_lambda(lam)
    lines = real.line_bias
    assert lines is not None and lines.row_v.shape == (3,) and lines.col_v.shape == (10,)
    b = CARD.bias
    for pol in range(2):
        for r in range(3):
            for j in range(5):
                v = lines.row_v[r] - lines.col_v[pol * 5 + j]
                assert bias[pol, r, j] == pytest.approx(v, abs=1e-12)
                tau = real.tau1_s[pol, r, j] * math.exp(-(v - b.bias_ref_v) / b.bias_efold_v)
                sol = solve_ivp(lambda _t, g, tau=tau: -g / tau, (0.0, DT_S), [1.0], rtol=1e-11, atol=1e-14)
                assert achieved[pol, r, j] == pytest.approx(sol.y[0, -1], rel=1e-8)
    assert np.all(bias >= b.bias_min_v - 1e-12) and np.all(bias <= b.bias_max_v + 1e-12)


def test_lambdas_that_lines_can_hold_are_met_exactly() -> None:
    """Targets made from line voltages (ln tau additive in row and column) come back exactly."""
    real = Realisation.from_card(CARD, dt_s=DT_S, seed=0, shape=(4, 6), d2d=False, stuck=False)
    rng = np.random.default_rng(1)
    row, col = rng.uniform(0.1, 0.55, 4), -rng.uniform(0.05, 0.6, 12)
    v = row[:, None] - col[None, :]
    b = CARD.bias
    tau = CARD.decay.tau_s * np.exp(-(v - b.bias_ref_v) / b.bias_efold_v)
    lam_hc = np.exp(-DT_S / tau)
    target = np.stack([lam_hc[:, :6], lam_hc[:, 6:]])
    _, achieved = real.bias_for_lambda(target)
    np.testing.assert_allclose(achieved, target, rtol=1e-9)
    assert real.line_bias is not None and real.line_bias.residual_ln_tau < 1e-8


def test_the_fit_is_the_constrained_least_squares_optimum() -> None:
    """Against SLSQP on the full problem: weighted log-time residual, every device inside the window."""
    rng = np.random.default_rng(2)
    h, k, lo, hi = 3, 3, 0.0, 1.2
    for _ in range(4):
        target = np.clip(rng.choice([0.0, 1.2], size=(2, h, k)) + rng.normal(0, 0.3, (2, h, k)), lo, hi)
        weight = rng.uniform(0.2, 1.0, (2, h, k))
        efold = rng.uniform(0.2, 0.3, (2, h, k))
        fit = fit_line_bias(target, efold, weight, (lo, hi))

        def cost(x: np.ndarray, weight=weight, target=target, efold=efold) -> float:
            full = x[:h, None] - x[None, h:]
            dev = np.stack([full[:, :k], full[:, k:]])
            return float(np.sum(weight * ((dev - target) / efold) ** 2))

        diffs = [(r, c) for r in range(h) for c in range(2 * k)]
        cons = [{"type": "ineq", "fun": lambda x, r=r, c=c: hi - (x[r] - x[h + c])} for r, c in diffs]
        cons += [{"type": "ineq", "fun": lambda x, r=r, c=c: (x[r] - x[h + c]) - lo} for r, c in diffs]
        best = min(
            (
                minimize(cost, rng.uniform(-0.6, 0.6, h + 2 * k), constraints=cons, method="SLSQP")
                for _ in range(6)
            ),
            key=lambda res: res.fun,
        )
        mine = cost(np.concatenate([fit.row_v, fit.col_v]))
        assert mine <= best.fun * 1.01 + 1e-9
        dev = fit.device_bias_v()
        assert dev.min() >= lo - 1e-9 and dev.max() <= hi + 1e-9
        total = weight / efold**2
        assert fit.residual_ln_tau == pytest.approx(math.sqrt(mine / total.sum()), rel=1e-9)


def test_rows_hold_each_rows_weighted_mean_and_columns_stay_at_zero() -> None:
    rng = np.random.default_rng(3)
    target = rng.uniform(0.0, 1.2, (2, 4, 5))
    weight = rng.uniform(0.1, 1.0, (2, 4, 5))
    fit = fit_line_bias(target, 0.25, weight, (0.0, 1.2), "rows")
    np.testing.assert_array_equal(fit.col_v, 0.0)
    by_hand = (weight * target).sum(axis=(0, 2)) / weight.sum(axis=(0, 2))
    np.testing.assert_allclose(fit.row_v, by_hand, rtol=1e-12)
    assert fit.dac_count == 4


def test_no_bias_leaves_every_device_at_its_zero_volt_retention() -> None:
    real = Realisation.from_card(CARD, dt_s=DT_S, seed=1, shape=(2, 3), stuck=False, bias="none")
    bias, achieved = real.bias_for_lambda(np.full((2, 3), 0.9))
    np.testing.assert_array_equal(bias, 0.0)
    b = CARD.bias
    tau0 = real.tau1_s * np.exp(b.bias_ref_v / b.bias_efold_v)
    np.testing.assert_allclose(achieved, np.exp(-DT_S / tau0), rtol=1e-12)
    lo, hi = real.lambda_range()
    np.testing.assert_allclose(lo, hi)


def test_dac_counts_per_topology() -> None:
    assert [dac_count(t, (64, 2656)) for t in BIAS_TOPOLOGIES] == [64 + 2 * 2656, 64, 2 * 64 * 2656, 0]


def test_a_card_whose_bias_window_reaches_the_write_threshold_is_refused() -> None:
    data = CARD.model_dump()
    data["bias"]["bias_max_v"] = 1.3  # the card's threshold
    with pytest.raises(DeviceCardError, match=r"bias window 0\.\.1\.3 V reaches pulse\.v_threshold_v"):
        DeviceCard.from_mapping(data)
    data["bias"]["bias_max_v"], data["bias"]["bias_min_v"] = 1.0, -1.4
    with pytest.raises(DeviceCardError, match=r"reaches pulse\.v_threshold_v"):
        DeviceCard.from_mapping(data)


def test_emulated_lines_decay_each_device_at_its_line_bias() -> None:
    """The emulated backend (native, noise off) decays F > 0 by G+'s and F < 0 by G-'s line-bias
    retention: an independent formula from the backend's own line voltages."""
    h, k = 3, 4
    xbar = EmulatedCrossbar(
        dt_s=DT_S, normalisation="native", read_noise=False, c2c=False, d2d=False, stuck=False,
        quantise=False, saturation=False, fault_aware=False,
    )  # fmt: skip
    torch.manual_seed(0)
    w = torch.rand(h, k, dtype=torch.float64) - 0.5
    lam = 0.9 + 0.09 * torch.rand(h, k, dtype=torch.float64)
    xbar.program(Synapses(w, lam, torch.zeros_like(w)))
    lines = xbar.line_bias
    assert lines is not None and xbar.stats()["dac_count"] == h + 2 * k
    b = CARD.bias
    v = lines.row_v[:, None] - lines.col_v[None, :]
    lam_hc = np.exp(-DT_S / (CARD.decay.tau_s * np.exp(-(v - b.bias_ref_v) / b.bias_efold_v)))
    F = torch.full((1, h, k), 1e-3, dtype=torch.float64)
    z, hh = torch.zeros(1, k, dtype=torch.float64), torch.zeros(1, h, dtype=torch.float64)
    n = torch.ones(1, h, dtype=torch.float64)
    np.testing.assert_allclose(xbar.update(F, n, hh, z)[0].numpy() / 1e-3, lam_hc[:, :k], rtol=1e-12)
    np.testing.assert_allclose(xbar.update(-F, n, hh, z)[0].numpy() / -1e-3, lam_hc[:, k:], rtol=1e-12)


# -- exact mode's row refreshes are done by the array: read, erase, rewrite -------------------------


def _exact(**switches: object) -> EmulatedCrossbar:
    options: dict[str, object] = dict(
        dt_s=0.1, read_noise=False, c2c=False, d2d=False, stuck=False, quantise=False, saturation=False,
        fault_aware=False, max_write_gain=2.0, bias="device",
    )  # fmt: skip
    options.update(switches)
    return EmulatedCrossbar(**options)  # type: ignore[arg-type]


def test_a_refresh_costs_the_reads_the_erase_and_the_rewrite_by_hand() -> None:
    """1 x 2 layer, s = 1/3 before the step and n = 2: s / n = 1/6 < 1/2, so the row is refreshed."""
    xbar = _exact()
    w = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    xbar.program(Synapses(w, torch.full_like(w, 0.9), torch.zeros_like(w)))
    F = xbar.initial_state(1) + torch.tensor([[[0.02, -0.01]]], dtype=torch.float64)
    xbar._adopt(F, torch.full((1, 1), 1 / 3, dtype=torch.float64))  # a state three steps of n = ~1.44 old
    xbar.reset_energy()
    z, h = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    xbar.update(F, torch.full((1, 1), 2.0, dtype=torch.float64), h, z)
    assert xbar.stats()["refresh_rows"] == 1 and xbar.stats()["refreshes_per_step"] == 1.0
    gpw = xbar.g_per_weight  # 38 nS per weight unit (window 1-20 nS, max |W| 0.5)
    assert gpw == pytest.approx(38e-9)
    f = np.array([0.02, 0.01]) * 3  # the devices hold F / s
    g_pair = 2 * 1e-9 + f * gpw  # both devices of each short-term pair, S
    e_read = 0.2**2 * 1e-6 * g_pair.sum()  # V^2 G t at one unit of read voltage
    w_erase = 100e-6 * math.log(1e3) * 5e-9 / 4e-10  # multiplicative depression to 1e-3, at 1.5 V
    e_erase = 1.5**2 * w_erase * g_pair.sum()
    e_rewrite = 1.5**2 * 1e-9 * (100e-6 * np.array([0.02, 0.01]) * gpw / 2e-10).sum()  # from rest
    assert xbar.energy()["refresh_j"] == pytest.approx(e_read + e_erase + e_rewrite, rel=1e-12)
    assert xbar.energy()["bias_j"] > 0 and xbar.energy()["program_j"] == 0


def test_a_refresh_adds_the_read_and_write_noise_of_the_array() -> None:
    """Monte Carlo over 4000 samples: the refreshed F scatters with var = s^2 var_read(f) + (c2c F)^2
    (read noise of f = F / s through the scale, and the rewrite's relative noise on the value)."""
    xbar = _exact(read_noise=True, c2c=True, bias_limits=False)  # lambda = 1 passes through
    w = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    xbar.program(Synapses(w, torch.ones_like(w), torch.zeros_like(w)))
    batch = 4000
    F = xbar.initial_state(batch) + torch.tensor([[0.02, -0.01]], dtype=torch.float64)
    s = 1 / 3
    xbar._adopt(F, torch.full((batch, 1), s, dtype=torch.float64))
    z, h = torch.zeros(batch, 2, dtype=torch.float64), torch.zeros(batch, 1, dtype=torch.float64)
    n = torch.ones(batch, 1, dtype=torch.float64)  # s / n = 1/3 < 1/2: every sample refreshes
    out = xbar.update(F, n, h, z)  # lambda = 1 on every device: decay leaves F as it is
    gpw, F0 = xbar.g_per_weight, np.array([0.02, -0.01])
    var_read = 0.01**2 * 2e-8 * (2e-9 + np.abs(F0) / s * gpw) / gpw**2
    var = s**2 * var_read + (0.05 * F0) ** 2  # independent read and rewrite noise
    got = out[:, 0, :].numpy()
    np.testing.assert_allclose(got.mean(0), F0, atol=4 * np.sqrt(var / batch).max())
    np.testing.assert_allclose(got.var(0), var, rtol=0.1)


def test_the_differentiable_retention_is_the_line_fit_and_its_gradient() -> None:
    """Inside the window the torch twin equals bias_for_lambda's lines, and its gradient equals a
    central finite difference of the numpy path (an independent route through scipy's fit)."""
    real = Realisation.from_card(CARD, dt_s=0.1, seed=6, shape=(3, 4), stuck=False)
    rng = np.random.default_rng(4)
    lam = rng.uniform(0.93, 0.98, (3, 4))
    _, achieved = real.bias_for_lambda(lam)
    lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
    twin = real.differentiable_retention(lam_t)
    np.testing.assert_allclose(twin.detach().numpy(), achieved, rtol=1e-9)
    weights = torch.tensor(rng.normal(size=(2, 3, 4)))
    (twin * weights).sum().backward()
    assert lam_t.grad is not None
    eps = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 3)]:
        up, down = lam.copy(), lam.copy()
        up[i, j] += eps
        down[i, j] -= eps
        diff = (real.bias_for_lambda(up)[1] - real.bias_for_lambda(down)[1]) / (2 * eps)
        assert float(lam_t.grad[i, j]) == pytest.approx(float((diff * weights.numpy()).sum()), rel=1e-5)
