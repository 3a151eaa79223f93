"""The emulated kernels are a vectorised twin of the tested device physics (device_models.memristor):
one update equals the device-by-device composition of tau_at_bias, decay_exp, the pair mapping and the
volatile window."""

from __future__ import annotations

import numpy as np
import torch

from device_models.card import load_card
from device_models.mapping import pair_to_weights
from device_models.memristor import decay_exp, tau_at_bias
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses

CARD = load_card(None)


def test_one_update_is_the_per_device_physics() -> None:
    h, k, b, dt = 6, 9, 3, 1 / 15
    gen = torch.Generator().manual_seed(0)
    w = (torch.rand(h, k, generator=gen, dtype=torch.float64) * 2 - 1) * 0.3
    lam = 0.5 + 0.45 * torch.rand(h, k, generator=gen, dtype=torch.float64)
    gamma = (torch.rand(h, k, generator=gen, dtype=torch.float64) * 2 - 1) * 0.09
    xbar = EmulatedCrossbar(
        seed=2, dt_s=dt, normalisation="native", read_noise=False, c2c=False, stuck=False, fault_aware=False
    )  # d2d, quantisation, saturation and bias limits on
    xbar.program(Synapses(w, lam, gamma))
    F0 = (torch.rand(b, h, k, generator=gen, dtype=torch.float64) * 2 - 1) * 0.09
    hh = torch.rand(b, h, generator=gen, dtype=torch.float64) * 2 - 1
    z = torch.rand(b, k, generator=gen, dtype=torch.float64)
    xbar.initial_state(b)
    out = xbar.update(F0, torch.ones(b, h, dtype=torch.float64), hh, z)

    # device by device: F > 0 is volatile conductance on G+, F < 0 on G-; each decays by its own tau
    chip = xbar.realisation((h, k))
    gpw = xbar.g_per_weight
    tau = tau_at_bias(xbar.decay_bias_v.numpy(), chip.tau1_s, CARD.bias.bias_ref_v, CARD.bias.bias_efold_v)
    g_plus = decay_exp(np.maximum(F0.numpy(), 0) * gpw, dt, tau[0])
    g_minus = decay_exp(np.maximum(-F0.numpy(), 0) * gpw, dt, tau[1])
    gain = (chip.write_gain[0] + chip.write_gain[1]) / 2  # the pair's pulse response
    written = pair_to_weights(g_plus, g_minus, gpw) + gamma.numpy() * gain * (
        hh.numpy()[:, :, None] * z.numpy()[:, None, :]
    )
    window = chip.g_st_max_siemens / gpw
    expected = np.clip(written, -window[1], window[0])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert (written > window[0]).any() and (written < -window[1]).any()  # the window did bind
