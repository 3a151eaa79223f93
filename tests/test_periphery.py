"""The analog periphery model (``device_models.periphery``) against IBM aihwkit's own forward pass,
and the aware training backend's read against the periphery's noise law.

aihwkit is the independent formulation: ``periphery_read`` must deliver what an aihwkit
``InferenceTile`` configured from the same ``Periphery`` delivers, quantisation step for step and
noise in distribution.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from device_models.periphery import Periphery, periphery_read
from hwloop.crossbar import Synapses, make_backend

needs_aihwkit = pytest.mark.skipif(
    importlib.util.find_spec("aihwkit") is None, reason="aihwkit not installed"
)


def aihwkit_tile(weight: torch.Tensor, periphery: Periphery):  # type: ignore[no-untyped-def]
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.tiles.inference import InferenceTile

    cfg = InferenceRPUConfig()
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.weight_scaling_columnwise = periphery.per_output_scale
    cfg.drift_compensation = None
    f = cfg.forward
    f.inp_res, f.out_res, f.out_noise = periphery.inp_res, periphery.out_res, periphery.out_noise
    f.inp_bound, f.out_bound = periphery.inp_bound, periphery.out_bound
    tile = InferenceTile(weight.shape[0], weight.shape[1], cfg)
    tile.eval()
    tile.set_weights(weight)
    return tile


def test_defaults_are_aihwkits_inference_periphery() -> None:
    """7-bit DAC and 9-bit ADC as aihwkit writes them (1 / (2^b - 2)), output noise 0.06."""
    p = Periphery()
    assert p.inp_res == pytest.approx(1 / 126) and p.out_res == pytest.approx(1 / 510)
    assert p.out_noise == 0.06 and p.inp_bound == 1.0 and p.out_bound == 12.0
    assert p.inp_step == pytest.approx(2 / 126) and p.out_step == pytest.approx(24 / 510)


@needs_aihwkit
@pytest.mark.parametrize("per_output", [True, False])
def test_quantisation_matches_aihwkit_step_for_step(per_output: bool) -> None:
    """Noise off: the DAC and ADC roundings give aihwkit's outputs to within float rounding (a value
    landing on a rounding boundary may go either way: at most one ADC step, on few outputs)."""
    torch.manual_seed(0)
    w = torch.randn(11, 48) * torch.linspace(0.1, 1.0, 11)[:, None]  # rows of different scales
    x = torch.tanh(torch.randn(512, 48)) * torch.rand(512, 1)
    p = Periphery(out_noise=0.0, per_output_scale=per_output)
    with torch.no_grad():
        ref = aihwkit_tile(w, p)(x)
    ours = periphery_read(w, x, p, torch.Generator().manual_seed(0))
    scale = (w.abs().amax(1) if per_output else w.abs().max()) * x.abs().amax(1, keepdim=True)
    off = ((ours - ref) / scale / p.out_step).abs()
    assert float(off.max()) < 1.01
    assert float((off > 0.01).float().mean()) < 0.01
    exact = x @ w.T
    assert float((ours - exact).abs().max()) > 0  # the test sees quantisation at all


@needs_aihwkit
def test_output_noise_matches_aihwkit_in_distribution() -> None:
    """Output noise on, DAC/ADC fine: the residual of both, in each output's normalised units, has
    std out_noise (0.06) and no bias; per-output scaling makes it proportional to the row's max |W|."""
    torch.manual_seed(1)
    w = torch.randn(8, 32) * torch.linspace(0.2, 2.0, 8)[:, None]
    x = torch.tanh(torch.randn(4096, 32))
    p = Periphery(inp_bits=24, out_bits=24)
    with torch.no_grad():
        ref = aihwkit_tile(w, p)(x)
    ours = periphery_read(w, x, p, torch.Generator().manual_seed(1))
    scale = w.abs().amax(1) * x.abs().amax(1, keepdim=True)
    exact = x @ w.T
    for y in (ref, ours):
        r = (y - exact) / scale
        assert abs(float(r.std()) / 0.06 - 1) < 0.03
        assert abs(float(r.mean())) < 0.005
        per_row = r.std(dim=0) / 0.06
        assert float(per_row.min()) > 0.93 and float(per_row.max()) < 1.07


def test_aware_backend_reads_through_the_periphery() -> None:
    """The aware backend with periphery="aihwkit" and every device effect off: repeated reads of one
    state scatter with std out_noise * max_j|W_ij| * max_j|z_j| / n_i around G z / n, and F z is
    added exactly (a state F shifts the mean by F z / n, not the noise)."""
    torch.manual_seed(2)
    h, k, b = 6, 20, 2000
    off = dict(read_noise=False, d2d=False, c2c=False, stuck=False, quantise=False, saturation=False)
    xb = make_backend("aware", periphery="aihwkit", seed=3, **off)
    w = (torch.rand(h, k) * 2 - 1) * torch.linspace(0.2, 1.0, h)[:, None]
    xb.program(Synapses(w, torch.full_like(w, 0.8), torch.zeros_like(w)))
    F = xb.initial_state(b) + 0.05 * torch.randn(1, h, k)
    z = (torch.rand(k) * 2 - 1).expand(b, k)
    with torch.no_grad():
        out = xb.read(F, z)
    gz = out.y * out.n
    expected_mean = (w + F[0]) @ z[0]
    sigma = 0.06 * w.abs().amax(1) * z[0].abs().max()
    assert float(sigma.min()) > 0
    per = Periphery()
    w_max, x_max = w.abs().amax(1), z[0].abs().max()
    rounding = x_max * (per.inp_step / 2 * w.abs().sum(1) + per.out_step / 2 * w_max)  # DAC + ADC bound
    assert bool(((gz.mean(0) - expected_mean).abs() <= 4 * sigma / b**0.5 + rounding).all())
    ratio = gz.std(0) / sigma
    assert float(ratio.min()) > 0.9 and float(ratio.max()) < 1.1


def test_aware_backend_refuses_an_unknown_periphery() -> None:
    from hwloop.errors import HwloopError

    bad = r"periphery: Input should be 'none', 'aihwkit' or 'both' \(got 'hermes'\)"
    with pytest.raises(HwloopError, match=bad):
        make_backend("aware", periphery="hermes")
