"""Honest verdicts: a fit is "ok" only if its law describes the trace.

Synthetic traces come from small physical models with known truth (Newtonian cooling of a VO2 film
through its insulator-metal transition; a diffusive Ag filament that holds, thickens, then ruptures;
a second trapping time constant; a drifting baseline), so every expected status follows from the
physics, not from the fit code. Also the real VO2 traces (``vo2_dir``) and the compressed law's own
parameter recovery.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from calibration.fit import fit_decay
from calibration.verdict import _noise_sigma, _runs_z, trace_stats
from device_models.laws import best_step_lambda, relaxation

KB_EV = 8.617e-5  # Boltzmann constant, eV/K


def vo2_long_step(t_s, t_collapse_s, rng, noise_rel=1e-3):
    """Conductance (S) of a VO2 film cooling after a long heating step (Newtonian cooling, tau_th):
    metallic while T > T_c (the metallic filament narrows as it cools: a sag of ~15%), an abrupt
    collapse as T crosses T_c (transition width 0.3 K), then the insulating phase's thermally activated
    conductance (E_a = 0.25 eV) keeps falling as the film cools to ambient: the slow tail."""
    t_amb, t_c, t_0 = 300.0, 340.0, 358.0
    tau_th = t_collapse_s / np.log((t_0 - t_amb) / (t_c - t_amb))  # T(t_collapse) = T_c
    temp = t_amb + (t_0 - t_amb) * np.exp(-t_s / tau_th)
    metallic = 1.0 / (1.0 + np.exp(-(temp - t_c) / 0.3))
    g_ins = 2e-5 * np.exp(-0.25 / KB_EV * (1.0 / temp - 1.0 / t_amb))
    g_met = 4e-4 * (1.0 - 0.15 * (t_0 - temp) / (t_0 - t_c))
    g = g_ins + metallic * g_met
    return g + noise_rel * 4e-4 * rng.standard_normal(g.shape)


def ag_diffusive(t_s, t_rupture_s, rise, rng, noise_rel=0.01):
    """Conductance (S) of a diffusive Ag memristor after a switching pulse: the filament holds its
    conductance, rises by ``rise`` (relative) as Ag clusters coalesce (time constant t_rupture/3), then
    ruptures within ~t_rupture/100 (surface-diffusion driven), back to the off state."""
    g_on, g_off = 50e-6, 1e-6
    held = g_on * (1.0 + rise * (1.0 - np.exp(-3.0 * t_s / t_rupture_s)))
    intact = 0.5 * (1.0 - np.tanh((t_s - t_rupture_s) / (0.02 * t_rupture_s)))  # a logistic step
    g = g_off + (held - g_off) * intact
    return g + noise_rel * g_on * rng.standard_normal(g.shape)


# -- the statistics against independent formulations ----------------------------------------------
def test_runs_z_matches_the_textbook_formula_and_is_standard_normal_on_white_noise():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((4000, 200))
    z = np.array([_runs_z(x) for x in r])
    assert abs(z.mean()) < 0.06 and 0.93 < z.std() < 1.07
    assert np.mean(z < -3.29) < 2e-3  # the one-sided p = 5e-4 threshold
    x = np.array([1.0, 2.0, -1.0, -3.0, 4.0, 5.0, 6.0, -1.0])  # runs: ++ -- +++ - = 4
    n1, n2, n = 5, 3, 8
    mu = 2 * n1 * n2 / n + 1
    sd = np.sqrt(2 * n1 * n2 * (2 * n1 * n2 - n) / (n**2 * (n - 1)))
    assert _runs_z(x) == pytest.approx((4 - mu) / sd, rel=1e-12)


def test_noise_sigma_from_second_differences_ignores_a_wrong_law_and_a_step():
    rng = np.random.default_rng(1)
    t = np.linspace(0, 5, 500)
    for sigma in (1e-4, 1e-2):
        g = 1 + 3 * np.exp(-t / 0.3) + sigma * rng.standard_normal(t.size)
        g[100:] -= 50 * sigma  # an abrupt step: a few large second differences the MAD ignores
        wrong_law = 1 + 2.8 * np.exp(-t / 0.33)  # a smooth misfit of up to 10% of the amplitude
        assert _noise_sigma(g - wrong_law) == pytest.approx(sigma, rel=0.1)


def test_lag1_power_measures_the_systematic_residual_not_the_noise():
    """mean r[n] r[n+1] of (smooth s + white e) estimates mean s^2: the noise cancels at lag 1."""
    rng = np.random.default_rng(2)
    n = 2000
    s = 0.03 * np.sin(np.linspace(0, 6 * np.pi, n))  # RMS 0.0212
    r = s + 0.05 * rng.standard_normal(n)
    stats = trace_stats(np.zeros((1, n)) + np.linspace(1, 0, n), r[None, :])
    assert np.sqrt(stats[0, 2]) == pytest.approx(0.03 / np.sqrt(2), rel=0.15)
    assert stats[0, 1] == pytest.approx(0.03**2 / 2 + 0.05**2, rel=0.1)


# -- correct laws stay ok, and the compressed law is not chosen for them ------------------------------
@pytest.mark.parametrize("noise", [1e-3, 1e-2, 3e-2])
def test_exp_biexp_and_stretched_truth_stay_ok_and_are_recovered(noise):
    rng = np.random.default_rng(int(noise * 1e4))
    d, t = 60, np.linspace(0.005, 10.0, 300)
    tau = rng.uniform(0.5, 2.5, d)
    tau1, tau2, w1 = rng.uniform(0.2, 0.4, d), rng.uniform(2.5, 4.0, d), rng.uniform(0.4, 0.6, d)
    beta, tau_s = rng.uniform(0.35, 0.7, d), rng.uniform(0.5, 2.0, d)
    truths = {
        "exp": (np.exp(-t / tau[:, None]), tau),
        "biexp": (relaxation("biexp", t, tau1[:, None], tau2[:, None], w1[:, None]), tau1),
        "stretched": (relaxation("stretched", t, tau_s[:, None], beta=beta[:, None]), tau_s),
    }
    for law, (phi, true_tau) in truths.items():
        g = 2e-6 + 1e-6 * phi + noise * 1e-6 * rng.standard_normal(phi.shape)
        fit = fit_decay(t, g, model="auto")
        assert np.mean(fit.ok) >= 0.98, (law, np.unique(fit.status, return_counts=True))
        assert not np.any(fit.law == "compressed"), law
        chosen = fit.ok & (fit.law == law)
        if noise <= 1e-2:  # at 3% noise AICc may rightly prefer a simpler law on some traces
            assert np.mean(chosen) >= 0.9, (law, np.unique(fit.law, return_counts=True))
        if noise <= 1e-3 or (noise <= 1e-2 and law != "biexp"):  # 1% noise: a biexp's tau1 is known to ~3%
            assert np.median(np.abs(fit.tau[chosen] / true_tau[chosen] - 1)) < 0.02


def test_compressed_law_is_never_selected_for_plain_exponentials_over_many_seeds():
    fits = []
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n = (50, 200, 500)[seed % 3]
        t = np.linspace(0.0, 5.0, n)
        tau = rng.lognormal(0.0, 0.4, 120)
        g = 1e-9 + 2e-9 * np.exp(-t / tau[:, None])
        g += (1e-3, 1e-2, 5e-2)[seed // 2] * 2e-9 * rng.standard_normal(g.shape)
        fits.append(fit_decay(t, g, model="auto"))
    laws = np.concatenate([f.law for f in fits])
    ok = np.concatenate([f.ok for f in fits])
    assert np.sum(laws == "compressed") == 0
    assert np.mean(ok) >= 0.98


# -- the new law ---------------------------------------------------------------------------------
def test_compressed_law_recovers_collapse_time_and_beta():
    rng = np.random.default_rng(3)
    d, t = 60, np.linspace(1e-4, 2.0, 400)
    tau, beta = rng.uniform(0.2, 1.2, d), rng.uniform(1.5, 6.0, d)
    g = 1e-6 + 4e-5 * np.exp(-((t / tau[:, None]) ** beta[:, None]))
    g += 4e-5 * 5e-3 * rng.standard_normal(g.shape)
    for model in ("compressed", "auto"):
        fit = fit_decay(t, g, model=model)
        assert fit.ok.all() and (fit.law == "compressed").all(), np.unique(fit.status, return_counts=True)
        assert np.max(np.abs(fit.tau / tau - 1)) < 0.01
        assert np.max(np.abs(fit.beta / beta - 1)) < 0.03
        pulls = (fit.tau - tau) / fit.tau_err
        assert 0.6 < np.std(pulls) < 1.5  # the reported uncertainty is the real one


def test_compressed_lambda_is_the_least_squares_per_step_retention():
    t = np.linspace(1e-3, 3.0, 300)
    g = 1.0 + np.exp(-((t / 0.8) ** 3.0))[None, :]
    fit = fit_decay(t, g, model="compressed")
    lam, err = fit.lam_and_error(0.02, horizon_steps=80)
    k = np.arange(1, 81)
    phi = np.exp(-((0.02 * k / fit.tau[0]) ** fit.beta[0]))
    grid = np.linspace(0.9, 1.0, 200001)
    cost = ((grid[:, None] ** k - phi) ** 2).sum(1)
    assert lam[0] == pytest.approx(grid[np.argmin(cost)], abs=1e-6)
    assert err[0] == pytest.approx(np.sqrt(cost.min() / 80), rel=1e-3)
    assert best_step_lambda(phi[None, :])[0][0] == pytest.approx(lam[0], abs=1e-9)


# -- the new statuses from physical models --------------------------------------------------------------
def test_vo2_after_long_heating_steps_is_a_threshold_collapse():
    rng = np.random.default_rng(4)
    t = np.arange(1, 2001) * 1e-3  # 2 s at 1 ms, as the measured slow traces
    collapse = np.array([0.1, 0.2, 0.35, 0.6])
    g = np.stack([vo2_long_step(t, tc, rng) for tc in collapse])
    fit = fit_decay(t, g, model="auto")
    assert list(fit.status) == ["threshold_collapse"] * 4, list(fit.status)
    assert not fit.ok.any() and np.isnan(fit.lam(0.01)).all()  # no usable number leaks
    # the law's numbers are kept for inspection: the collapse time is where T crosses T_c
    assert np.all(np.abs(fit.tau / collapse - 1) < 0.15)
    assert np.all(fit.beta > 1.5)
    single = fit_decay(t, g, model="exp")  # what main reported "ok" before
    # against a single exponential a collapse of a few samples is indistinguishable from a jump
    assert set(single.status) <= {"poor_fit", "stepwise"} and not single.ok.any()


def test_diffusive_ag_that_rises_before_rupture_is_non_monotonic():
    rng = np.random.default_rng(5)
    t = np.linspace(1e-5, 20e-3, 2000)
    rupture = np.array([0.3e-3, 2e-3, 6e-3, 12e-3])
    g = np.stack([ag_diffusive(t, tr, 0.25, rng) for tr in rupture])
    for model in ("auto", "exp"):
        fit = fit_decay(t, g, model=model)
        assert list(fit.status) == ["non_monotonic"] * 4, (model, list(fit.status))
    # the same filaments without the rise hold, then collapse: described by the compressed law, or not
    held = np.stack([ag_diffusive(t, tr, 0.0, rng) for tr in rupture])
    fit = fit_decay(t, held, model="auto")
    assert not np.any(fit.status == "non_monotonic")
    # the first ruptures within ~3 samples (10-90% in 0.09 t_rupture = 27 us at 10 us sampling): the data
    # cannot tell it from a jump, and it has no time constant (stepwise, its jump at the rupture time)
    assert fit.status[0] == "stepwise" and abs(np.nanmax(fit.jump_t[0]) / rupture[0] - 1) < 0.05
    resolved = slice(1, None)
    assert np.all(
        (fit.law[resolved] == "compressed") & np.isin(fit.status[resolved], ("ok", "threshold_collapse"))
    )
    assert np.all(
        np.abs(fit.tau[resolved] / rupture[resolved] - 1) < 0.05
    )  # the collapse time is the rupture time


def test_a_second_time_constant_fitted_by_one_exponential_is_a_poor_fit():
    rng = np.random.default_rng(6)
    t = np.linspace(0.01, 10.0, 300)
    tau1, tau2 = rng.uniform(0.2, 0.4, 50), rng.uniform(2.0, 4.0, 50)
    g = 1 + 0.5 * np.exp(-t / tau1[:, None]) + 0.5 * np.exp(-t / tau2[:, None])
    g = g + 1e-2 * rng.standard_normal(g.shape)
    assert set(fit_decay(t, g, model="exp").status) == {"poor_fit"}
    assert np.mean(fit_decay(t, g, model="auto").ok) >= 0.98  # the right law describes it


def test_a_drifting_baseline_under_an_exponential_is_a_poor_fit_when_it_matters():
    """Read-out drift (e.g. a contact slowly losing conductance) adds a falling ramp under the relaxation:
    still monotonic, but no longer one exponential. A ramp of 40% of the relaxation over the record
    leaves a systematic misfit far above the 2% tolerance; one of 4% stays well below it."""
    rng = np.random.default_rng(7)
    t = np.linspace(0.0, 10.0, 400)
    tau = rng.uniform(0.5, 1.5, (50, 1))
    noise = 1e-2 * rng.standard_normal((50, t.size))
    strong = fit_decay(t, 1 + np.exp(-t / tau) - 0.04 * t + noise, model="exp")
    # (an exponential may absorb part of the ramp by lengthening tau and then describe the trace to ~2%:
    # the verdict judges the description of the trace, which a drift model alone could separate)
    poor = strong.status == "poor_fit"
    assert np.mean(poor) >= 0.95 and set(strong.status) <= {"poor_fit", "ok"}
    assert np.all(strong.runs_z < -3.29) and np.all(strong.sys_rel[poor] > 0.02)
    assert np.isnan(strong.lam(0.1)[poor]).all() and np.isfinite(strong.tau).all()  # kept for inspection
    weak = fit_decay(t, 1 + np.exp(-t / tau) - 0.004 * t + noise, model="exp")
    assert np.mean(weak.ok) >= 0.98


def test_verdict_false_alarm_rate_on_correct_laws_is_near_the_design_rate():
    """Gaussian noise of 0.1-5% and N = 40-2000: an exponential fitted by the exponential law is flagged
    (poor_fit or non_monotonic) on well under 1% of traces."""
    bad = total = 0
    for i, (n, noise) in enumerate([(40, 0.05), (200, 0.02), (2000, 0.001), (500, 0.01)]):
        rng = np.random.default_rng(200 + i)
        t = np.linspace(0.0, 4.0, n)
        g = 1 + np.exp(-t / rng.uniform(0.3, 1.5, (500, 1))) + noise * rng.standard_normal((500, n))
        fit = fit_decay(t, g, model="exp")
        bad += int(np.isin(fit.status, ("poor_fit", "non_monotonic")).sum())
        total += 500
    assert bad / total < 0.01
    assert norm.sf(3.29) < 6e-4  # the documented threshold is the documented one-sided p


# -- real data --------------------------------------------------------------------------------------
def test_real_vo2_short_step_traces_are_ok_and_their_single_exponentials_are_judged(vo2_dir):
    files = sorted(vo2_dir.glob("*.csv"))
    assert len(files) == 12
    for group in ("fast", "slow"):
        data = [np.loadtxt(f, delimiter=",", skiprows=1) for f in files if f.name.startswith(group)]
        t, g = data[0][:, 0], np.stack([d[:, 1] for d in data])
        best = fit_decay(t, g, model="auto")
        assert best.ok.all(), list(best.status)
        assert np.all(best.sys_rel < 0.02) and not np.any(best.law == "compressed")
        # quiet traces: every law leaves statistically visible structure; it is small, not absent
        assert np.all(best.runs_z < -3.29)
        single = fit_decay(t, g, model="exp")
        # a single exponential misses the slow tail; where it misses by more than 2% it is poor_fit
        assert np.all((single.status == "poor_fit") == (single.sys_rel > 0.02))
        if group == "slow":
            assert single.status[0] == "poor_fit"  # slow_10mA: 9% systematic misfit


@pytest.mark.parametrize("model", ["exp", "biexp"])
def test_reported_statistics_match_a_numpy_formulation_from_the_residuals(model):
    """The exp kernel judges in normalised units inside its fused loop, the other laws in a separate pass;
    both must report what plain numpy computes from g - fit.predict(t)."""
    rng = np.random.default_rng(8)
    t = np.linspace(0.01, 5.0, 250)
    g = 3e-6 + 2e-6 * np.exp(-t / rng.uniform(0.3, 1.0, (20, 1))) + 0.3e-6 * np.exp(-t / 3.0)
    g = g + 2e-8 * rng.standard_normal(g.shape)
    fit = fit_decay(t, g, model=model)
    kept = np.isfinite(fit.tau)  # a failed fit's numbers are NaN (its statistics describe what it reached)
    assert kept.mean() > 0.8
    g = g[kept]
    for name in (
        "tau",
        "tau2",
        "w1",
        "beta",
        "g_inf",
        "delta_g",
        "lag1",
        "sys_rel",
        "runs_z",
        "noise",
        "law",
    ):
        setattr(fit, name, getattr(fit, name)[kept])
    r = g - fit.predict(t)
    n = t.size
    c0, c1 = (r * r).mean(1), (r[:, 1:] * r[:, :-1]).sum(1) / (n - 1)
    np.testing.assert_allclose(fit.lag1, c1 / c0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.sys_rel, np.sqrt(np.maximum(c1, 0)) / np.abs(fit.delta_g), rtol=1e-5)
    pos = r >= 0
    runs = 1 + (pos[:, 1:] != pos[:, :-1]).sum(1)
    n1, n2 = pos.sum(1), n - pos.sum(1)
    mu = 2 * n1 * n2 / n + 1
    z = (runs - mu) / np.sqrt((mu - 1) * (mu - 2) / (n - 1))
    np.testing.assert_allclose(fit.runs_z, z, rtol=1e-9)
    assert np.all(np.abs(fit.noise / 2e-8 - 1) < 0.2)  # the injected read noise
