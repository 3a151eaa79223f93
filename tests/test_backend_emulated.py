"""The emulated crossbar against the ideal STPN, its native variant, and the configured device statistics."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from device_models.card import DEFAULT_CARD, DeviceCard
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.backends.native import IdealNativeCrossbar
from hwloop.crossbar import Synapses, make_backend
from hwloop.errors import BackendUnavailable, HwloopError, ShapeError
from hwloop.stpn import STPN

ALL_OFF: dict[str, Any] = dict(
    read_noise=False,
    d2d=False,
    c2c=False,
    stuck=False,
    quantise=False,
    saturation=False,
    bias_limits=False,
    bias="device",  # the idealised per-device bias: unclipped, any lambda
    fault_aware=False,
)
DT_S = 0.1


def card_with(**changes: dict[str, Any]) -> DeviceCard:
    """The shipped card with some fields of some sections replaced."""
    data = copy.deepcopy(tomllib.loads(DEFAULT_CARD.read_text()))
    for section, fields in changes.items():
        data[section].update(fields)
    return DeviceCard.from_mapping(data)


def layer(i: int = 5, h: int = 7, seed: int = 0) -> STPN:
    torch.manual_seed(seed)
    net = STPN(i, h).double()
    with torch.no_grad():  # make the short-term state matter: gamma as large as the weights
        net.weight_gamma.uniform_(-0.5, 0.5)
    return net


def synapses(w: torch.Tensor, lam: float | torch.Tensor = 0.5, gamma: float = 0.0) -> Synapses:
    lam_t = torch.full_like(w, lam) if isinstance(lam, float) else lam
    return Synapses(w, lam_t, torch.full_like(w, gamma))


# -- equivalence with every non-ideality off ------------------------------------------------------------


@pytest.mark.parametrize("max_write_gain", [1.5, 16.0])
def test_exact_mode_reproduces_the_ideal_stpn_trajectory(max_write_gain: float) -> None:
    """Outputs and F agree with the ideal STPN to 1e-10 (float64) over 30 steps, refreshes included."""
    net = layer()
    xs = torch.rand(3, 30, 5, dtype=torch.float64)
    with torch.no_grad():
        ideal = net.run(xs)
        emulated = EmulatedCrossbar(dt_s=DT_S, max_write_gain=max_write_gain, **ALL_OFF)
        net.set_backend(emulated)
        run = net.run(xs)
    torch.testing.assert_close(run.hs, ideal.hs, rtol=0, atol=1e-10)
    torch.testing.assert_close(run.state[1], ideal.state[1], rtol=0, atol=1e-10)
    assert float(ideal.state[1].abs().max()) > 1e-2  # F was not negligible
    assert emulated.stats()["max_write_gain"] <= max_write_gain
    if max_write_gain < 2:
        assert emulated.stats()["refresh_rows"] > 0


def test_native_mode_is_the_unnormalised_retention_variant() -> None:
    """Native mode equals F_t = lambda F + gamma (h outer z), y = tanh(G z / n + b), written out here."""
    net = layer()
    xs = torch.rand(2, 25, 5, dtype=torch.float64)
    with torch.no_grad():
        net.set_backend(EmulatedCrossbar(dt_s=DT_S, normalisation="native", **ALL_OFF))
        run = net.run(xs)
        h = torch.zeros(2, 7, dtype=torch.float64)
        F = torch.zeros(2, 7, 12, dtype=torch.float64)
        hs = []
        for t in range(25):
            z = torch.cat([xs[:, t], h], dim=1)
            G = net.weight + F
            n = G.norm(dim=2) + 1e-16
            h = torch.tanh(torch.einsum("bhk,bk->bh", G, z) / n + net.bias)
            F = net.weight_lambda * F + net.weight_gamma * torch.einsum("bh,bk->bhk", h, z)
            hs.append(h)
        native = IdealNativeCrossbar()
        net.set_backend(native)
        plain = net.run(xs)
    torch.testing.assert_close(run.hs, torch.stack(hs, 1), rtol=0, atol=1e-10)
    torch.testing.assert_close(run.state[1], F, rtol=0, atol=1e-10)
    torch.testing.assert_close(plain.hs, torch.stack(hs, 1), rtol=0, atol=1e-12)


def test_same_seed_same_chip_and_noise_other_seed_differs() -> None:
    net = layer()
    xs = torch.rand(2, 10, 5, dtype=torch.float64)
    outs = []
    with torch.no_grad():
        for seed in (3, 3, 4):
            net.set_backend(make_backend("emulated", seed=seed))
            outs.append(net.run(xs).hs)
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


def test_bad_options_are_one_clear_error() -> None:
    with pytest.raises(HwloopError, match="normalisation"):
        EmulatedCrossbar(normalisation="sometimes")
    with pytest.raises(HwloopError, match="dt_s"):
        EmulatedCrossbar(dt_s=0.0)
    with pytest.raises(BackendUnavailable, match="does not take"):
        make_backend("emulated", voltage=3)
    xbar = EmulatedCrossbar()
    xbar.program(synapses(torch.zeros(2, 3, dtype=torch.float64)))
    F = xbar.initial_state(4)
    with pytest.raises(ShapeError, match=r"z must be a CPU torch.float64 tensor of shape \(4, 3\)"):
        xbar.read(F, torch.zeros(4, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match="F must be"):
        xbar.read(F.float(), torch.zeros(4, 3, dtype=torch.float64))


# -- measured statistics match the configuration -------------------------------------------------------


@pytest.mark.parametrize("normalisation", ["native", "exact"])
def test_read_noise_variance_matches_the_per_device_sum(normalisation: str) -> None:
    """var (G z)_i over reads = rel^2 g_max sum_j g_ij z_j^2 / g_per_weight^2, all devices counted."""
    rel, g_min, g_max = 0.05, 1e-9, 2e-8
    card = card_with(variability={"read_noise_rel": rel})
    xbar = EmulatedCrossbar(card, **{**ALL_OFF, "read_noise": True}, normalisation=normalisation)
    torch.manual_seed(1)
    w = torch.rand(4, 6, dtype=torch.float64) - 0.5
    xbar.program(synapses(w))
    reads = 20000
    F = xbar.initial_state(reads)
    z = torch.linspace(-1, 1, 6, dtype=torch.float64).expand(reads, 6)
    out = xbar.read(F, z)
    dot = out.y * out.n
    gpw = (g_max - g_min) / float(w.abs().max())
    g_plus = g_min + w.clamp(min=0) * gpw
    g_minus = g_min + (-w).clamp(min=0) * gpw
    g_devices = g_plus + g_minus + (2 * g_min if normalisation == "exact" else 0.0)  # exact: + the F pair
    expected = rel**2 * g_max * (g_devices * z[0] ** 2).sum(1) / gpw**2
    torch.testing.assert_close(dot.var(0), expected, rtol=0.06, atol=0)
    torch.testing.assert_close(dot.mean(0), w @ z[0], rtol=0, atol=float(expected.sqrt().max()) * 0.05)


def _relax(xbar: EmulatedCrossbar, w: torch.Tensor, steps: int) -> np.ndarray:
    """F trace (steps + 1, H, K) from F = 1e-3 everywhere with no input: pure device decay."""
    F = torch.full((1, *w.shape), 1e-3, dtype=torch.float64)
    trace = [F[0].numpy().copy()]
    zero_h, zero_z = torch.zeros(1, w.shape[0], dtype=w.dtype), torch.zeros(1, w.shape[1], dtype=w.dtype)
    for _ in range(steps):
        n = xbar.read(F, zero_z).n
        F = xbar.update(F, n, zero_h, zero_z)
        trace.append(F[0].numpy().copy())
    return np.stack(trace)


def _loglinear_tau_s(trace: np.ndarray, dt_s: float) -> np.ndarray:
    """Independent fit: least-squares slope of ln F against time, per device; tau = -1 / slope."""
    t = dt_s * np.arange(trace.shape[0])
    logs = np.log(trace.reshape(trace.shape[0], -1))
    tc = t - t.mean()
    slope = (tc[:, None] * (logs - logs.mean(0))).sum(0) / (tc**2).sum()
    return -1.0 / slope


def test_decay_constant_recovered_from_a_simulated_relaxation() -> None:
    card = card_with(variability={"d2d_tau_rel": 0.0})
    lo_tau = 1.0 * math.exp(-(1.2 - 0.6) / 0.25)  # the card's bias window end, by hand
    lam = torch.tensor([[0.8, 0.95, 0.01]], dtype=torch.float64)
    w = torch.full((1, 3), 0.1, dtype=torch.float64)
    xbar = EmulatedCrossbar(card, normalisation="native", **{**ALL_OFF, "bias_limits": True}, dt_s=DT_S)
    xbar.program(synapses(w, lam))
    tau = _loglinear_tau_s(_relax(xbar, w, 40), DT_S)
    expected = [-DT_S / math.log(0.8), -DT_S / math.log(0.95), lo_tau]  # last one clipped by the bias window
    np.testing.assert_allclose(tau, expected, rtol=1e-6)


def test_device_to_device_tau_spread_matches_the_card() -> None:
    sigma = 0.3
    card = card_with(variability={"d2d_tau_rel": sigma})
    w = torch.full((40, 50), 0.1, dtype=torch.float64)
    xbar = EmulatedCrossbar(
        card, normalisation="native", **{**ALL_OFF, "d2d": True, "bias_limits": True}, dt_s=DT_S
    )
    card_var = card.variability
    assert card_var.d2d_tau_rel == sigma
    xbar.program(synapses(w, math.exp(-DT_S / 1.0)))  # target tau = 1 s = the card's reference
    tau = _loglinear_tau_s(_relax(xbar, w, 20), DT_S)
    log_tau = np.log(tau)
    assert abs(log_tau.mean()) < 4 * sigma / math.sqrt(tau.size)
    assert log_tau.std() == pytest.approx(sigma, rel=0.05)


def test_stuck_device_fractions_and_stuck_devices_hold_no_short_term_state() -> None:
    on, off = 0.04, 0.1
    card = card_with(variability={"stuck_on_fraction": on, "stuck_off_fraction": off})
    xbar = EmulatedCrossbar(card, **{**ALL_OFF, "stuck": True}, dt_s=DT_S)
    w = torch.full((100, 200), 0.2, dtype=torch.float64)
    w[0, 0] = 0.4  # w_max: 0.2 maps to mid-window
    xbar.program(synapses(w, 0.9, gamma=0.01))
    g_plus, g_minus = xbar.g_lt_siemens
    n = g_plus.numel()
    frac_on = float((g_minus == 2e-8).double().mean())  # G- should sit at g_min
    frac_off = float((g_plus == 1e-9).double().mean())  # G+ should sit mid-window
    for frac, p in ((frac_on, on), (frac_off, off)):
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    # a positive write cannot land on a synapse whose G+ is stuck
    F = xbar.initial_state(1)
    h = torch.ones(1, 100, dtype=torch.float64)
    z = torch.ones(1, 200, dtype=torch.float64)
    F = xbar.update(F, xbar.read(F, z).n, h, z)
    stuck_plus = (g_plus == 1e-9) | (g_plus == 2e-8)
    stuck_plus[0, 0] = False  # programmed to g_max, not stuck
    assert float(F[0][stuck_plus].abs().max()) == 0.0
    assert float(F[0][~stuck_plus].min()) > 0


def test_quantisation_step_of_programmed_conductances() -> None:
    levels = 17
    card = card_with(window={"levels": levels})
    xbar = EmulatedCrossbar(card, **{**ALL_OFF, "quantise": True})
    torch.manual_seed(2)
    w = torch.rand(20, 30, dtype=torch.float64) * 2 - 1
    xbar.program(synapses(w))
    step = (2e-8 - 1e-9) / (levels - 1)
    k = (xbar.g_lt_siemens - 1e-9) / step
    assert float((k - k.round()).abs().max()) < 1e-9  # every device on the grid
    gpw = (2e-8 - 1e-9) / float(w.abs().max())
    err = (xbar.effective_weight - w).abs()
    assert float(err.max()) <= step / 2 / gpw * (1 + 1e-9)  # within half a step of the target
    assert float(err.max()) > step / 4 / gpw  # and the grid is really that coarse


def test_window_saturation_caps_the_short_term_state() -> None:
    card = card_with(variability={"d2d_window_rel": 0.0})
    xbar = EmulatedCrossbar(card, **{**ALL_OFF, "saturation": True}, normalisation="native")
    w = torch.tensor([[0.5, -0.5]], dtype=torch.float64)
    xbar.program(synapses(w, 0.99, gamma=1.0))
    F = xbar.initial_state(1)
    one_h, z = torch.ones(1, 1, dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    for _ in range(50):
        F = xbar.update(F, xbar.read(F, z).n, one_h, z)
    cap = 5e-9 / ((2e-8 - 1e-9) / 0.5)  # g_st_max in weight units, by hand
    torch.testing.assert_close(F[0, 0], torch.tensor([cap, -cap], dtype=torch.float64))


# -- energy by hand -------------------------------------------------------------------------------------


def test_read_bias_and_programming_energy_by_hand() -> None:
    """1 x 2 array, W = [0.5, -0.25]: G+ = [20, 1] nS, G- = [1, 10.5] nS (window 1-20 nS, 38 nS per unit)."""
    xbar = EmulatedCrossbar(**ALL_OFF, normalisation="native", dt_s=DT_S)
    w = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    lam_ref = math.exp(-DT_S / 1.0)  # tau = 1 s = the card's reference: decay bias 0.6 V on every device
    xbar.program(synapses(w, lam_ref, gamma=0.01))
    F = xbar.initial_state(1)
    z = torch.tensor([[1.0, 0.5]], dtype=torch.float64)  # read voltages 0.2 V and 0.1 V
    out = xbar.read(F, z)
    e_read = 1e-6 * (0.2**2 * (20e-9 + 1e-9) + 0.1**2 * (1e-9 + 10.5e-9))  # V^2 G t per device
    assert xbar.energy()["read_j"] == pytest.approx(e_read, rel=1e-12)
    h = torch.tensor([[1.0]], dtype=torch.float64)
    xbar.update(F, out.n, h, z)
    e_bias = DT_S * 0.6**2 * (20e-9 + 1e-9 + 1e-9 + 10.5e-9)  # F = 0 during this step
    assert xbar.energy()["bias_j"] == pytest.approx(e_bias, rel=1e-12)
    # writes dF = 0.01 * [1, 0.5] land on G+ (20 nS and 1 nS); width = w_ref dG / (dg_up (1.5/1.5)^2)
    dg = np.array([0.01, 0.005]) * 38e-9
    width = 100e-6 * dg / 2e-10
    e_prog = 1.5**2 * float((np.array([20e-9, 1e-9]) * width).sum())
    assert xbar.energy()["program_j"] == pytest.approx(e_prog, rel=1e-12)
    xbar.reset_energy()
    assert xbar.energy() == {"read_j": 0.0, "program_j": 0.0, "bias_j": 0.0}  # native: no refreshes


def test_stpn_on_emulated_backend_by_name_runs_in_float32() -> None:
    torch.manual_seed(0)
    net = STPN(6, 4, backend="emulated")
    with torch.no_grad():
        run = net.run(torch.rand(2, 5, 6), energy=True)
    assert run.hs.shape == (2, 5, 4) and run.energy is not None and torch.isfinite(run.hs).all()
    counters = net.crossbar.energy()
    assert all(counters[k] > 0 for k in ("read_j", "program_j", "bias_j")) and counters["refresh_j"] >= 0


def test_calibration_record_devices_are_compensated_by_their_bias(tmp_path: Path) -> None:
    """Per-device tau from a record: device bias V = V_ref - V_e ln(tau_target / tau_dev), by hand."""
    from device_models.record import CalibrationRecord

    h, k = 3, 4
    tau_dev = np.random.default_rng(0).uniform(0.5, 2.0, size=(h, 2 * k))
    tau_dev[2, 3] = np.nan  # an unmeasured device: must act as broken (stuck at g_min)
    record = CalibrationRecord.from_arrays((h, 2 * k), tau_dev)
    path = record.save(tmp_path / "record.json")
    xbar = EmulatedCrossbar(calibration=path, **{**ALL_OFF, "bias_limits": True}, dt_s=DT_S)
    lam = 0.7
    w = torch.full((h, k), 0.1, dtype=torch.float64)
    xbar.program(synapses(w, lam, gamma=0.01))
    tau_target = -DT_S / math.log(lam)
    pair = np.stack([tau_dev[:, :k], tau_dev[:, k:]])
    bias = np.clip(0.6 - 0.25 * np.log(tau_target / pair), 0.0, 1.2)
    good = np.isfinite(pair)
    np.testing.assert_allclose(xbar.decay_bias_v.numpy()[good], bias[good], rtol=1e-12)
    np.testing.assert_allclose(xbar.retention.numpy()[good], lam, rtol=1e-12)  # every device realises lambda
    assert float(xbar.retention[0, 2, 3]) == 0.0  # the broken G+ holds nothing


def test_record_devices_are_written_by_their_own_pulse_law(tmp_path: Path) -> None:
    """A record with a pulse response: the controller inverts each device's own law, so a write realises
    the trained gamma whatever the device's response (a card's chip realises gamma times its pulse factor,
    tests/test_emulated_physics.py), and each pulse is as wide as that device needs: w_ref dG / dg_up."""
    from device_models.record import CalibrationRecord, ReferencePulse

    h, k = 3, 4
    rng = np.random.default_rng(0)
    dg_up = rng.uniform(1e-10, 4e-10, size=(h, 2 * k))  # half to twice the card's reference response
    record = CalibrationRecord.from_arrays(
        (h, 2 * k),
        np.ones((h, 2 * k)),
        reference_pulse=ReferencePulse(amplitude_v=1.5, width_s=1e-4),  # the card's reference pulse
        dg_up_siemens=dg_up,
        dg_down_siemens=-2 * dg_up,
        amp_exponent=np.full((h, 2 * k), 2.0),
        width_exponent=np.ones((h, 2 * k)),
    )
    path = record.save(tmp_path / "record.json")
    xbar = EmulatedCrossbar(calibration=path, **ALL_OFF, normalisation="native", dt_s=DT_S)
    w = torch.full((h, k), 0.1, dtype=torch.float64)
    gamma = torch.tensor([0.01, -0.02, 0.03, 0.005], dtype=torch.float64).repeat(h, 1)
    xbar.program(Synapses(w, torch.full_like(w, 0.8), gamma))
    F = xbar.initial_state(1)
    one_h, one_z = torch.ones(1, h, dtype=torch.float64), torch.ones(1, k, dtype=torch.float64)
    xbar.reset_energy()
    F = xbar.update(F, xbar.read(F, one_z).n, one_h, one_z)
    torch.testing.assert_close(F[0], gamma, rtol=1e-12, atol=0)  # not gamma dg_up / 2e-10

    # by hand: dF > 0 is written on G+ (record device (i, j)), dF < 0 on G- (device (i, k + j))
    gpw = (2e-8 - 1e-9) / 0.1
    g = 1e-9 + np.stack([np.full((h, k), 0.1 * gpw), np.zeros((h, k))])
    dev = np.stack([dg_up[:, :k], dg_up[:, k:]])
    on = (gamma.numpy() < 0).astype(int)  # which device of the pair the write hits
    dg = np.abs(gamma.numpy()) * gpw
    width = 1e-4 * dg / np.take_along_axis(dev, on[None], 0)[0]
    e_prog = 1.5**2 * float((np.take_along_axis(g, on[None], 0)[0] * width).sum())
    assert xbar.energy()["program_j"] == pytest.approx(e_prog, rel=1e-12)


def test_decay_bias_energy_with_per_device_biases_by_hand(tmp_path: Path) -> None:
    """Calibrated devices sit at different biases: P = sum over devices V^2 g, F counted on its device."""
    from device_models.record import CalibrationRecord

    h, k = 2, 3
    tau_dev = np.random.default_rng(1).uniform(0.5, 2.0, size=(h, 2 * k))
    path = CalibrationRecord.from_arrays((h, 2 * k), tau_dev).save(tmp_path / "record.json")
    xbar = EmulatedCrossbar(
        calibration=path, **{**ALL_OFF, "bias_limits": True}, normalisation="native", dt_s=DT_S
    )
    w = torch.tensor([[0.3, -0.2, 0.0], [0.1, 0.0, -0.3]], dtype=torch.float64)
    gamma = torch.tensor([[0.01, -0.02, 0.03], [-0.01, 0.02, 0.0]], dtype=torch.float64)
    xbar.program(Synapses(w, torch.full_like(w, 0.8), gamma))
    gpw = (2e-8 - 1e-9) / 0.3
    g_plus = 1e-9 + w.clamp(min=0).numpy() * gpw
    g_minus = 1e-9 + (-w).clamp(min=0).numpy() * gpw
    v2 = xbar.decay_bias_v.numpy() ** 2
    F = xbar.initial_state(1)
    z = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    one = torch.ones(1, h, dtype=torch.float64)
    F = xbar.update(F, xbar.read(F, z).n, one, z)  # F = gamma: positive on G+, negative on G-
    xbar.reset_energy()
    xbar.update(F, xbar.read(F, z).n, one, z)
    f = gamma.numpy()
    power = v2[0] * (g_plus + np.maximum(f, 0) * gpw) + v2[1] * (g_minus + np.maximum(-f, 0) * gpw)
    assert xbar.energy()["bias_j"] == pytest.approx(DT_S * power.sum(), rel=1e-12)


@pytest.mark.parametrize(
    ("law", "fields"),
    [("biexp", {"fast_fraction": 1.0, "tau_slow_s": 9.0}), ("stretched", {"stretch_beta": 1.0})],
)
def test_non_exponential_laws_reduce_to_the_exponential_in_their_degenerate_case(
    law: str, fields: dict[str, float]
) -> None:
    """A biexp card with all weight on the fast term, or a stretched card with beta = 1, IS an exp device."""
    card = card_with(decay={"law": law, "tau_s": 0.7, **fields}, variability={"d2d_tau_rel": 0.0})
    w = torch.full((1, 2), 0.1, dtype=torch.float64)
    xbar = EmulatedCrossbar(card, normalisation="native", **{**ALL_OFF, "bias_limits": True}, dt_s=DT_S)
    xbar.program(synapses(w, 0.5))
    bias = 0.6 - 0.25 * math.log((-DT_S / math.log(0.5)) / 0.7)  # by hand, device tau_ref = 0.7 s
    np.testing.assert_allclose(xbar.decay_bias_v.numpy(), bias, rtol=1e-6)
    np.testing.assert_allclose(xbar.retention.numpy(), 0.5, rtol=1e-6)


def test_cycle_to_cycle_write_noise_has_the_configured_spread_and_only_where_pulsed() -> None:
    sigma = 0.2
    card = card_with(variability={"c2c_pulse_rel": sigma})
    xbar = EmulatedCrossbar(card, **{**ALL_OFF, "c2c": True}, normalisation="native")
    h, k, batch, gamma = 50, 60, 8, 0.01
    xbar.program(synapses(torch.full((h, k), 0.1, dtype=torch.float64), 0.5, gamma=gamma))
    z = (torch.rand(batch, k, generator=torch.Generator().manual_seed(5)) < 0.5).double()
    F = xbar.initial_state(batch)
    F = xbar.update(F, xbar.read(F, z).n, torch.ones(batch, h, dtype=torch.float64), z)
    pulsed = (z != 0).unsqueeze(1).expand(batch, h, k)
    eps = (F[pulsed] / gamma - 1) / sigma  # F = gamma h z (1 + sigma eps) where written
    assert abs(float(eps.mean())) < 4 / math.sqrt(eps.numel())
    assert float(eps.std()) == pytest.approx(1.0, rel=0.04)
    assert float(F[~pulsed].abs().max()) == 0.0  # no pulse, no change, no noise
    shared = (z[0] != 0) & (z[1] != 0)
    corr = np.corrcoef(F[0][:, shared].flatten().numpy(), F[1][:, shared].flatten().numpy())[0, 1]
    assert abs(corr) < 0.1  # every sample's devices draw their own noise


def test_programming_energy_with_a_nonlinear_width_law_by_hand() -> None:
    """width_exponent 2: drive ~ (w / w_ref)^2, so the width of a small write is w_ref sqrt(dG / dg_up)."""
    card = card_with(pulse={"width_exponent": 2.0})
    xbar = EmulatedCrossbar(card, **ALL_OFF, normalisation="native", dt_s=DT_S)
    w = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
    xbar.program(synapses(w, 0.5, gamma=-0.01))
    F = xbar.initial_state(1)
    z = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    xbar.update(F, xbar.read(F, z).n, torch.tensor([[1.0]], dtype=torch.float64), z)
    dg = np.array([0.01, 0.005]) * 38e-9  # negative dF: written on G- (1 nS and 10.5 nS)
    width = 100e-6 * np.sqrt(dg / 2e-10)
    assert xbar.energy()["program_j"] == pytest.approx(
        1.5**2 * float((np.array([1e-9, 10.5e-9]) * width).sum())
    )
