"""Mapping calibrated devices onto STPN lambda / gamma, checked against the device physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibration.mapping import (
    PulseWindow,
    map_stpn,
    map_trained,
    pulse_width_for_update,
    update_range,
)
from device_models.card import load_card
from device_models.memristor import pulse_response
from device_models.record import CalibrationError, CalibrationRecord, ReferencePulse
from hwloop.stpn import STPN

CARD = load_card(None)
TAU = np.array([0.5, 1.0, 2.0, 4.0])
REF = ReferencePulse(amplitude_v=1.5, width_s=1e-4)


def record(**kw):
    cols = dict(
        dg_up_siemens=[2e-10, 1e-10, 3e-10, 2e-10],
        dg_down_siemens=[-4e-10, -2e-10, -3e-10, -1e-10],
        amp_exponent=2.0,
        width_exponent=1.0,
        g_min_siemens=1e-9,
        g_max_siemens=2e-8,
    )
    cols.update(kw)
    return CalibrationRecord.from_arrays((2, 2), TAU, reference_pulse=REF, **cols)


def test_pulse_width_writes_the_requested_update_on_the_device_model():
    rec = record()
    target = np.full(4, 1e-10)
    width = pulse_width_for_update(rec, target, amplitude_v=1.5)
    p = CARD.pulse
    for i in range(4):  # from rest, the device model (small-signal regime) writes what was asked
        after = pulse_response(
            0.0,
            1.5,
            float(width[i]),
            g_st_max_siemens=1e-6,
            dg_up_ref_siemens=rec.array("dg_up_siemens")[i],
            dg_down_ref_siemens=4e-10,
            v_ref_v=p.v_ref_v,
            width_ref_s=p.width_ref_s,
            amp_exponent=2.0,
            width_exponent=1.0,
        )
        assert after == pytest.approx(1e-10, rel=1e-3)


def test_update_range_is_bounded_by_the_weaker_polarity():
    rec = record()
    window = PulseWindow(amplitude_min_v=0.75, amplitude_max_v=1.5, width_min_s=1e-5, width_max_s=1e-4)
    low, high = update_range(rec, window)
    up, down = rec.array("dg_up_siemens"), -rec.array("dg_down_siemens")
    np.testing.assert_allclose(high, np.minimum(up, down))  # the reference pulse is the largest allowed
    np.testing.assert_allclose(low, np.maximum(up, down) * 0.25 * 0.1)
    with pytest.raises(CalibrationError, match="pulse window"):
        PulseWindow(amplitude_min_v=2.0, amplitude_max_v=1.0, width_min_s=1e-5, width_max_s=1e-4)


def test_mapping_a_trained_layer_reports_per_synapse_distance():
    rec = record()
    window = PulseWindow.of_card(CARD)
    lam_hw = rec.lam_at(0.1).reshape(2, 2)
    g_per_weight = 1e-8
    low, high = update_range(rec, window)
    idx = map_trained(lam_hw, np.ones((2, 2)), rec, 0.1, g_per_weight, window, bias="device").device_index
    pair_low, pair_high = np.maximum(low[idx[0]], low[idx[1]]), np.minimum(high[idx[0]], high[idx[1]])
    gamma = np.array([[0.5, -1.0], [100.0, 1e-6]]) * (pair_low + pair_high) / 2 / g_per_weight
    m = map_trained(lam_hw, gamma, rec, 0.1, g_per_weight, window, bias="device")
    np.testing.assert_allclose(m.lam_hardware, lam_hw)  # inside the bias window: each device compensated
    assert m.summary()["lambda_abs_err_median"] < 1e-12
    np.testing.assert_array_equal(m.gamma_in_range, [[True, True], [False, False]])
    assert m.gamma_hardware[0, 1] < 0  # polarity kept
    assert m.gamma_hardware[1, 0] == pytest.approx(pair_high[1, 0] / g_per_weight)  # the weaker device


def test_map_stpn_uses_the_layer_parameters():
    torch.manual_seed(0)
    layer = STPN(3, 2)  # (2, 5) synapses, resampled from the 4 devices
    rec = record()
    window = PulseWindow.of_card(CARD)
    m = map_stpn(layer, rec, 0.1, window)
    assert m.lam_trained.shape == (2, 5)
    np.testing.assert_allclose(m.lam_trained, layer.weight_lambda.detach().double().numpy())
    # by hand: device tau (characterised at the card's reference bias) moved by the bias chosen
    b = CARD.bias
    tau_at_v = TAU[m.device_index] * np.exp(-(m.decay_bias_v - b.bias_ref_v) / b.bias_efold_v)
    np.testing.assert_allclose(m.lam_hardware, np.exp(-0.1 / tau_at_v).mean(0), rtol=1e-10)
    assert m.decay_bias_v.min() >= b.bias_min_v and m.decay_bias_v.max() <= b.bias_max_v  # line voltages
    # a bias per device meets every trained lambda inside the window
    m = map_stpn(layer, rec, 0.1, window, bias="device")
    inside = ((m.decay_bias_v > b.bias_min_v) & (m.decay_bias_v < b.bias_max_v)).all(0)
    np.testing.assert_allclose(m.lam_hardware[inside], m.lam_trained[inside], rtol=1e-10)
    np.testing.assert_allclose(
        m.summary()["lambda_abs_err_median"], np.median(np.abs(m.lam_hardware - m.lam_trained))
    )


def test_a_pulse_window_outside_the_cards_pulses_is_refused():
    """Below the write threshold a pulse writes nothing; above v_max it is unsafe: one error each."""
    rec, lam, p = record(), np.full((2, 2), 0.5), CARD.pulse
    assert (PulseWindow.of_card(CARD).amplitude_min_v, PulseWindow.of_card(CARD).amplitude_max_v) == (
        p.v_threshold_v,
        p.v_max_v,
    )
    for lo, hi, what in [
        (0.5 * p.v_threshold_v, p.v_max_v, "threshold"),
        (p.v_threshold_v, 1.2 * p.v_max_v, "safe"),
    ]:
        with pytest.raises(CalibrationError, match=what):
            map_trained(lam, lam, rec, 0.1, 1e-8, PulseWindow(lo, hi, 1e-6, 1e-3), card=CARD)
