"""The realisation model against independent formulations: closed forms, scipy ODE and least squares,
and the simulated lab's device physics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize_scalar

from device_models.card import DeviceCard, load_card
from device_models.realisation import WIDTH_STEP_S, Realisation, RealisationError
from device_models.record import CalibrationRecord

CARD = load_card(None)


def _card(**decay: object) -> DeviceCard:
    data = CARD.model_dump()
    data["decay"].update(decay)
    return DeviceCard.from_mapping(data)


def test_exp_bias_is_the_closed_form_inverse_of_the_bias_law() -> None:
    real = Realisation.from_card(
        CARD, dt_s=1 / 15, seed=0, shape=(3, 4), d2d=False, stuck=False, bias="device"
    )
    lam = np.linspace(0.5, 0.99, 12).reshape(3, 4)
    bias, achieved = real.bias_for_lambda(lam)
    b = CARD.bias
    tau_needed = -(1 / 15) / np.log(lam)  # independent: tau(V) = tau_ref exp(-(V - V_ref) / V_e)
    expected = b.bias_ref_v - b.bias_efold_v * np.log(tau_needed / CARD.decay.tau_s)
    inside = (expected >= b.bias_min_v) & (expected <= b.bias_max_v)
    np.testing.assert_allclose(bias[0][inside], expected[inside], rtol=1e-12)
    np.testing.assert_allclose(achieved[0][inside], lam[inside], rtol=1e-12)
    assert np.all(bias >= b.bias_min_v) and np.all(bias <= b.bias_max_v)
    lo, hi = real.lambda_range()
    tau_lo, tau_hi = CARD.tau_range_s()
    np.testing.assert_allclose(lo, math.exp(-(1 / 15) / tau_lo), rtol=1e-12)
    np.testing.assert_allclose(hi, math.exp(-(1 / 15) / tau_hi), rtol=1e-12)
    assert real.trainable_lambda_range() == pytest.approx((lo.min(), hi.max()))


def test_card_d2d_is_uncompensated_and_a_record_is_compensated_per_device() -> None:
    """With a card the controller knows only the nominal device: a device whose tau is r times the
    nominal one retains lambda^(1/r). A record knows each device: every one hits the target."""
    real = Realisation.from_card(CARD, dt_s=0.1, seed=3, shape=(8, 8), stuck=False, bias="device")
    tau_true = real.tau1_s  # the drawn chip
    _, achieved = real.bias_for_lambda(np.full((8, 8), 0.9))
    np.testing.assert_allclose(achieved, 0.9 ** (CARD.decay.tau_s / tau_true), rtol=1e-10)
    rec = CalibrationRecord.from_arrays((8, 16), tau_true.transpose(1, 0, 2).reshape(8, 16), decay_bias_v=0.6)
    on_record = Realisation.from_record(rec, dt_s=0.1, seed=3, shape=(8, 8), stuck=False, bias="device")
    np.testing.assert_array_equal(on_record.tau1_s, tau_true)  # identity assignment, G+ then G-
    _, achieved = on_record.bias_for_lambda(np.full((8, 8), 0.9))
    np.testing.assert_allclose(achieved, 0.9, rtol=1e-10)


@pytest.mark.parametrize("law", ["biexp", "stretched"])
def test_non_exponential_laws_achieve_the_least_squares_step_retention(law: str) -> None:
    """Independent: phi at the chosen bias (every time constant scaled by the bias law), then the
    lambda minimising sum_k (lambda^k - phi(k dt))^2 by scipy's bounded scalar minimiser."""
    card = _card(law=law)
    dt, horizon = 0.1, 100
    real = Realisation.from_card(card, dt_s=dt, seed=0, shape=(1, 3), d2d=False, stuck=False, bias="device")
    bias, achieved = real.bias_for_lambda(np.array([[0.8, 0.9, 0.97]]))
    d, b = card.decay, card.bias
    k = np.arange(1, horizon + 1)
    for v, got in zip(bias[0, 0], achieved[0, 0], strict=True):
        s = math.exp(-(v - b.bias_ref_v) / b.bias_efold_v)
        t = k * dt
        if law == "biexp":
            phi = d.fast_fraction * np.exp(-t / (d.tau_s * s)) + (1 - d.fast_fraction) * np.exp(
                -t / (d.tau_slow_s * s)
            )
        else:
            phi = np.exp(-((t / (d.tau_s * s)) ** d.stretch_beta))
        best = minimize_scalar(
            lambda x, phi=phi: np.sum((x**k - phi) ** 2),
            bounds=(0, 1),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert got == pytest.approx(best.x, abs=2e-3)
    np.testing.assert_allclose(achieved[0, 0], [0.8, 0.9, 0.97], atol=2e-3)  # the inversion hits the target


def test_per_step_retention_equals_an_ode_integration_of_the_device() -> None:
    """dg/dt = -g / tau(V) integrated by scipy over dt at the realised bias: g(dt) / g(0) is the
    realisation's lambda for every device of a drawn chip (d2d spread included)."""
    dt = 1 / 15
    real = Realisation.from_card(CARD, dt_s=dt, seed=11, shape=(2, 3), stuck=False, bias="device")
    bias, achieved = real.bias_for_lambda(np.full((2, 3), 0.93))
    b = CARD.bias
    for idx in np.ndindex(bias.shape):
        tau = real.tau1_s[idx] * math.exp(-(bias[idx] - b.bias_ref_v) / b.bias_efold_v)
        sol = solve_ivp(lambda _t, g, tau=tau: -g / tau, (0.0, dt), [1e-9], rtol=1e-10, atol=1e-22)
        assert sol.y[0, -1] / 1e-9 == pytest.approx(achieved[idx], rel=1e-7)


def test_per_step_retention_equals_the_simulated_labs_device_physics() -> None:
    """A simulated-lab device (drivers.sim) with the card's physics, held at the realised bias for dt
    after a pulse: its volatile conductance keeps the fraction lambda."""
    from drivers.sim.devices import DeviceArray

    dt = 0.1
    devices = DeviceArray(CARD, (1,), np.random.default_rng(0))
    tau_ref = float(devices.tau_ref_s[0])
    rec = CalibrationRecord.from_arrays((1, 2), [tau_ref, tau_ref], decay_bias_v=CARD.bias.bias_ref_v)
    real = Realisation.from_record(rec, dt_s=dt, shape=(1, 1), stuck=False, bias="device")
    bias, achieved = real.bias_for_lambda(np.array([[0.96]]))
    assert float(bias[0, 0, 0]) < CARD.pulse.v_threshold_v  # the sim would take a higher level as a pulse
    devices.stuck_on[:] = devices.stuck_off[:] = False
    devices.hold(CARD.read.write_v, 1e-3)  # potentiate
    g0 = float(devices.g_fast_siemens[0])
    devices.hold(float(bias[0, 0, 0]), dt)
    assert g0 > 0
    assert float(devices.g_fast_siemens[0]) / g0 == pytest.approx(float(achieved[0, 0, 0]), rel=1e-9)
    assert float(achieved[0, 0, 0]) == pytest.approx(0.96, rel=1e-9)


def test_pulse_for_write_inverts_the_small_signal_law_within_its_quantisation() -> None:
    real = Realisation.from_card(CARD, dt_s=0.1, shape=(1, 4), d2d=False, stuck=False)
    target = np.array([0.0, 1e-11, 2e-10, 4e-9])
    pulses = real.pulse_for_write(np.broadcast_to(target, (2, 1, 4)))
    p = CARD.pulse
    per_ref = p.dg_up_ref_siemens * (CARD.read.write_v / p.v_ref_v) ** p.amp_exponent
    exact_width = p.width_ref_s * target / per_ref  # width exponent 1 on the shipped card
    np.testing.assert_array_equal(pulses.count[0, 0], [0, 1, 1, 2])
    assert np.all(
        np.abs(pulses.width_s[0, 0] * pulses.count[0, 0] - exact_width)
        <= pulses.count[0, 0] * WIDTH_STEP_S / 2 + 1e-18
    )
    np.testing.assert_allclose(pulses.dg_siemens[0, 0], target, rtol=0.02)
    assert pulses.amplitude_v[0, 0, 1] == CARD.read.write_v


def test_energies_are_v_squared_g_t() -> None:
    real = Realisation.from_card(CARD, dt_s=0.1)
    assert real.read_energy_j(1e-8, 0.2) == pytest.approx(0.04 * 1e-8 * CARD.read.read_time_s)
    assert real.pulse_energy_j(1e-8, 1.5, 1e-4) == pytest.approx(2.25 * 1e-8 * 1e-4)
    assert real.bias_power_w(1e-8, 0.6) == pytest.approx(0.36 * 1e-8)


def test_stuck_devices_hold_no_volatile_state_at_the_card_fractions() -> None:
    real = Realisation.from_card(CARD, dt_s=0.1, seed=5, shape=(200, 200))
    assert real.stuck_on.mean() == pytest.approx(CARD.variability.stuck_on_fraction, abs=5e-4)
    assert real.stuck_off.mean() == pytest.approx(CARD.variability.stuck_off_fraction, abs=8e-4)
    _, achieved = real.bias_for_lambda(np.full((200, 200), 0.9))
    assert np.all(achieved[~real.usable] == 0) and np.all(achieved[real.usable] > 0)


def test_bad_dt_is_one_clear_error() -> None:
    with pytest.raises(RealisationError, match="dt_s"):
        Realisation.from_card(CARD, dt_s=0.0)


def test_one_assignment_rule_identity_on_the_records_layout_else_uniform_over_good_devices() -> None:
    from device_models.realisation import assign_devices

    good = np.ones(12, dtype=bool)
    good[5] = False
    idx = assign_devices((2, 6), good, (2, 3), seed=0)  # (H, 2K) = the record: G+ left, G- right
    np.testing.assert_array_equal(idx[0], [[0, 1, 2], [6, 7, 8]])
    np.testing.assert_array_equal(idx[1], [[3, 4, 5], [9, 10, 11]])  # bad device 5 kept: it is broken
    drawn = assign_devices((3, 4), good, (100, 150), seed=1)
    assert drawn.shape == (2, 100, 150) and not np.isin(5, drawn)
    counts = np.unique(drawn, return_counts=True)[1]
    assert counts.size == 11 and np.all(np.abs(counts / counts.sum() - 1 / 11) < 0.01)
    np.testing.assert_array_equal(drawn, assign_devices((3, 4), good, (100, 150), seed=1))  # seeded


def test_a_records_mixed_laws_each_device_retains_by_its_own_law() -> None:
    """A record whose devices follow different laws (exponential, stretched with two betas, biexp):
    each device's retention at its bias is the scipy least-squares lambda of its own phi(k dt), every
    time constant scaled by the bias law. Catches a device looked up in another device's table."""
    dt, v_char, efold = 0.1, 0.6, CARD.bias.bias_efold_v
    laws = ["exp", "stretched", "biexp", "stretched", "biexp", "exp", "stretched", "stretched"]
    tau1 = np.array([0.5, 0.8, 0.3, 2.0, 1.1, 3.0, 0.4, 0.8])
    beta = np.array([np.nan, 0.5, np.nan, 0.7, np.nan, np.nan, 0.7, 0.5])
    tau2 = np.where(np.array(laws) == "biexp", tau1 * np.array([1, 1, 8, 1, 20, 1, 1, 1]), np.nan)
    w1 = np.where(np.array(laws) == "biexp", [0, 0, 0.6, 0, 0.3, 0, 0, 0], np.nan)
    rec = CalibrationRecord.from_arrays(
        (2, 4), tau1, law=laws, tau1_s=tau1, tau2_s=tau2, w1=w1, beta=beta, decay_bias_v=v_char
    )
    real = Realisation.from_record(rec, dt_s=dt, seed=0, shape=(2, 2), stuck=False, bias="device")
    bias = np.linspace(CARD.bias.bias_min_v, CARD.bias.bias_max_v, 8).reshape(2, 4)
    bias_pair = np.stack([bias[:, :2], bias[:, 2:]])  # (2, H, K): G+ columns left, G- right
    got = real.lambda_at_bias(bias_pair)
    k = np.arange(1, rec.horizon_steps + 1)
    for d in range(8):
        r, c = divmod(d, 4)
        pair, col = (0, c) if c < 2 else (1, c - 2)
        s = math.exp(-(bias[r, c] - v_char) / efold)
        t = k * dt
        if laws[d] == "exp":
            phi = np.exp(-t / (tau1[d] * s))
        elif laws[d] == "stretched":
            phi = np.exp(-((t / (tau1[d] * s)) ** beta[d]))
        else:
            phi = w1[d] * np.exp(-t / (tau1[d] * s)) + (1 - w1[d]) * np.exp(-t / (tau2[d] * s))
        best = minimize_scalar(
            lambda x, phi=phi: np.sum((x**k - phi) ** 2),
            bounds=(0, 1),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert got[pair, r, col] == pytest.approx(best.x, abs=2e-3), (d, laws[d])
