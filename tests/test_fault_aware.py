"""Fault-aware programming: program-and-verify finds the chip's stuck devices (ground truth: the chip
draw) and the compensated array holds the target weights within the programming noise."""

from __future__ import annotations

import copy
import tomllib

import pytest
import torch

from device_models.card import DEFAULT_CARD, DeviceCard
from device_models.programming import program_and_verify
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses

H, K = 40, 60


def faulty_card(on: float = 0.02, off: float = 0.03) -> DeviceCard:
    data = copy.deepcopy(tomllib.loads(DEFAULT_CARD.read_text()))
    data["variability"].update(stuck_on_fraction=on, stuck_off_fraction=off)
    return DeviceCard.from_mapping(data)


def weights(seed: int = 0) -> Synapses:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(H, K, generator=g, dtype=torch.float64) * 0.3
    w[torch.rand(H, K, generator=g) < 0.2] = 0.0  # zero weights: both devices at g_min, where stuck-off hides
    return Synapses(w, torch.full_like(w, 0.8), torch.full_like(w, 0.01))


def test_verify_finds_exactly_the_stuck_devices_of_the_chip() -> None:
    card = faulty_card()
    xbar = EmulatedCrossbar(card, seed=3, dt_s=0.1)
    xbar.program(weights())
    chip = xbar.realisation((H, K))  # ground truth: the chip draw
    truth = torch.from_numpy(chip.stuck_on | chip.stuck_off)
    assert int(truth.sum()) > 100  # enough faults for the test to mean something
    assert xbar.faults.faulty is not None
    assert torch.equal(xbar.faults.faulty, truth)
    report = xbar.fault_report()
    assert report["faulty_devices"] == int(truth.sum())
    assert report["digital_state_synapses"] == int(truth.any(0).sum())
    assert report["partner_compensated"] + report["digital_weight_synapses"] == int(truth.any(0).sum())


def test_compensated_weights_equal_the_target_within_the_programming_noise() -> None:
    """|W_eff - w| <= (errors of the two devices) / g_per_weight with each device's error bounded by
    the card: half a level step plus 4 sigma of the relative programming error; without fault-aware
    programming the stuck devices put weights off by up to the whole window."""
    card = faulty_card()
    syn = weights(1)
    w = syn.weight
    win, var = card.window, card.variability
    step = (win.g_max_siemens - win.g_min_siemens) / (win.levels - 1)
    gpw = (win.g_max_siemens - win.g_min_siemens) / float(w.abs().max())
    g_plus = win.g_min_siemens + w.clamp(min=0) * gpw
    g_minus = win.g_min_siemens + (-w).clamp(min=0) * gpw
    bound = (step + 4 * var.d2d_g_rel * (g_plus + g_minus) + 8 * var.d2d_g_rel * win.g_max_siemens) / gpw

    aware = EmulatedCrossbar(card, seed=4, dt_s=0.1)
    aware.program(syn)
    error = (aware.effective_weight - w).abs()
    analog = ~(aware.faults.faulty.any(0))  # type: ignore[union-attr]
    healthy_bound = (step + 4 * var.d2d_g_rel * (g_plus + g_minus)) / gpw
    assert bool((error[analog] <= healthy_bound[analog]).all())
    assert bool((error <= bound).all())  # partner-compensated pairs: the partner's level sets the error

    blind = EmulatedCrossbar(card, seed=4, dt_s=0.1, fault_aware=False)
    blind.program(syn)
    assert float((blind.effective_weight - w).abs().max()) > 0.5 * float(w.abs().max())


def test_a_digital_synapse_follows_the_trained_law_exactly() -> None:
    """A faulty synapse's F is computed by the periphery: F_t = lambda F / n + gamma h z, no device."""
    card = faulty_card(on=0.05, off=0.05)
    xbar = EmulatedCrossbar(
        card, seed=2, dt_s=0.1, read_noise=False, d2d=False, c2c=True, quantise=False, saturation=True
    )
    syn = weights(2)
    xbar.program(syn)
    digital = xbar.faults.faulty.any(0)  # type: ignore[union-attr]
    assert int(digital.sum()) > 10
    F = xbar.initial_state(2)
    z = torch.rand(2, K, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = torch.rand(2, H, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        n = xbar.read(F, z).n
        expected = 0.8 * F / n.unsqueeze(2) + 0.01 * h.unsqueeze(2) * z.unsqueeze(1)
        F = xbar.update(F, n, h, z)
        torch.testing.assert_close(F[:, digital], expected[:, digital], rtol=1e-12, atol=1e-15)


def test_program_and_verify_with_hand_made_faults() -> None:
    """Three pairs: healthy; G+ stuck off with target g_min (only the probe finds it) and w = 0, so the
    partner G- is re-targeted to g_min; G+ stuck on with w < 0 (the partner cannot reach g_max + |w|)."""
    card = faulty_card()
    g_min, g_max = card.window.g_min_siemens, card.window.g_max_siemens
    target = torch.tensor([[[5e-9, g_min, g_min]], [[g_min, g_min, 6e-9]]], dtype=torch.float64)
    w_s = target[0, 0] - target[1, 0]
    stuck = {(0, 0, 1): g_min, (0, 0, 2): g_max}

    def respond(t: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        for idx, level in stuck.items():
            out[idx] = level
        return out

    written = respond(target, torch.ones_like(target, dtype=torch.bool))
    g, digital_w, digital_f, report = program_and_verify(
        target, written, w_s, card, respond, torch.Generator().manual_seed(0)
    )
    assert report.faulty is not None
    assert report.faulty.flatten().tolist() == [False, True, True, False, False, False]
    assert digital_f[0].tolist() == [False, True, True]
    assert digital_w[0].tolist() == [False, False, True]  # pair 1 kept analog by its partner
    assert float(g[0, 0, 1] - g[1, 0, 1]) == pytest.approx(0.0, abs=1e-10)
    assert report.partner_compensated == 1 and report.probes >= 3


def test_no_false_alarms_on_a_chip_without_stuck_devices() -> None:
    """Programming error (3 %) and read noise alone never make a healthy device look stuck."""
    card = faulty_card(on=0.0, off=0.0)
    g = torch.Generator().manual_seed(9)
    w = torch.randn(64, 400, generator=g, dtype=torch.float64) * 0.3
    w[torch.rand(64, 400, generator=g) < 0.3] = 0.0
    xbar = EmulatedCrossbar(card, seed=9, dt_s=0.1)
    xbar.program(Synapses(w, torch.full_like(w, 0.8), torch.full_like(w, 0.01)))
    assert xbar.fault_report()["faulty_devices"] == 0
    assert xbar.fault_report()["probes"] > 10_000  # the probe did run on the devices at the window floor
