"""One chip: the lab backend's model of its block (the realisation) and the simulated array it drives are
the same devices: same stuck devices, same decay times, so the same idle lambda (checked against the sim's
own ground truth, exp(-dt / tau(V)) of its devices)."""

from __future__ import annotations

import numpy as np

from device_models.card import load_card
from device_models.realisation import Realisation
from drivers.sim.lab import SimArray


def _pairs(x: np.ndarray, k: int) -> np.ndarray:
    """(R, 2K) device grid -> (2, R, K) [G+, G-] (G- of column j on device column K + j)."""
    return np.stack([x[:, :k], x[:, k : 2 * k]])


def test_the_realisation_and_the_simulated_array_are_one_chip() -> None:
    card, dt = load_card(None), 1 / 15
    stuck_seen = 0
    for seed in range(12):
        real = Realisation.from_card(card, dt, seed, (8, 8))
        sim = SimArray(8, 16, seed)
        np.testing.assert_array_equal(real.stuck_on, _pairs(sim.devices.stuck_on, 8))
        np.testing.assert_array_equal(real.stuck_off, _pairs(sim.devices.stuck_off, 8))
        stuck_seen += int(real.stuck_on.sum() + real.stuck_off.sum())
        for bias in (0.0, 0.6, 1.1):
            lam_sim = np.exp(-dt / _pairs(sim.tau_s(bias), 8))  # the sim's ground truth
            lam_real = real.lambda_at_bias(np.full((2, 8, 8), bias))
            usable = real.usable
            np.testing.assert_allclose(lam_real[usable], lam_sim[usable], rtol=1e-12)
    assert stuck_seen > 0  # the comparison covered stuck devices


def test_a_lab_block_models_the_devices_it_drives(tmp_path) -> None:
    import torch

    from drivers.sim.protocol_xbarsim import forget_arrays, sim_array
    from hwloop.backends.lab import LabCrossbar
    from hwloop.stpn import STPN

    forget_arrays()
    try:
        net = STPN(4, 3)
        lab = LabCrossbar(rows="all", cols="0:4", seed=3, dt_s=0.1, log=tmp_path / "l.h5", rest_s=0)
        net.set_backend(lab)
        with torch.no_grad():
            net.initial_state(1)
        sim = sim_array(3, 8, 3)
        np.testing.assert_array_equal(lab.real.stuck_on, _pairs(sim.devices.stuck_on, 4))
        lam_sim = np.exp(-0.1 / _pairs(sim.tau_s(0.0), 4))
        lam_lab = lab.real.lambda_at_bias(np.zeros((2, 3, 4)))
        np.testing.assert_allclose(lam_lab[lab.real.usable], lam_sim[lab.real.usable], rtol=1e-12)
        lab.close()
    finally:
        forget_arrays()
