"""Device physics functions against closed forms, semigroup properties and hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from device_models.card import load_card
from device_models.laws import relaxation
from device_models.mapping import pair_to_weights, weight_scale_siemens, weights_to_pair
from device_models.memristor import (
    bias_energy_j,
    bias_for_tau,
    card_pulse_kwargs,
    card_relaxation,
    decay_biexp,
    decay_exp,
    decay_stretched,
    pulse_energy_j,
    pulse_response,
    quantise_conductance,
    read_current_a,
    read_energy_j,
    read_noise_var_siemens2,
    tau_at_bias,
)

CARD = load_card()
PULSE = card_pulse_kwargs(CARD)
UP = {k: v for k, v in PULSE.items() if k != "dg_down_ref_siemens"}


def test_tau_at_bias_is_an_e_fold_law_and_bias_for_tau_inverts_it() -> None:
    assert tau_at_bias(0.6, 1.0, 0.6, 0.25) == pytest.approx(1.0)
    assert tau_at_bias(0.85, 1.0, 0.6, 0.25) == pytest.approx(1 / math.e)  # one e-fold of bias
    taus = torch.tensor([0.1, 0.5, 3.0, 10.0], dtype=torch.float64)
    back = tau_at_bias(bias_for_tau(taus, 2.0, 0.6, 0.25), 2.0, 0.6, 0.25)
    torch.testing.assert_close(back, taus)


def test_exp_decay_steps_compose_to_the_closed_form() -> None:
    g = np.full(3, 4e-9)
    for _ in range(10):
        g = decay_exp(g, 0.05, np.array([0.2, 1.0, 5.0]))
    np.testing.assert_allclose(g, 4e-9 * np.exp(-0.5 / np.array([0.2, 1.0, 5.0])), rtol=1e-12)


def test_biexp_components_sum_to_the_biexp_relaxation() -> None:
    a, t1, t2 = 0.6, 0.3, 4.0
    fast, slow = torch.tensor(a), torch.tensor(1 - a)
    for _ in range(20):
        fast, slow = decay_biexp(fast, slow, 0.1, t1, t2)
    assert float(fast + slow) == pytest.approx(relaxation("biexp", 2.0, t1, t2, a))
    assert relaxation("biexp", 2.0, t1, t2, a) == pytest.approx(
        a * math.exp(-2 / t1) + (1 - a) * math.exp(-2 / t2)
    )


def test_stretched_decay_from_age_zero_composes_to_the_kohlrausch_law() -> None:
    g, age = 1.0, 0.0
    for _ in range(37):
        g = decay_stretched(g, age, 0.05, 0.8, 0.5)
        age += 0.05
    assert g == pytest.approx(math.exp(-((37 * 0.05 / 0.8) ** 0.5)), rel=1e-12)
    with pytest.raises(ValueError, match="unknown decay law"):
        relaxation("power", 1.0, 1.0)


def test_card_relaxation_scales_time_by_the_bias_law() -> None:
    t = np.array([0.0, 0.5, 2.0])
    tau = tau_at_bias(0.9, CARD.decay.tau_s, CARD.bias.bias_ref_v, CARD.bias.bias_efold_v)
    np.testing.assert_allclose(card_relaxation(CARD, t, bias_v=0.9), np.exp(-t / tau))


def test_pulse_response_soft_bounds_and_polarity() -> None:
    g_max, dg_up = PULSE["g_st_max_siemens"], PULSE["dg_up_ref_siemens"]
    # a short reference-amplitude pulse from rest acts linearly: dg ~ dg_up * w / w_ref
    tiny = pulse_response(0.0, 1.5, 1e-6, **PULSE)
    assert tiny == pytest.approx(dg_up * 0.01, rel=1e-3)
    # the exponential soft bound is a semigroup in pulse width (width exponent 1): two halves = one whole
    half = pulse_response(pulse_response(1e-9, 1.5, 50e-6, **PULSE), 1.5, 50e-6, **PULSE)
    assert half == pytest.approx(pulse_response(1e-9, 1.5, 100e-6, **PULSE), rel=1e-12)
    # saturation: many pulses approach g_st_max and never pass it; depression approaches 0 from above
    g = 0.0
    for _ in range(2000):
        g = pulse_response(g, 2.0, 100e-6, **PULSE)
    assert g_max * 0.999 < g <= g_max
    for _ in range(2000):
        g = pulse_response(g, -2.0, 100e-6, **PULSE)
    assert 0 <= g < g_max * 1e-3
    # sub-threshold pulses and zero amplitude do nothing; effect shrinks near the bound
    assert pulse_response(2e-9, 0.4, 1e-3, **PULSE) == 2e-9
    assert pulse_response(2e-9, 0.0, 1e-3, **PULSE) == 2e-9
    assert pulse_response(4e-9, 1.5, 1e-4, **PULSE) - 4e-9 < pulse_response(0.0, 1.5, 1e-4, **PULSE)
    # amplitude exponent 2: doubling (|V| / v_ref) quadruples the small-signal drive
    no_threshold = {**PULSE, "v_threshold_v": 0.0}
    small = pulse_response(0.0, 0.75, 1e-6, **no_threshold)
    assert pulse_response(0.0, 1.5, 1e-6, **no_threshold) / small == pytest.approx(4.0, rel=1e-3)


def test_quantisation_lands_on_the_nearest_level_inside_the_window() -> None:
    g = torch.tensor([-1e-9, 1e-9, 1.2e-9, 1.31e-9, 5e-9, 3e-8], dtype=torch.float64)
    q = quantise_conductance(g, 1e-9, 2e-8, 20)
    step = 1e-9
    expected = torch.tensor([1e-9, 1e-9, 1e-9, 2e-9, 5e-9, 2e-8], dtype=torch.float64)
    torch.testing.assert_close(q, expected)
    assert float((q - 1e-9).div(step).sub((q - 1e-9).div(step).round()).abs().max()) < 1e-9


def test_energies_and_currents_by_hand() -> None:
    assert read_current_a(1e-8, 0.2) == pytest.approx(2e-9)
    assert read_energy_j(1e-8, 0.2, 1e-6) == pytest.approx(0.04 * 1e-8 * 1e-6)
    assert pulse_energy_j(2e-8, 1.5, 1e-4) == pytest.approx(2.25 * 2e-8 * 1e-4)
    # the paper's idle point: 0.6 V on ~1.19e-8 S is 4.3 nW, i.e. 4.3 nJ per second
    assert bias_energy_j(4.3e-9 / 0.36, 0.6, 1.0) == pytest.approx(4.3e-9)
    assert read_noise_var_siemens2(2e-8, 0.01, 2e-8) == pytest.approx((0.01 * 2e-8) ** 2)


def test_differential_pair_mapping_round_trips_and_uses_the_whole_window() -> None:
    w = torch.tensor([[0.5, -0.25, 0.0]], dtype=torch.float64)
    gpw = weight_scale_siemens(0.5, 1e-9, 2e-8)
    assert gpw == pytest.approx(3.8e-8)
    gp, gm = weights_to_pair(w, 1e-9, gpw)
    torch.testing.assert_close(gp, torch.tensor([[2e-8, 1e-9, 1e-9]], dtype=torch.float64))
    torch.testing.assert_close(gm, torch.tensor([[1e-9, 1.05e-8, 1e-9]], dtype=torch.float64))
    torch.testing.assert_close(pair_to_weights(gp, gm, gpw), w)
    with pytest.raises(ValueError, match="w_max"):
        weight_scale_siemens(0.0, 1e-9, 2e-8)
