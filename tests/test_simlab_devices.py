"""Simulated devices: the one-call read train equals step-by-step evolution, for every decay law."""

from __future__ import annotations

import numpy as np
import pytest

from device_models.card import load_card
from drivers.sim.devices import DeviceArray


def noiseless_card(law: str):
    card = load_card()
    return card.model_copy(
        update={
            "decay": card.decay.model_copy(update={"law": law}),
            "variability": card.variability.model_copy(
                update={
                    "read_noise_rel": 0.0,
                    "c2c_pulse_rel": 0.0,
                    "stuck_on_fraction": 0.0,
                    "stuck_off_fraction": 0.0,
                }
            ),
        }
    )


@pytest.mark.parametrize("law", ["exp", "biexp", "stretched"])
def test_read_train_equals_stepwise_evolution(law) -> None:
    card = noiseless_card(law)
    a = DeviceArray(card, (2, 3), np.random.default_rng(0))
    b = DeviceArray(card, (2, 3), np.random.default_rng(0))
    for dev in (a, b):
        dev.hold(1.5, 1e-3)  # potentiate (above the card's pulse threshold)
        dev.hold(0.0, 0.05)
    offsets = np.arange(50) * 0.1
    train = a.read_train_a(0.2, offsets)
    stepwise = []
    for k in range(50):
        if k:
            b.hold(0.2, 0.1)
        stepwise.append(b.read_current_a(0.2))
    np.testing.assert_allclose(train, np.array(stepwise), rtol=1e-9)
    np.testing.assert_allclose(a.g_fast_siemens, b.g_fast_siemens, rtol=1e-9)
    assert train[0].mean() > train[-1].mean()  # it did decay


def test_exp_decay_follows_the_law_with_each_devices_tau() -> None:
    card = noiseless_card("exp")
    dev = DeviceArray(card, (4,), np.random.default_rng(1))
    dev.hold(2.0, 1e-3)
    g0 = dev.g_fast_siemens.copy()
    i = dev.read_train_a(0.1, np.array([0.0, 2.0]))
    excess = i - dev.g_lt_siemens * 0.1
    np.testing.assert_allclose(excess[1] / excess[0], np.exp(-2.0 / dev.tau_s(0.1)), rtol=1e-9)
    assert np.all(g0 > 0)


def test_reading_at_a_pulse_level_is_refused() -> None:
    dev = DeviceArray(load_card(), (), np.random.default_rng(0))
    with pytest.raises(ValueError, match="below the pulse threshold"):
        dev.read_train_a(1.5, np.arange(3) * 0.1)  # the card's threshold is 1.3 V
