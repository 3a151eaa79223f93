"""The emulated backend's one-kernel step against its read and update composed (``read_then_update``).

``read`` and ``update`` are each held against independent formulations (device statistics, energy by
hand, noise distributions: test_backend_emulated, test_write_noise, test_bias_lines); the fused
``step`` must give the same numbers to float rounding, with the same noise streams: every path of the
kernel is exercised here (batch 1 and the dense path of batches >= 4, exact and native normalisation,
refreshes, a window that binds, digital synapses of stuck devices, the energy counters and metric).
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest
import torch

from device_models.card import DEFAULT_CARD, DeviceCard
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import StepResult, Synapses, read_then_update
from hwloop.stpn import STPN


class Composed(EmulatedCrossbar):
    """The same backend, stepping by ``read`` then ``update``."""

    def step(
        self, F: torch.Tensor, z: torch.Tensor, bias: torch.Tensor, *, energy: bool = False
    ) -> StepResult:
        return read_then_update(self, F, z, bias, energy=energy)


def faulty_card() -> DeviceCard:
    """The shipped card with 4 % of the devices stuck: fault-aware programming makes synapses digital."""
    data = copy.deepcopy(tomllib.loads(DEFAULT_CARD.read_text()))
    data["variability"].update({"stuck_on_fraction": 0.02, "stuck_off_fraction": 0.02})
    return DeviceCard.from_mapping(data)


def run(
    backend: EmulatedCrossbar, batch: int, dtype: torch.dtype, exclude: tuple[slice, slice] | None = None
) -> tuple[Any, ...]:
    torch.manual_seed(0)
    net = STPN(40, 12).to(dtype)
    with torch.no_grad():  # writes as large as the weights: the window binds
        net.weight_gamma.uniform_(-0.5, 0.5)
    xs = (torch.rand(batch, 14, 40) < 0.3).to(dtype)
    net.set_backend(backend)
    if exclude is not None:  # programmed as the lab backend programs it, then the block taken out
        with torch.no_grad():
            net.run(xs[:, :1])
        backend.exclude_from_energy(*exclude)
        backend.reset_energy()
    with torch.no_grad():
        out = net.run(xs, energy=True)
    return out, backend.energy(), backend.stats(), backend.fault_report()


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("normalisation", ["exact", "native"])
def test_fused_step_equals_read_then_update(batch: int, normalisation: str) -> None:
    options: dict[str, Any] = dict(card=faulty_card(), seed=3, normalisation=normalisation)
    fused, fused_energy, fused_stats, faults = run(EmulatedCrossbar(**options), batch, torch.float64)
    plain, plain_energy, plain_stats, _ = run(Composed(**options), batch, torch.float64)
    torch.testing.assert_close(fused.hs, plain.hs, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.state[1], plain.state[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.energy, plain.energy, rtol=1e-12, atol=0)
    assert fused_energy.keys() == plain_energy.keys()
    for key, value in plain_energy.items():
        assert fused_energy[key] == pytest.approx(value, rel=1e-12), key
    assert fused_stats.keys() == plain_stats.keys()
    for key, value in plain_stats.items():
        assert fused_stats[key] == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), key
    assert faults["digital_state_synapses"] > 0  # the digital synapses were in it
    if normalisation == "exact":
        assert fused_stats["refresh_rows"] > 0  # and the refreshes
    unclipped, *_ = run(EmulatedCrossbar(**options, saturation=False), batch, torch.float64)
    assert not torch.allclose(unclipped.state[1], fused.state[1])  # and the window did bind


def test_fused_step_in_float32_to_float_rounding() -> None:
    """float32 (the benchmarks' dtype): the same to float32 rounding over a run with refreshes."""
    fused, fused_energy, stats, _ = run(EmulatedCrossbar(seed=5), 5, torch.float32)
    plain, plain_energy, _, _ = run(Composed(seed=5), 5, torch.float32)
    torch.testing.assert_close(fused.hs, plain.hs, rtol=0, atol=1e-5)
    torch.testing.assert_close(fused.state[1], plain.state[1], rtol=1e-4, atol=1e-6)
    for key, value in plain_energy.items():
        assert fused_energy[key] == pytest.approx(value, rel=1e-5), key
    assert stats["refresh_rows"] > 0


def test_bias_of_another_shape_falls_back_to_the_composed_step() -> None:
    """A bias the kernel cannot take (another dtype) still steps, by read then update."""
    xbar = EmulatedCrossbar(seed=1)
    w = torch.rand(3, 4, dtype=torch.float64)
    xbar.program(Synapses(w, torch.full_like(w, 0.9), torch.full_like(w, 0.1)))
    F = xbar.initial_state(2)
    z = torch.ones(2, 4, dtype=torch.float64)
    h, F_t, _ = xbar.step(F, z, torch.zeros(3, dtype=torch.float32))
    assert h.shape == (2, 3) and F_t.shape == (2, 3, 4)


def test_fused_step_charges_what_read_then_update_charges_after_an_exclusion() -> None:
    """A lab block's synapses taken out of the energy count (``exclude_from_energy``) are out of the
    one-kernel step's count too: its energy equals the composed step's, and is below the full count."""
    block = (slice(0, 6), slice(10, 30))
    _, fused_energy, _, _ = run(EmulatedCrossbar(seed=4), 3, torch.float64, block)
    _, plain_energy, _, _ = run(Composed(seed=4), 3, torch.float64, block)
    _, full_energy, _, _ = run(EmulatedCrossbar(seed=4), 3, torch.float64)
    for key, value in plain_energy.items():
        assert fused_energy[key] == pytest.approx(value, rel=1e-12), key
    assert (
        fused_energy["bias_j"] < full_energy["bias_j"]
        and fused_energy["program_j"] < full_energy["program_j"]
    )


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_counters_do_not_touch_the_dynamics(batch: int, dtype: torch.dtype) -> None:
    """Without energy counters the step reads no bias table (a row of zeros stands in its sums' loop):
    h and F_t are bit for bit those of the counted step, whose energy the other tests hold; and, in
    float64, read then update's to 1e-12."""
    options: dict[str, Any] = dict(card=faulty_card(), seed=3)
    counted, *_ = run(EmulatedCrossbar(**options), batch, dtype)
    silent, silent_energy, stats, _ = run(EmulatedCrossbar(**options, energy_counters=False), batch, dtype)
    assert torch.equal(silent.hs, counted.hs) and torch.equal(silent.state[1], counted.state[1])
    assert set(silent_energy.values()) == {0.0} and stats["refresh_rows"] > 0
    if dtype == torch.float64:
        plain, *_ = run(Composed(**options, energy_counters=False), batch, dtype)
        torch.testing.assert_close(silent.hs, plain.hs, rtol=0, atol=1e-12)
        torch.testing.assert_close(silent.state[1], plain.state[1], rtol=0, atol=1e-12)
