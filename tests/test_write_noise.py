"""Cycle-to-cycle write noise of the emulated backend against the analytic distribution it models.

Each pulse's change is scaled by (1 + sigma eps), eps ~ N(0, 1) independent per written device and per
step (the distribution torch.randn gave before the noise moved into the update kernel). Checked here
with scipy's normal distribution as the independent reference: KS tests, moments, tail fractions,
independence between samples, rows and steps; and the batch grouping of the kernels (groups of four
samples, one-sample remainder) against the ideal STPN.
"""

from __future__ import annotations

import copy
import math
import tomllib

import numpy as np
import pytest
import torch
from scipy import stats

from device_models.card import DEFAULT_CARD, DeviceCard
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.backends.emulated_kernels import QUANTILES, normals, row_key, write_noise_key
from hwloop.crossbar import Synapses
from hwloop.stpn import STPN

ALL_OFF = dict(
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


def card_with(**changes: dict[str, float]) -> DeviceCard:
    """The shipped card with some fields of some sections replaced."""
    data = copy.deepcopy(tomllib.loads(DEFAULT_CARD.read_text()))
    for section, fields in changes.items():
        data[section].update(fields)
    return DeviceCard.from_mapping(data)


def synapses(w: torch.Tensor, lam: float, gamma: float) -> Synapses:
    return Synapses(w, torch.full_like(w, lam), torch.full_like(w, gamma))


def test_the_noise_stream_is_standard_normal() -> None:
    """400,000 draws: KS against N(0, 1), mean, variance and the 2, 3 and 4 sigma tail fractions."""
    eps = normals(np.uint64(write_noise_key(7, 1)), 400_000, QUANTILES)
    n = eps.size
    assert stats.kstest(eps, "norm").pvalue > 1e-3
    assert abs(eps.mean()) < 4 / math.sqrt(n)
    assert abs(eps.var() - 1) < 4 * math.sqrt(2 / n)
    for k in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(k)
        observed = float((np.abs(eps) > k).mean())
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n) + 1 / n
    assert np.abs(eps).max() > 4.0  # the tails are there, not clipped at the table's edge


@pytest.mark.parametrize("n", [400_001, 2_592])
def test_rows_of_any_length_draw_standard_normals(n: int) -> None:
    """Rows of K (a refresh) and long rows: central formula vectorised, tails from the table; KS against
    N(0, 1), mean, variance, the 2, 3 and 4 sigma tail fractions, both halves of a word uncorrelated."""
    eps = np.concatenate(
        [normals(np.uint64(row_key(np.uint64(11), np.uint64(r))), n, QUANTILES) for r in range(400_001 // n)]
    )
    size = eps.size
    assert stats.kstest(eps, "norm").pvalue > 1e-3
    assert abs(eps.mean()) < 4 / math.sqrt(size)
    assert abs(eps.var() - 1) < 4 * math.sqrt(2 / size)
    for k in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(k)
        observed = float((np.abs(eps) > k).mean())
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / size) + 1 / size
    assert np.abs(eps).max() > 4.0
    row = normals(np.uint64(5), 100_000, QUANTILES)
    assert abs(np.corrcoef(row[:50_000], row[50_000:])[0, 1]) < 4 / math.sqrt(50_000)


def test_streams_of_other_rows_and_steps_are_independent() -> None:
    key = np.uint64(write_noise_key(3, 1))
    a = normals(np.uint64(row_key(key, np.uint64(0))), 50_000, QUANTILES)
    b = normals(np.uint64(row_key(key, np.uint64(1))), 50_000, QUANTILES)
    c = normals(np.uint64(write_noise_key(3, 2)), 50_000, QUANTILES)
    for other in (b, c):
        assert abs(np.corrcoef(a, other)[0, 1]) < 4 / math.sqrt(a.size)
        assert stats.ks_2samp(a, other).pvalue > 1e-3
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 4 / math.sqrt(a.size)  # no serial correlation


@pytest.mark.parametrize("normalisation", ["native", "exact"])
def test_written_change_has_the_analytic_distribution(normalisation: str) -> None:
    """From a decayed nonzero F: F_t - r F / n = gamma h z (1 + sigma eps) where z != 0, exactly r F / n
    elsewhere; eps is N(0, 1) by KS, per write and across two steps."""
    sigma, gamma, lam = 0.1, 0.01, 0.5
    card = card_with(variability={"c2c_pulse_rel": sigma})
    h_, k, batch = 40, 50, 6  # batch 6: one group of four samples and a remainder of two
    w = torch.full((h_, k), 0.1, dtype=torch.float64)
    quiet = EmulatedCrossbar(card, **ALL_OFF, normalisation=normalisation, dt_s=DT_S)
    noisy = EmulatedCrossbar(card, **{**ALL_OFF, "c2c": True}, normalisation=normalisation, dt_s=DT_S)
    gen = torch.Generator().manual_seed(1)
    z = (torch.rand(batch, k, generator=gen) < 0.5).double() * torch.rand(batch, k, generator=gen)
    post = torch.rand(batch, h_, generator=gen, dtype=torch.float64) + 0.5
    pulsed = (z != 0).unsqueeze(1).expand(batch, h_, k)
    draws = []
    for xbar in (quiet, noisy):
        xbar.program(synapses(w, lam, gamma=gamma))
    F0 = 0.02 * torch.rand(batch, h_, k, generator=gen, dtype=torch.float64) - 0.01
    n = quiet.read(F0, z).n
    for _ in range(2):
        decayed = quiet.update(F0, n, torch.zeros_like(post), z)  # the retention part alone, no write
        out = noisy.update(F0, n, post, z)
        write = (post.unsqueeze(2) * z.unsqueeze(1)) * gamma
        torch.testing.assert_close(out[~pulsed], decayed[~pulsed], rtol=0, atol=1e-15)
        eps = ((out - decayed)[pulsed] / write[pulsed] - 1) / sigma
        draws.append(eps.numpy())
        assert stats.kstest(eps.numpy(), "norm").pvalue > 1e-3
    first, second = draws
    assert abs(np.corrcoef(first, second)[0, 1]) < 4 / math.sqrt(first.size)  # a new draw every step
    both = np.concatenate(draws)
    assert abs(both.mean()) < 4 / math.sqrt(both.size)
    assert abs(both.std() - 1) < 4 / math.sqrt(2 * both.size)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_samples_draw_their_own_noise_and_the_same_seed_repeats_it(dtype: torch.dtype) -> None:
    sigma = 0.2
    card = card_with(variability={"c2c_pulse_rel": sigma})
    w = torch.full((30, 40), 0.1, dtype=dtype)
    z = torch.ones(5, 40, dtype=dtype)
    outs = []
    for _ in range(2):
        xbar = EmulatedCrossbar(card, **{**ALL_OFF, "c2c": True}, normalisation="native", seed=4)
        xbar.program(synapses(w, 0.5, gamma=0.01))
        F = xbar.initial_state(5)
        outs.append(xbar.update(F, xbar.read(F, z).n, torch.ones(5, 30, dtype=dtype), z))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    eps = (outs[0].double() / 0.01 - 1) / sigma
    assert stats.kstest(eps.flatten().numpy(), "norm").pvalue > 1e-3
    a, b = eps[0].flatten().numpy(), eps[4].flatten().numpy()  # the group and the remainder
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / math.sqrt(a.size)


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_every_batch_grouping_reproduces_the_ideal_stpn(batch: int) -> None:
    """Groups of four samples and the one-sample remainder compute the same STPN (exact mode, every
    non-ideality off)."""
    torch.manual_seed(0)
    net = STPN(5, 7).double()
    with torch.no_grad():
        net.weight_gamma.uniform_(-0.5, 0.5)
    xs = torch.rand(batch, 12, 5, dtype=torch.float64)
    with torch.no_grad():
        ideal = net.run(xs)
        net.set_backend(EmulatedCrossbar(dt_s=DT_S, **{**ALL_OFF, "saturation": False}))
        run = net.run(xs)
    torch.testing.assert_close(run.hs, ideal.hs, rtol=0, atol=1e-10)
    torch.testing.assert_close(run.state[1], ideal.state[1], rtol=0, atol=1e-10)
