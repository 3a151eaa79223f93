"""One record means the same on every backend: the emulated and aihwkit backends realise it with the same
device per synapse and the same retention for the same target lambda (device_models.realisation)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from device_models.record import CalibrationRecord
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses, make_backend

needs_aihwkit = pytest.mark.skipif(
    importlib.util.find_spec("aihwkit") is None, reason="aihwkit not installed"
)
DT_S = 1 / 15  # one Pong agent step


def record(tmp_path: Path, shape: tuple[int, int]) -> tuple[Path, np.ndarray]:
    """A crossbar-style record: devices characterised at 0 V (tau ~ 5-15 s there), one broken."""
    rng = np.random.default_rng(4)
    tau = rng.uniform(5.0, 15.0, size=shape)
    tau[0, 1] = np.nan
    rec = CalibrationRecord.from_arrays(shape, tau, decay_bias_v=0.0, dg_up_siemens=np.full(shape, 2e-10))
    return rec.save(tmp_path / "record.json"), tau


def decay_ratio(xbar: object, F0: torch.Tensor) -> torch.Tensor:
    """F after one step with no write, over F before (native normalisation, n = 1)."""
    b, h, k = F0.shape
    xbar.initial_state(b)  # type: ignore[attr-defined]
    F = xbar.update(
        F0,
        torch.ones(b, h, dtype=F0.dtype),
        torch.zeros(b, h, dtype=F0.dtype),
        torch.zeros(b, k, dtype=F0.dtype),
    )  # type: ignore[attr-defined]
    return (F / F0).double()


@needs_aihwkit
@pytest.mark.parametrize("shape", [(6, 10), (4, 7)])  # the record's own layout (H, 2K), and a drawn one
def test_emulated_and_aihwkit_realise_one_record_identically(
    tmp_path: Path, quiet_card: Path, shape: tuple[int, int]
) -> None:
    path, tau = record(tmp_path, (6, 20))
    card = quiet_card  # without stuck devices: each backend would otherwise lose a few synapses
    h, k = shape
    torch.manual_seed(0)
    w = (torch.rand(h, k) * 2 - 1) * 0.2
    lam = 0.75 + 0.2 * torch.rand(h, k)
    syn = Synapses(w, lam, torch.zeros_like(w))
    emu = EmulatedCrossbar(
        card,
        calibration=path,
        seed=3,
        dt_s=DT_S,
        normalisation="native",
        read_noise=False,
        fault_aware=False,  # aihwkit has no fault-aware programming: compare the raw realisation
        bias="device",  # a bias per device compensates each one (lines: tests/test_bias_lines.py)
    )
    emu.program(Synapses(*(t.double() for t in syn)))
    aih = make_backend(
        "aihwkit", card=card, calibration=path, seed=3, dt_s=DT_S, normalisation="native", bias="device"
    )
    aih.program(syn)  # type: ignore[arg-type]

    np.testing.assert_array_equal(emu.device_index, aih.device_index)  # type: ignore[attr-defined]
    torch.testing.assert_close(emu.retention, aih.retention.double())  # type: ignore[attr-defined]
    if shape == (6, 10):  # identity: G+ of (i, j) is record device (i, j), G- is (i, 10 + j)
        np.testing.assert_array_equal(emu.device_index[0] % 20, np.arange(10)[None, :].repeat(6, 0))
        np.testing.assert_array_equal(emu.device_index[1] % 20, 10 + np.arange(10)[None, :].repeat(6, 0))

    # by hand: each device's tau at bias V is tau_0V exp(-V / 0.25); the bias is chosen for lambda
    tau_dev = tau.reshape(-1)[emu.device_index]
    v = emu.decay_bias_v.numpy()
    ok = np.isfinite(tau_dev)
    by_hand = np.exp(-DT_S / (tau_dev * np.exp(-v / 0.25)))
    np.testing.assert_allclose(emu.retention.numpy()[ok], by_hand[ok], rtol=1e-10)
    inside = ok & (v > 0.0) & (v < 1.2)
    target = np.broadcast_to(lam.double().numpy(), v.shape)
    np.testing.assert_allclose(emu.retention.numpy()[inside], target[inside], rtol=1e-10)
    assert inside.sum() > 0.9 * ok.sum()

    # behaviour: emulated decays F > 0 by r+ and F < 0 by r-; aihwkit's one device by their mean
    pos = torch.full((1, h, k), 1e-3, dtype=torch.float64)
    r_plus, r_minus = decay_ratio(emu, pos)[0], decay_ratio(emu, -pos)[0]
    r_aihwkit = decay_ratio(aih, pos.float())[0]
    both = torch.from_numpy(ok.all(0))
    torch.testing.assert_close(r_aihwkit[both], ((r_plus + r_minus) / 2)[both], rtol=2e-6, atol=0)
    assert math.isclose(float(r_plus[both].mean()), float(lam.double()[both].mean()), rel_tol=0.05)
