"""The aihwkit backend against independent formulations: the STPN equations, aihwkit's documented
noise laws, and the device card / calibration record it was configured from.

Tolerances: with every non-ideality off the backend computes in float32 and is compared with a
float64 reference of the STPN equations: |dh| < 2e-5 and |dF| < 1e-4 * max|F| over 25 steps.
No gradient tests: this is an inference backend (the tiles hold copies of the parameters).
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch

from device_models.card import DEFAULT_CARD
from experiments.art import DEFAULT_CHECKPOINT
from hwloop.crossbar import Crossbar, Synapses, make_backend
from hwloop.errors import HwloopError
from hwloop.stpn import STPN

REPO = Path(__file__).resolve().parents[1]
needs_aihwkit = pytest.mark.skipif(
    importlib.util.find_spec("aihwkit") is None, reason="aihwkit not installed"
)


def aihwkit(**options: Any) -> Any:
    """The backend under test (typed Any: its extra attributes are not part of the protocol)."""
    return make_backend("aihwkit", **options)


# -- independent formulations -----------------------------------------------------------------------
def reference_run(syn: Synapses, xs: torch.Tensor, bias: torch.Tensor, native: bool) -> tuple[list, list]:
    """The STPN equations in float64, written out: h_t and F_t per step (native: no / n on F)."""
    w, lam, gamma = (t.double() for t in syn)
    b, steps, _ = xs.shape
    h = torch.zeros(b, w.shape[0], dtype=torch.float64)
    F = torch.zeros(b, *w.shape, dtype=torch.float64)
    hs, Fs = [], []
    for t in range(steps):
        z = torch.cat([xs[:, t].double(), h], dim=1)
        G = w + F
        n = G.pow(2).sum(dim=2).sqrt() + 1e-16
        h = torch.tanh(torch.einsum("bhk,bk->bh", G, z) / n + bias.double())
        retained = lam * F if native else lam * F / n[:, :, None]
        F = retained + gamma * h[:, :, None] * z[:, None, :]
        hs.append(h)
        Fs.append(F)
    return hs, Fs


def make_layer(i: int, hidden: int, seed: int, w_gain: float = 1.0) -> STPN:
    """An STPN with a short-term part large enough to matter (gamma ~ 0.1, not the paper's 1e-3)."""
    torch.manual_seed(seed)
    layer = STPN(i, hidden)
    with torch.no_grad():
        layer.weight.mul_(w_gain)
        layer.weight_gamma.uniform_(-0.1, 0.1)
    return layer


def write_card(tmp_path: Path, **variability: float) -> Path:
    """The shipped card with its variability section replaced (every field not given set to 0)."""
    data = tomllib.loads(DEFAULT_CARD.read_text())
    data["variability"] = {key: 0.0 for key in data["variability"]} | variability
    data["window"]["levels"] = 2**20  # programming quantisation far below the noise under test
    path = tmp_path / "card.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    return path


# -- without aihwkit ------------------------------------------------------------------------------
def _run_without_aihwkit(code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\nsys.modules['aihwkit'] = None  # as if aihwkit were not installed\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_without_aihwkit_make_backend_says_how_to_install() -> None:
    res = _run_without_aihwkit(
        "from hwloop.crossbar import make_backend\n"
        "from hwloop.errors import BackendUnavailable\n"
        "from hwloop.stpn import STPN\n"
        "STPN(3, 2)  # everything else still works\n"
        "try:\n    make_backend('aihwkit')\n"
        "except BackendUnavailable as exc:\n    print(exc)\n"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "make setup" in lines[0] and "aihwkit==1.2.0" in lines[0]


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no shipped ART checkpoint to evaluate")
def test_without_aihwkit_cli_prints_one_error_line() -> None:
    res = _run_without_aihwkit(
        "from hwloop.cli import main\n"
        "sys.argv = ['hwloop', 'art', 'eval', '--backend', 'aihwkit', '--n', '2']\n"
        "main()\n"
    )
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "make setup" in err[0], res.stderr


# -- with every non-ideality off -------------------------------------------------------------------
@needs_aihwkit
@pytest.mark.parametrize("normalisation", ["exact", "native"])
def test_noise_off_reproduces_the_stpn_equations(normalisation: str) -> None:
    torch.manual_seed(1)
    layer = make_layer(10, 12, seed=1, w_gain=4.0)  # row norms ~4: exact mode must refresh rows
    xb = aihwkit(noise="off", normalisation=normalisation, seed=3)
    layer.set_backend(xb)
    xs = torch.rand(4, 25, 10) * 2 - 1
    hs, Fs = reference_run(layer.synapses(), xs, layer.bias.detach(), native=normalisation == "native")
    state = None
    with torch.no_grad():
        for t in range(xs.shape[1]):
            state = layer.step(xs[:, t], state)
            h, F = state
            assert (h.double() - hs[t]).abs().max() < 2e-5, f"h differs at step {t}"
            assert (F.double() - Fs[t]).abs().max() < 1e-4 * Fs[t].abs().max(), f"F differs at step {t}"
    if normalisation == "exact":
        assert xb.row_refreshes > 0  # the periphery scale was folded back and stayed exact


@needs_aihwkit
def test_noise_off_continues_from_a_state_it_did_not_produce() -> None:
    layer = make_layer(6, 5, seed=2)
    xs = torch.rand(3, 12, 6) * 2 - 1
    hs, Fs = reference_run(layer.synapses(), xs, layer.bias.detach(), native=False)
    layer.set_backend(aihwkit(noise="off"))
    state = (hs[7].float(), Fs[7].float())  # e.g. a saved state
    with torch.no_grad():
        for t in range(8, 12):
            state = layer.step(xs[:, t], state)
    assert (state[0].double() - hs[11]).abs().max() < 2e-5
    assert (state[1].double() - Fs[11]).abs().max() < 1e-4 * Fs[11].abs().max()


# -- with non-idealities on ------------------------------------------------------------------------
@needs_aihwkit
def test_read_noise_matches_the_configured_laws(tmp_path: Path) -> None:
    """Repeated reads of one input: var(G z)_i = r^2 w_i sum_j |W_ij| z_j^2 + (s_out w_i max|z|)^2,
    w_i = max_j |W_ij|.

    The first term is the card's read noise (var G = r^2 g_max G per device, aihwkit's PCM_READ), the
    second aihwkit's output (periphery) noise; both are referred to weight units through the mapping
    of each output's max |W| onto the full conductance range (``Periphery.per_output_scale``).
    """
    r = 0.05
    xb = aihwkit(card=write_card(tmp_path, read_noise_rel=r), seed=0)
    torch.manual_seed(0)
    w = (torch.rand(12, 40) * 2 - 1) * 0.15
    xb.program(Synapses(w, torch.full_like(w, 0.5), torch.zeros_like(w)))
    F = xb.initial_state(16)
    z = torch.rand(16, 40) * 2 - 1
    reads = torch.stack([(lambda o: o.y * o.n)(xb.read(F, z)) for _ in range(300)])
    measured = reads.var(dim=0)
    w_max = w.abs().amax(dim=1)  # (H,): one scale per output
    out_noise = xb.describe()["out_noise"]
    expected = (
        r**2 * w_max * (w.abs() @ (z * z).T).T + (out_noise * w_max * z.abs().amax(1, keepdim=True)) ** 2
    )
    ratio = measured / expected
    assert abs(ratio.mean().item() - 1) < 0.05
    assert ratio.min() > 0.6 and ratio.max() < 1.5  # 300 reads: each variance to ~8 %


@needs_aihwkit
def test_relaxation_is_the_chips_uncompensated_d2d_retention(tmp_path: Path) -> None:
    """After one write, h = 0 steps only decay: F_t = lambda'^t F_0 per synapse. With a card the
    controller biases for the nominal device, so a device whose tau is r times the nominal retains
    lambda^(1 / r) (r from the chip draw); one aihwkit device holds the pair's mean of the two."""
    sigma = 0.2
    card = write_card(tmp_path, d2d_tau_rel=sigma)
    xb = aihwkit(card=card, normalisation="native", seed=5, bias="device")  # a bias per device
    torch.manual_seed(5)
    w = (torch.rand(12, 40) * 2 - 1) * 0.2
    lam = 0.7 + 0.25 * torch.rand(12, 40)  # inside the card's bias window at dt = 0.1 s
    xb.program(Synapses(w, lam, torch.zeros_like(w)))
    xb.initial_state(8)
    f0 = xb.describe()["f_unit"] * 0.5 * torch.sign(torch.randn(8, 12, 40))
    F, steps = f0, 6
    zeros_h, z = torch.zeros(8, 12), torch.zeros(8, 40)
    for _ in range(steps):
        F = xb.update(F, torch.ones(8, 12), zeros_h, z)
    lam_rec = (F / f0).pow(1.0 / steps).double()
    r = xb.realisation((12, 40)).tau1_s / 1.0  # the chip's tau over the nominal 1 s
    assert abs(float(torch.from_numpy(r).log().std()) / sigma - 1) < 0.1  # the card's spread
    expected = (lam.double() ** (1 / torch.from_numpy(r))).mean(0)
    torch.testing.assert_close(lam_rec, expected.expand(8, 12, 40), rtol=2e-5, atol=0)


@needs_aihwkit
@pytest.mark.parametrize("writes", ["stochastic", "deterministic"])
def test_pulsed_write_is_gamma_h_z_on_average(tmp_path: Path, writes: str) -> None:
    """aihwkit's pulse coincidences, with steps dwmin_ij carrying gamma_ij (either sign): the write
    averaged over 256 arrays is gamma_ij h_i z_j (regression slope 1, no offset). Deterministic trains
    write every array alike (only the c2c step noise differs), stochastic ones scatter by whole steps."""
    xb = aihwkit(card=write_card(tmp_path), normalisation="native", seed=2, writes=writes)
    torch.manual_seed(2)
    w = (torch.rand(6, 20) * 2 - 1) * 0.2
    xb.program(Synapses(w, torch.full_like(w, 0.5), torch.zeros_like(w)))  # sets the volatile window
    step = xb.describe()["f_unit"] * 0.04  # the card's reference pulse in weight units
    gamma = (torch.rand(6, 20) * 2 - 1) * 3 * step
    xb.program(Synapses(w, torch.full_like(w, 0.5), gamma))
    b = 256
    F = xb.initial_state(b)
    h = (torch.rand(6) * 2 - 1).expand(b, 6)
    z = (torch.rand(20) * 2 - 1).expand(b, 20)
    each = xb.update(F, torch.ones(b, 6), h, z)
    written = each.mean(dim=0)
    target = gamma * h[0][:, None] * z[0][None, :]
    slope = (written * target).sum() / (target * target).sum()
    # deterministic trains round each write to whole steps, and the rounding loses ~5 % of these writes
    assert abs(slope.item() - 1) < (0.05 if writes == "stochastic" else 0.06)
    resid = written - slope * target
    scatter = each.std(dim=0).mean() / step  # between arrays, in reference steps
    if writes == "stochastic":
        assert resid.abs().mean() < 0.1 * target.abs().mean() + step / math.sqrt(b)
        assert scatter > 0.2  # Bernoulli counts: a fraction of a step
    else:  # counts quantised to whole steps, alike on every array: c2c (5 % per step) only
        assert resid.abs().max() < 2 * step
        assert scatter < 0.05


# -- options -----------------------------------------------------------------------------------------
@needs_aihwkit
def test_default_options_build_a_working_backend() -> None:
    xb = aihwkit()
    assert isinstance(xb, Crossbar)
    layer = STPN(4, 3, backend=xb)
    with torch.no_grad():
        hs, (_, F) = layer(torch.rand(2, 5, 4))
    assert hs.shape == (2, 5, 3) and F.shape == (2, 3, 7) and torch.isfinite(hs).all()


@needs_aihwkit
@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"noise": "loud"}, "noise"),
        ({"normalisation": "row"}, "normalisation"),
        ({"renorm_range": 1.0}, "renorm_range"),
    ],
)
def test_bad_options_are_one_clear_error(options: dict[str, object], word: str) -> None:
    with pytest.raises(HwloopError, match=word):
        aihwkit(**options)


@needs_aihwkit
def test_seed_fixes_the_device_draws(tmp_path: Path) -> None:
    """Same seed: the same per-device retentions (d2d tau draw); another seed: different ones."""
    card = write_card(tmp_path, d2d_tau_rel=0.3)
    w = torch.linspace(-0.2, 0.2, 60).reshape(6, 10)
    relaxed = []
    for seed in (4, 4, 5):
        xb = aihwkit(card=card, normalisation="native", seed=seed)
        xb.program(Synapses(w, torch.full_like(w, 0.6), torch.zeros_like(w)))
        xb.initial_state(2)
        f0 = torch.full((2, 6, 10), 0.5 * xb.describe()["f_unit"])
        relaxed.append(xb.update(f0, torch.ones(2, 6), torch.zeros(2, 6), torch.zeros(2, 10)))
    assert torch.equal(relaxed[0], relaxed[1])
    assert not torch.allclose(relaxed[0], relaxed[2])


@needs_aihwkit
def test_stuck_devices_occur_at_the_card_fractions(tmp_path: Path) -> None:
    """Fault-aware programming off. W: each device of the differential pair stuck at g_max with
    probability p moves a synapse with |W| <= max_j|W_ij| / 2 by at least max_j|W_ij| / 2 (each
    output's own scale), for a fraction 1 - (1 - p)^2 of synapses. F: a stuck device (fraction p)
    never leaves 0 under a write that moves every working device by ~20 steps."""
    p = 0.1
    card = write_card(tmp_path, stuck_on_fraction=p)
    xb = aihwkit(card=card, normalisation="native", seed=1, fault_aware=False)
    torch.manual_seed(1)
    w = (torch.rand(40, 60) * 2 - 1) * 0.1
    w[:, 0] = 0.2  # each output's max |W| (its full conductance range): the others are within half
    xb.program(Synapses(w, torch.full_like(w, 0.5), torch.zeros_like(w)))
    moved = ((xb.programmed_weight - w).abs() > 0.1 - 1e-4).float().mean().item()
    assert abs(moved - (1 - (1 - p) ** 2)) < 0.03

    gamma = torch.full_like(w, 20 * 0.04 * xb.describe()["f_unit"])
    xb.program(Synapses(w, torch.full_like(w, 0.5), gamma))
    F = xb.initial_state(2)
    F = xb.update(F, torch.ones(2, 40), torch.ones(2, 40), torch.ones(2, 60))
    assert abs((F == 0).float().mean().item() - p) < 0.02


@needs_aihwkit
def test_fault_aware_programming_finds_and_compensates_stuck_devices(tmp_path: Path) -> None:
    """10 % stuck-on devices, program-and-verify on (the default): the controller finds them (the
    realisation's stuck masks are the truth), no synapse's W is off by half its output's range (the
    partner device or the periphery carries it), and a faulty synapse's F is the exact trained law,
    gamma h z from rest, where the devices would have blocked the write."""
    p = 0.1
    xb = aihwkit(card=write_card(tmp_path, stuck_on_fraction=p), normalisation="native", seed=1)
    torch.manual_seed(1)
    w = (torch.rand(40, 60) * 2 - 1) * 0.1
    w[:, 0] = 0.2
    step = 0.04
    xb.program(Synapses(w, torch.full_like(w, 0.5), torch.zeros_like(w)))
    gamma = torch.full_like(w, 20 * step * xb.describe()["f_unit"])
    xb.program(Synapses(w, torch.full_like(w, 0.5), gamma))
    truth = torch.from_numpy(xb.realisation((40, 60)).stuck_on)
    report = xb.fault_report()
    assert report["faulty_devices"] == int(truth.sum())
    assert xb.faults.faulty is not None and torch.equal(xb.faults.faulty, truth)
    assert float((xb.programmed_weight - w).abs().max()) < 0.1
    digital = truth.any(0)
    assert report["digital_state_synapses"] == int(digital.sum())
    F = xb.initial_state(2)
    F = xb.update(F, torch.ones(2, 40), torch.ones(2, 40), torch.ones(2, 60))
    torch.testing.assert_close(F[:, digital], gamma[digital].expand(2, -1), rtol=1e-6, atol=0)
    assert bool((F[:, ~digital] != 0).all())  # every healthy pair was written
