"""Batched decay fits against known ground truth, scipy's curve_fit, and the measured VO2 traces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from calibration.fit import fit_decay
from device_models.laws import best_step_lambda
from device_models.record import CalibrationError

N = 200
T = np.linspace(0.01, 5.0, N)


def exp_traces(d: int, noise_rel: float, seed: int = 0, outlier_frac: float = 0.0):
    """Single-exponential relaxations with a non-zero baseline, Gaussian noise and optional outliers."""
    rng = np.random.default_rng(seed)
    tau = rng.uniform(0.2, 2.5, d)
    amp = rng.uniform(1.0, 3.0, d) * 1e-9
    base = rng.uniform(5.0, 10.0, d) * 1e-9
    g = base[:, None] + amp[:, None] * np.exp(-T / tau[:, None])
    g = g + noise_rel * amp[:, None] * rng.standard_normal(g.shape)
    hit = rng.random(g.shape) < outlier_frac
    g[hit] += 0.5 * amp[:, None].repeat(N, 1)[hit] * rng.choice([-1.0, 1.0], hit.sum())
    return tau, amp, base, g


def test_exp_recovers_known_tau_baseline_and_amplitude():
    tau, amp, base, g = exp_traces(400, noise_rel=0.01)
    fit = fit_decay(T, g, model="exp")
    assert fit.ok.all()
    assert np.median(np.abs(fit.tau / tau - 1)) < 0.01
    assert np.median(np.abs(fit.g_inf / base - 1)) < 0.01
    assert np.median(np.abs(fit.delta_g / amp - 1)) < 0.01
    # the reported one-sigma uncertainty matches the actual scatter (pulls ~ N(0, 1))
    pulls = (fit.tau - tau) / fit.tau_err
    assert 0.7 < np.std(pulls) < 1.3
    assert np.all(fit.r2 > 0.99)


def test_exp_is_robust_to_outliers():
    tau, _, _, g = exp_traces(400, noise_rel=0.01, seed=1, outlier_frac=0.03)
    robust = fit_decay(T, g, model="exp")
    plain = fit_decay(T, g, model="exp", robust=False)
    err_robust = np.median(np.abs(robust.tau / tau - 1))
    err_plain = np.median(np.abs(plain.tau / tau - 1))
    assert err_robust < 0.015
    assert err_robust < 0.5 * err_plain


def test_exp_matches_scipy_curve_fit():
    """Plain least squares must land on the same minimum as scipy's independent LM."""
    tau, amp, base, g = exp_traces(25, noise_rel=0.02, seed=2)
    fit = fit_decay(T, g, model="exp", robust=False)
    for i in range(25):
        p, cov = curve_fit(
            lambda t, c, a, ta: c + a * np.exp(-t / ta), T, g[i], p0=(base[i], amp[i], tau[i]), maxfev=5000
        )
        assert fit.tau[i] == pytest.approx(p[2], rel=1e-5)
        assert fit.g_inf[i] == pytest.approx(p[0], rel=1e-5, abs=1e-15)
        assert fit.tau_err[i] == pytest.approx(np.sqrt(cov[2, 2]), rel=0.02)


def test_per_device_time_axes():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 4.0, (50, N)), axis=1)  # non-uniform, different per device
    tau = rng.uniform(0.3, 1.5, 50)
    g = 1e-9 + 2e-9 * np.exp(-t / tau[:, None]) + 1e-12 * rng.standard_normal(t.shape)
    fit = fit_decay(t, g, model="exp")
    assert fit.ok.all()
    assert np.max(np.abs(fit.tau / tau - 1)) < 0.01


def test_bad_devices_get_a_status_and_never_spoil_the_batch():
    tau, _, _, g = exp_traces(8, noise_rel=0.01, seed=4)
    t = np.broadcast_to(T, g.shape).copy()
    g[0, 10] = np.nan
    t[1, 50] = t[1, 49]  # repeated timestamp
    t[2, 60:] = t[2, 60:][::-1].copy()  # time running backwards
    g[3] = 7e-9  # constant trace
    g[4] = 7e-9 + 1e-12 * np.random.default_rng(5).standard_normal(N)  # noise, no decay
    fit = fit_decay(t, g, model="exp")
    assert list(fit.status[:5]) == ["nan", "nonincreasing_time", "nonincreasing_time", "flat", "flat"]
    assert np.isnan(fit.tau[:5]).all()
    assert fit.ok[5:].all()
    assert np.max(np.abs(fit.tau[5:] / tau[5:] - 1)) < 0.05


def test_too_few_points_and_unresolved_tau():
    few = fit_decay(T[:3], np.ones((2, 3)) + np.arange(3)[::-1], model="exp")
    assert list(few.status) == ["too_few_points"] * 2
    # tau 20x the record: the decay is visible but nearly a straight line, tau cannot be told
    g = 1e-9 + 1e-9 * np.exp(-T / 100.0)[None, :] + 1e-14 * np.random.default_rng(6).standard_normal((3, N))
    assert set(fit_decay(T, g, model="exp").status) == {"tau_unresolved"}


def test_malformed_arrays_raise_one_clear_error():
    with pytest.raises(CalibrationError, match="t must be"):
        fit_decay(np.arange(5.0), np.ones((2, 6)))
    with pytest.raises(CalibrationError, match="unknown decay model"):
        fit_decay(T, np.ones((1, N)), model="linear")


def test_biexp_and_stretched_recover_their_parameters():
    rng = np.random.default_rng(7)
    d = 20
    t = np.linspace(0.005, 10.0, 400)
    tau1, tau2, w1 = rng.uniform(0.1, 0.3, d), rng.uniform(2.0, 4.0, d), rng.uniform(0.4, 0.7, d)
    g = 1.0 + w1[:, None] * np.exp(-t / tau1[:, None]) + (1 - w1[:, None]) * np.exp(-t / tau2[:, None])
    fit = fit_decay(t, g + 1e-4 * rng.standard_normal(g.shape), model="biexp")
    assert fit.ok.all()
    assert np.max(np.abs(fit.tau / tau1 - 1)) < 0.03
    assert np.max(np.abs(fit.tau2 / tau2 - 1)) < 0.03
    assert np.max(np.abs(fit.w1 - w1)) < 0.02
    beta, tau = rng.uniform(0.3, 0.8, d), rng.uniform(0.5, 2.0, d)
    g = 2.0 + np.exp(-((t / tau[:, None]) ** beta[:, None]))
    fit = fit_decay(t, g + 1e-4 * rng.standard_normal(g.shape), model="stretched")
    assert fit.ok.all()
    assert np.max(np.abs(fit.tau / tau - 1)) < 0.03
    assert np.max(np.abs(fit.beta - beta)) < 0.02


def test_aicc_selects_the_generating_law():
    rng = np.random.default_rng(8)
    t = np.linspace(0.005, 10.0, 300)
    beta = rng.uniform(0.3, 0.6, 10)
    stretched = 1.0 + np.exp(-((t / 1.0) ** beta[:, None]))
    single = 1.0 + np.exp(-t / rng.uniform(0.5, 2.0, 10)[:, None])
    g = np.concatenate([stretched, single]) + 1e-3 * rng.standard_normal((20, t.size))
    fit = fit_decay(t, g, model="auto")
    assert list(fit.law[:10]) == ["stretched"] * 10
    assert np.mean(fit.law[10:] == "exp") >= 0.8  # AICc may rarely accept a needless extra parameter


def test_lam_is_exp_for_single_exponentials_and_least_squares_otherwise():
    _, _, _, g = exp_traces(10, noise_rel=0.001, seed=9)
    fit = fit_decay(T, g, model="exp")
    np.testing.assert_allclose(fit.lam(0.05), np.exp(-0.05 / fit.tau), rtol=1e-12)
    # stretched law: compare with a brute-force grid minimisation of sum_k (lam^k - phi(k dt))^2
    t = np.linspace(0.005, 10.0, 300)
    g = 1.0 + np.exp(-((t / 1.0) ** 0.5))[None, :].repeat(2, 0)
    sfit = fit_decay(t, g, model="stretched")
    lam, err = sfit.lam_and_error(0.1, horizon_steps=50)
    k = np.arange(1, 51)
    phi = np.exp(-((0.1 * k / sfit.tau[0]) ** sfit.beta[0]))
    grid = np.linspace(0.5, 1.0, 200001)
    cost = ((grid[:, None] ** k - phi) ** 2).sum(1)
    assert lam[0] == pytest.approx(grid[np.argmin(cost)], abs=1e-5)
    assert err[0] == pytest.approx(np.sqrt(cost.min() / 50), rel=1e-3)
    assert best_step_lambda(np.exp(-0.1 * k / 0.7)[None, :])[0][0] == pytest.approx(
        np.exp(-0.1 / 0.7), abs=1e-9
    )


def load_vo2(vo2_dir, group):
    files = sorted(vo2_dir.glob(f"{group}_*.csv"))
    data = [np.loadtxt(f, delimiter=",", skiprows=1) for f in files]
    return data[0][:, 0], np.stack([d[:, 1] for d in data])


@pytest.mark.parametrize("group", ["fast", "slow"])
def test_real_vo2_traces_prefer_non_exponential_laws(vo2_dir, group):
    t, g = load_vo2(vo2_dir, group)
    single = fit_decay(t, g, model="exp")
    best = fit_decay(t, g, model="auto")
    assert best.ok.all()
    # the measured relaxations are not single exponentials (a fast drop, then a slow tail)
    assert np.mean(best.law != "exp") >= 0.7
    chosen = best.law != "exp"
    improvement = best.rmse[chosen] / single.rmse[chosen]
    assert np.all(improvement < 0.7) and np.median(improvement) < 0.5
    # good fits by residual criteria: RMS residual below 1% of the relaxation amplitude
    assert np.median(best.rmse_rel) < 0.01
    assert np.median(best.r2) > 0.995


def test_auto_recovers_biexp_from_a_long_noisy_trace_after_the_exp_kernel():
    """1000-point trace (an SMU record): "auto" runs numba's parallel exp kernel, then the torch solve of
    the other laws on a single pinned thread; that solve must still land on the generating biexp."""
    import torch

    rng = np.random.default_rng(11)
    t = np.linspace(1e-3, 1.0, 1000)
    tau1, tau2, w1, amp = 0.012, 0.25, 0.6, 1e-3
    g = 2e-3 + amp * (w1 * np.exp(-t / tau1) + (1 - w1) * np.exp(-t / tau2))
    g = g + 1e-3 * amp * rng.standard_normal(t.size)
    threads = torch.get_num_threads()
    fit = fit_decay(t, g, model="auto")
    assert torch.get_num_threads() == threads  # the solve's thread setting does not leak
    assert list(fit.law) == ["biexp"] and fit.ok.all()
    assert fit.tau[0] == pytest.approx(tau1, rel=0.02)
    assert fit.tau2[0] == pytest.approx(tau2, rel=0.02)
    assert fit.w1[0] == pytest.approx(w1, abs=0.01)
    assert fit.delta_g[0] == pytest.approx(amp, rel=0.01)
    assert fit.rmse_rel[0] == pytest.approx(1e-3, rel=0.2)  # residuals at the noise level
