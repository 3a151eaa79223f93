"""The hardware-aware training backend against the emulated backend it models, and the bounded lambda."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from device_models.card import load_card
from hwloop.backends.aware import AwareCrossbar, trainable_lambda_range
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import Synapses
from hwloop.errors import HwloopError, ShapeError
from hwloop.stpn import STPN

NOISE_OFF: dict[str, Any] = dict(read_noise=False, c2c=False)
DT_S = 0.1


def layer(i: int = 5, h: int = 7, seed: int = 0, gamma: float = 0.5) -> STPN:
    torch.manual_seed(seed)
    lo, hi = trainable_lambda_range(None, DT_S)
    net = STPN(i, h, lambda_range=(lo, hi)).double()
    with torch.no_grad():  # the short-term state matters: gamma as large as the weights
        net.weight_gamma.uniform_(-gamma, gamma)
    return net


@pytest.mark.parametrize("normalisation", ["exact", "native"])
@pytest.mark.parametrize("seed", [0, 3])
def test_deterministic_chip_matches_the_emulated_backend(seed: int, normalisation: str) -> None:
    """Noise-free reads: the aware torch path and the emulated numba kernels run the same chip identically.

    Every deterministic non-ideality is on (d2d, stuck, quantise, saturation, bias limits) and gamma is
    large, so the window clamp and row refreshes act; outputs agree to 1e-10 over 25 steps.
    """
    net = layer(seed=seed)
    xs = torch.rand(4, 25, 5, dtype=torch.float64) * 2 - 0.5
    with torch.no_grad():
        options: dict[str, Any] = dict(
            seed=seed, dt_s=DT_S, max_write_gain=4.0, normalisation=normalisation, **NOISE_OFF
        )
        net.set_backend(EmulatedCrossbar(**options))
        emulated = net.run(xs)
        net.set_backend(AwareCrossbar(redraw=False, **options))
        aware = net.run(xs)
    torch.testing.assert_close(aware.hs, emulated.hs, rtol=0, atol=1e-10)
    torch.testing.assert_close(aware.state[1], emulated.state[1], rtol=0, atol=1e-10)


def test_window_clamp_and_stuck_devices_act_in_that_comparison() -> None:
    """The comparison above is not vacuous: the clamp changes F, and the chip has stuck devices."""
    net = layer(h=30)
    xs = torch.rand(4, 25, 5, dtype=torch.float64) * 2 - 0.5
    with torch.no_grad():
        net.set_backend(AwareCrossbar(seed=0, dt_s=DT_S, redraw=False, **NOISE_OFF))
        clamped = net.run(xs).hs
        net.set_backend(AwareCrossbar(seed=0, dt_s=DT_S, redraw=False, saturation=False, **NOISE_OFF))
        free = net.run(xs).hs
    assert float((clamped - free).abs().max()) > 1e-3
    real = net.crossbar.chip.realisation((30, 35))  # type: ignore[attr-defined]
    assert bool((real.stuck_on | real.stuck_off).any())


def _fixed_state(h: int = 6, k: int = 9, batch: int = 4000) -> tuple[Synapses, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(h, k, generator=gen, dtype=torch.float64) - 0.5
    syn = Synapses(w, torch.full_like(w, 0.8), torch.full_like(w, 0.05))
    F = (0.1 * torch.randn(h, k, generator=gen, dtype=torch.float64)).expand(batch, h, k).contiguous()
    z = torch.rand(k, generator=gen, dtype=torch.float64).expand(batch, k).contiguous()
    z[:, 2] = 0.0  # one silent column: no pulse, so no write noise there
    return syn, F, z


@pytest.mark.parametrize("normalisation", ["exact", "native"])
def test_read_noise_variance_matches_the_emulated_backend(normalisation: str) -> None:
    """Per-output read-noise variance of (G z) from many reads: aware equals emulated's own statistics."""
    syn, F, z = _fixed_state()
    variances = []
    for backend in (
        EmulatedCrossbar(
            seed=2, dt_s=DT_S, c2c=False, saturation=False, energy_counters=False, normalisation=normalisation
        ),
        AwareCrossbar(
            seed=2, dt_s=DT_S, c2c=False, saturation=False, redraw=False, normalisation=normalisation
        ),
    ):
        backend.program(syn)
        backend.initial_state(F.shape[0])
        out = backend.read(F, z)
        variances.append((out.y * out.n).var(dim=0))
    assert float(variances[0].min()) > 0
    torch.testing.assert_close(variances[1], variances[0], rtol=0.15, atol=0)  # 4000 draws: ~5% per output


def test_write_noise_matches_the_emulated_backend() -> None:
    """c2c: from F = 0 one update is the write alone; its relative spread is c2c_pulse_rel on both."""
    syn, _, z = _fixed_state()
    batch, h = z.shape[0], syn.weight.shape[0]
    post = torch.full((batch, h), 0.7, dtype=torch.float64)
    n = torch.ones(batch, h, dtype=torch.float64)
    spreads = []
    for backend in (
        EmulatedCrossbar(seed=2, dt_s=DT_S, read_noise=False, saturation=False, energy_counters=False),
        AwareCrossbar(seed=2, dt_s=DT_S, read_noise=False, saturation=False, redraw=False),
    ):
        backend.program(syn)
        F = backend.initial_state(batch)
        out = backend.update(F, n, post, z)
        rel = out / out.mean(dim=0)
        spreads.append(rel.std(dim=0))
    sigma = load_card().variability.c2c_pulse_rel
    for spread in spreads:  # column 2 is silent (z = 0): no write at all
        others = torch.cat([spread[:, :2], spread[:, 3:]], dim=1)
        assert abs(float(others.mean()) - sigma) < 0.1 * sigma


def test_fresh_chip_per_program_and_gradients_reach_every_parameter() -> None:
    """Each program draws another chip (different long-term weights); training gets finite gradients."""
    net = layer(gamma=0.05).float()
    backend = AwareCrossbar(seed=5, dt_s=DT_S)
    net.set_backend(backend)
    xs = torch.rand(8, 6, 5)
    weights = []
    for _ in range(2):
        hs, _ = net(xs)
        hs.square().sum().backward()
        weights.append(backend._W.detach().clone())
    assert backend.chips_drawn == 2
    assert float((weights[0] - weights[1]).abs().max()) > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 0, name


def test_trainable_lambda_range_from_the_card_bias_window() -> None:
    """lo, hi from the card's numbers by hand: tau = tau_ref exp(-(V - V_ref) / V_e), lambda = e^(-dt/tau)."""
    c = load_card()
    b = c.bias
    tau_fast = c.decay.tau_s * math.exp(-(b.bias_max_v - b.bias_ref_v) / b.bias_efold_v)
    tau_slow = c.decay.tau_s * math.exp(-(b.bias_min_v - b.bias_ref_v) / b.bias_efold_v)
    lo, hi = trainable_lambda_range(c, DT_S)
    assert lo == pytest.approx(math.exp(-DT_S / tau_fast), rel=1e-9)
    assert hi == pytest.approx(math.exp(-DT_S / tau_slow), rel=1e-9)


def test_every_trainable_lambda_is_realised_by_the_nominal_device() -> None:
    """The emulated backend (d2d off, a bias per device) realises lambda = lo and hi exactly: no bias is
    clipped. (Lines cannot hold this checkerboard: see tests/test_bias_lines.py.)"""
    lo, hi = trainable_lambda_range(None, DT_S)
    w = torch.full((2, 3), 0.5, dtype=torch.float64)
    lam = torch.tensor([[lo, hi, lo], [hi, lo, hi]], dtype=torch.float64)
    emu = EmulatedCrossbar(dt_s=DT_S, d2d=False, stuck=False, read_noise=False, c2c=False, bias="device")
    emu.program(Synapses(w, lam, torch.zeros_like(w)))
    torch.testing.assert_close(emu.retention, lam.expand(2, 2, 3), rtol=1e-12, atol=0)


def test_bounded_lambda_stays_in_range_and_round_trips(tmp_path: Path) -> None:
    """lambda = lo + (hi - lo) sigmoid(logit) for any logit; an ART checkpoint keeps range and outputs."""
    from experiments.art import load_model, save_checkpoint
    from experiments.art.model import ARTModel

    model = ARTModel("stpn", 5, lambda_range=(0.4, 0.95))
    with torch.no_grad():
        model.stpn.lambda_logit.copy_(torch.linspace(-60, 60, model.stpn.lambda_logit.numel()).view(5, -1))
    lam = model.stpn.weight_lambda.detach()
    assert float(lam.min()) >= 0.4 and float(lam.max()) <= 0.95
    assert float(lam.min()) == pytest.approx(0.4) and float(lam.max()) == pytest.approx(0.95)
    path = tmp_path / "aware.safetensors"
    save_checkpoint(model, path)
    loaded = load_model(path)
    assert loaded.stpn.lambda_range == pytest.approx((0.4, 0.95))
    xs = torch.nn.functional.one_hot(torch.randint(0, 37, (3, 9)), 37).float()
    torch.testing.assert_close(loaded(xs), model.eval()(xs))


def test_lambda_range_is_checked() -> None:
    with pytest.raises(ShapeError, match="lambda_range"):
        STPN(3, 4, lambda_range=(0.9, 0.5))


def test_pong_agent_made_hardware_aware_keeps_its_weights_and_round_trips(tmp_path: Path) -> None:
    """make_hardware_aware clips lambda into the range and keeps W, gamma, bias; the checkpoint keeps it."""
    from experiments.pong.agent import PongAgent, load_agent, make_hardware_aware, save_agent

    torch.manual_seed(0)
    agent = PongAgent("stpn", 4)
    core = agent.core
    assert isinstance(core, STPN)
    with torch.no_grad():
        core.weight_lambda.uniform_(-2.0, 2.0)  # free lambdas far outside any device's range
    before = {name: getattr(core, name).detach().clone() for name in ("weight", "weight_gamma", "bias")}
    lam_before = core.weight_lambda.detach().clone()
    make_hardware_aware(agent, (0.5, 0.9))
    bounded = agent.core
    assert isinstance(bounded, STPN) and bounded.bounded
    for name, value in before.items():
        torch.testing.assert_close(getattr(bounded, name).detach(), value)
    lam = bounded.weight_lambda.detach()
    inside = (lam_before > 0.505) & (lam_before < 0.895)
    torch.testing.assert_close(lam[inside], lam_before[inside], rtol=1e-5, atol=1e-6)
    assert float(lam.min()) >= 0.5 and float(lam.max()) <= 0.9
    path = tmp_path / "agent.safetensors"
    save_agent(agent, path)
    loaded = load_agent(path)
    assert isinstance(loaded.core, STPN) and loaded.core.lambda_range == pytest.approx((0.5, 0.9))
    torch.testing.assert_close(loaded.core.weight_lambda.detach(), lam)


@pytest.mark.parametrize("name", ["stpn_aware", "stpn16_aware"])
def test_shipped_hardware_aware_art_checkpoint_is_bounded_and_realisable(name: str) -> None:
    """The shipped hardware-aware ART checkpoints load as bounded STPNs whose lambdas lie in the card's
    realisable range at 0.1 s."""
    from experiments.art import load_model

    path = Path(__file__).resolve().parents[1] / "experiments" / "art" / "checkpoints" / f"{name}.safetensors"
    model = load_model(path)
    h = model.hidden_size
    lo, hi = trainable_lambda_range(None, DT_S, (h, 37 + h))  # 37 one-hot symbols + the recurrence
    assert model.label == f"STPN-{h}" and model.stpn.lambda_range == pytest.approx((lo, hi), rel=1e-6)
    lam = model.stpn.weight_lambda.detach()
    assert float(lam.min()) > 0 and float(lam.max()) < 1
    assert float(lam.min()) >= lo * (1 - 1e-6) and float(lam.max()) <= hi * (1 + 1e-6)


def test_mix_card_draws_chip_pairs_from_the_record_and_the_card_in_turn(
    tmp_path: Path, quiet_card: Path
) -> None:
    """``mix_card``: chips 0, 1 from the record, 2, 3 from the card, 4, 5 from the record again.

    The record has one unmeasured (broken) device, stuck; the card has no stuck devices. So a record
    chip has exactly one stuck device and a card chip none; and with periphery="both"
    each array is read through both peripheries.
    """
    import numpy as np

    from device_models.record import CalibrationRecord

    net = layer(i=5, h=7)
    h, k = 7, 5 + 7  # the layer's (H, K): a record of H x 2K devices
    tau = np.random.default_rng(1).uniform(5.0, 15.0, size=(h, 2 * k))
    tau[2, 3] = np.nan
    rec = CalibrationRecord.from_arrays(
        (h, 2 * k), tau, decay_bias_v=0.0, dg_up_siemens=np.full((h, 2 * k), 2e-10)
    )
    path = rec.save(tmp_path / "record.json")
    backend = AwareCrossbar(
        card=quiet_card, calibration=path, seed=2, dt_s=DT_S, mix_card=True, periphery="both"
    )
    stuck, peripheries = [], []
    for _ in range(6):
        backend.program(net.synapses())
        real = backend.chip.programmed.real  # type: ignore[union-attr]
        stuck.append(int(real.stuck_on.sum() + real.stuck_off.sum()))
        peripheries.append(backend.periphery is not None)
    assert [backend.chip_source(n) for n in range(6)] == [
        "record",
        "record",
        "card",
        "card",
        "record",
        "record",
    ]
    assert stuck == [1, 1, 0, 0, 1, 1]
    assert peripheries == [False, True] * 3


def test_mix_card_needs_a_record() -> None:
    with pytest.raises(HwloopError, match="mix_card"):
        AwareCrossbar(mix_card=True)


@pytest.mark.parametrize("switch", ["redraw", "mix_card"])
def test_training_switches_refuse_anything_but_true_or_false(switch: str) -> None:
    """``--backend-option mix_card=maybe`` arrives as the string "maybe": refused, not read as true."""
    with pytest.raises(HwloopError, match=f"{switch} must be true or false, got 'maybe'"):
        AwareCrossbar(**{switch: "maybe"})
