"""The one pulse law (``device_models.pulse_law.PulseLaw``) against independent formulations.

* the device's pulse response integrated numerically in time (scipy ``solve_ivp``): a pulse of
  amplitude V drives a device at the rate (V / v_ref)^a / w_ref per second (width exponent 1, the
  shipped card), potentiation dg/dt = rate dg_up (1 - g / g_max), depression dg/dt = -rate dg_down g / g_max;
* the memristor's own pulse simulation (``device_models.memristor.pulse_response``, which the simulated
  lab's devices run), per device of a drawn chip and of a record with per-device exponents;
* hand calculations of the erase width.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from device_models.card import load_card
from device_models.chip import draw_chip
from device_models.memristor import card_pulse_kwargs, pulse_response
from device_models.pulse_law import PulseLaw
from device_models.realisation import Realisation

CARD = load_card()
PULSE = card_pulse_kwargs(CARD)


def _integrate(
    g0: float, amplitude_v: float, width_s: float, dg_up: float, dg_down: float, g_max: float
) -> float:
    """g_st after a pulse, by integrating the device's rate law over the pulse's duration."""
    p = CARD.pulse
    rate = (abs(amplitude_v) / p.v_ref_v) ** p.amp_exponent / p.width_ref_s  # drive per second (b = 1)

    def dgdt(_t: float, g: np.ndarray) -> np.ndarray:
        if amplitude_v > 0:
            return rate * dg_up * (1 - g / g_max)
        return -rate * dg_down * g / g_max

    sol = solve_ivp(dgdt, (0.0, width_s), [g0], rtol=1e-10, atol=1e-22)
    return float(sol.y[0, -1])


def test_the_inverse_law_reaches_its_target_in_the_integrated_device_both_polarities() -> None:
    assert CARD.pulse.width_exponent == 1.0  # the time integration below needs a drive additive in time
    chip = draw_chip(CARD, seed=3, shape=(1, 3))
    law = PulseLaw.from_card(CARD, chip["pulse"], chip["window"])
    g_max = np.broadcast_to(law.g_st_max_siemens, (2, 1, 3)).ravel()
    dg_up = np.broadcast_to(law.dg_up_siemens, (2, 1, 3)).ravel()
    dg_down = np.broadcast_to(law.dg_down_siemens, (2, 1, 3)).ravel()
    v = CARD.read.write_v
    for d in range(6):
        per = law.at((d // 3, 0, d % 3))
        g0, up_to, down_to = 0.2 * g_max[d], 0.7 * g_max[d], 0.05 * g_max[d]
        w_up = float(per.width_for_drive(per.up_drive((g_max[d] - up_to) / (g_max[d] - g0)), v))
        w_down = float(per.width_for_drive(per.down_drive(down_to / g0), -v))
        assert _integrate(g0, v, w_up, dg_up[d], dg_down[d], g_max[d]) == pytest.approx(up_to, rel=1e-7)
        assert _integrate(g0, -v, w_down, dg_up[d], dg_down[d], g_max[d]) == pytest.approx(down_to, rel=1e-7)
        # forward: the law's response to those drives is the integrated one
        for amp, w in ((v, w_up), (-v, w_down)):
            drive = float(per.drive(amp, w)) * (1 if amp > 0 else -1)
            assert float(per.respond(g0, drive)) == pytest.approx(
                _integrate(g0, amp, w, dg_up[d], dg_down[d], g_max[d]), rel=1e-7
            )


def test_small_signal_widths_write_their_change_from_rest_in_the_integrated_device() -> None:
    law = PulseLaw.from_card(CARD)
    v, g_max = CARD.read.write_v, CARD.window.g_st_max_siemens
    p = CARD.pulse
    for dg in (1e-13, 1e-12):  # small against g_max = 5 nS: the soft bound's correction is ~dg / g_max
        w = float(law.width_for_dg(dg, v, 1))
        assert _integrate(0.0, v, w, p.dg_up_ref_siemens, p.dg_down_ref_siemens, g_max) == pytest.approx(
            dg, rel=2 * dg / g_max + 1e-9
        )
        # depression from saturation: small-signal |dG| = dg_down drive
        w = float(law.width_for_dg(dg, -v, -1))
        g = _integrate(g_max, -v, w, p.dg_up_ref_siemens, p.dg_down_ref_siemens, g_max)
        assert g_max - g == pytest.approx(dg, rel=2 * dg / g_max + 1e-9)


def test_per_device_law_against_the_memristor_pulse_simulation_with_its_own_exponents() -> None:
    rng = np.random.default_rng(0)
    d = 5
    law = PulseLaw(
        dg_up_siemens=rng.uniform(1e-10, 4e-10, d),
        dg_down_siemens=rng.uniform(2e-10, 6e-10, d),
        amp_exponent=rng.uniform(1.0, 3.0, d),
        width_exponent=rng.uniform(0.5, 1.5, d),
        g_st_max_siemens=np.full(d, 5e-9),
        v_ref_v=1.5,
        width_ref_s=1e-4,
        v_threshold_v=1.3,
    )
    g0, v = np.full(d, 1e-9), 1.6
    target_up, target_down = np.full(d, 2.5e-9), np.full(d, 0.3e-9)
    w_up = law.width_for_drive(law.up_drive((5e-9 - target_up) / (5e-9 - g0)), v)
    w_down = law.width_for_drive(law.down_drive(target_down / g0), -v)
    kw = {
        "g_st_max_siemens": law.g_st_max_siemens,
        "dg_up_ref_siemens": law.dg_up_siemens,
        "dg_down_ref_siemens": law.dg_down_siemens,
        "v_ref_v": 1.5,
        "width_ref_s": 1e-4,
        "v_threshold_v": 1.3,
    }
    for i in range(d):
        each = {k: (val[i] if isinstance(val, np.ndarray) else val) for k, val in kw.items()}
        a, b = float(law.amp_exponent[i]), float(law.width_exponent[i])
        up = pulse_response(float(g0[i]), v, float(w_up[i]), amp_exponent=a, width_exponent=b, **each)
        down = pulse_response(float(g0[i]), -v, float(w_down[i]), amp_exponent=a, width_exponent=b, **each)
        assert up == pytest.approx(2.5e-9, rel=1e-12)
        assert down == pytest.approx(0.3e-9, rel=1e-12)
        # small-signal: |dG| of the width for |dG| is |dG|, both polarities
        for pol in (1, -1):
            w = float(law.at(i).width_for_dg(1e-11, v, pol))
            assert float(law.at(i).dg(v, w, pol)) == pytest.approx(1e-11, rel=1e-12)
    # below the threshold nothing is written, and no width writes anything
    assert np.all(law.dg(1.0, 1e-3, 1) == 0)
    assert np.all(np.isinf(law.width_for_dg(1e-11, 1.0, 1)))


def test_one_depression_pulse_of_the_erase_width_leaves_that_fraction_of_every_device() -> None:
    """The depression law is multiplicative: one pulse scales every device's g_st by the same factor."""
    law = PulseLaw.from_card(CARD)
    width = float(law.width_for_drive(law.down_drive(1e-3), -1.5))
    g = np.array([1e-10, 1e-9, 4.9e-9])
    np.testing.assert_allclose(pulse_response(g, -1.5, width, **PULSE), 1e-3 * g, rtol=1e-12)
    # by hand: drive = ln(1000) g_max / dg_down, width = w_ref drive / (V / v_ref)^2
    expected = 100e-6 * math.log(1000) * 5e-9 / 4e-10
    assert width == pytest.approx(expected, rel=1e-12)
    assert math.isinf(float(law.width_for_drive(law.down_drive(1e-3), -0.5)))  # below threshold


def test_realisation_pulse_law_is_the_chip_and_a_record_fills_unknown_devices_from_the_card() -> None:
    real = Realisation.from_card(CARD, dt_s=0.1, seed=5, shape=(2, 3))
    chip = draw_chip(CARD, 5, (2, 3))
    p = CARD.pulse
    # the chip's potentiation at the card's reference pulse, both polarities scaled by the same factor
    np.testing.assert_allclose(
        real.pulse_law.dg(p.v_ref_v, p.width_ref_s, 1), p.dg_up_ref_siemens * chip["pulse"]
    )
    np.testing.assert_allclose(
        real.pulse_law.dg(p.v_ref_v, p.width_ref_s, -1), p.dg_down_ref_siemens * chip["pulse"]
    )
    card_law = PulseLaw.from_card(CARD)
    own = PulseLaw(
        dg_up_siemens=np.array([np.nan, 3e-10]),
        dg_down_siemens=np.array([1e-10, 5e-10]),
        amp_exponent=np.array([2.0, 2.5]),
        width_exponent=np.array([1.0, 0.8]),
        g_st_max_siemens=np.full(2, 5e-9),
        v_ref_v=1.0,  # another reference pulse than the card's
        width_ref_s=1e-5,
    )
    filled = own.filled(card_law)
    # device 0 has no pulse response: it behaves as the card's nominal device, in the record's frame
    for v, w in ((1.5, 1e-4), (1.8, 3e-5)):
        assert float(filled.at(0).dg(v, w, 1)) == pytest.approx(float(card_law.dg(v, w, 1)), rel=1e-12)
        assert float(filled.at(0).dg(v, w, -1)) == pytest.approx(float(card_law.dg(v, w, -1)), rel=1e-12)
    # device 1 keeps its own law
    assert float(filled.at(1).dg(1.0, 1e-5, 1)) == pytest.approx(3e-10, rel=1e-12)
    assert float(filled.at(1).dg(2.0, 2e-5, -1)) == pytest.approx(5e-10 * 2**2.5 * 2**0.8, rel=1e-12)
