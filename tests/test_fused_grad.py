"""The fused STPN step's hand-derived backward against autograd of the equations written in torch."""

from __future__ import annotations

import pytest
import torch

from hwloop.backends.ideal import IdealCrossbar
from hwloop.crossbar import Synapses

B, H, I, T = 3, 5, 31, 4  # K = 36: loop tails past SIMD widths exercised


def equations_step(W, F, lam, gamma, z, bias):
    """One STPN step from the paper's equations in plain differentiable torch."""
    G = W + F
    n = torch.linalg.vector_norm(G, dim=2) + 1e-16
    h = torch.tanh(torch.einsum("bik,bk->bi", G, z) / n + bias)
    return h, lam * F / n[..., None] + gamma * h[:, :, None] * z[:, None, :]


def leaves(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(7)
    k = I + H

    def rand(*shape, scale=1.0, offset=0.0):
        return ((torch.rand(*shape, generator=gen, dtype=dtype) - offset) * scale).requires_grad_()

    return {
        "W": rand(H, k, scale=1.0, offset=0.5),
        "lam": rand(H, k),
        "gamma": rand(H, k, scale=0.6, offset=0.5),
        "bias": rand(H, scale=1.0, offset=0.5),
        "xs": rand(B, T, I, scale=2.0, offset=0.5),
        "F0": rand(B, H, k, scale=0.2, offset=0.5),
    }


def loss_through_time(p, step) -> torch.Tensor:
    """A loss touching every h_t and the final F, so every backward term is exercised."""
    h, F, loss = torch.zeros(B, H, dtype=p["W"].dtype), p["F0"], 0.0
    weights = torch.linspace(-1, 1, H, dtype=p["W"].dtype)
    for t in range(T):
        h, F = step(p["W"], F, p["lam"], p["gamma"], torch.cat([p["xs"][:, t], h], 1), p["bias"])
        loss = loss + (h * weights).sum()
    return loss + (F**2).sum()


def ideal_step(W, F, lam, gamma, z, bias):
    crossbar = IdealCrossbar()
    crossbar.program(Synapses(W, lam, gamma))
    h, F_t, _ = crossbar.step(F, z, bias)
    assert type(F_t.grad_fn).__name__ == "FusedStpnStepBackward"  # the fused path, not plain torch
    return h, F_t


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_bptt_gradients_equal_autograd_of_the_equations(dtype: torch.dtype, rtol: float) -> None:
    p = leaves(dtype)
    names = list(p)
    want = torch.autograd.grad(loss_through_time(p, equations_step), [p[k] for k in names])
    got = torch.autograd.grad(loss_through_time(p, ideal_step), [p[k] for k in names])
    for name, g, w in zip(names, got, want, strict=True):
        scale = w.abs().max().item()
        assert (g - w).abs().max().item() <= rtol * scale, name


def test_a_step_whose_state_is_not_used_later_still_trains_its_inputs() -> None:
    # truncated BPTT: the last F_t gets no gradient (None) and the kernel must take that path
    p = leaves(torch.float64)
    z = torch.cat([p["xs"][:, 0], torch.zeros(B, H, dtype=torch.float64)], 1)
    h, _ = ideal_step(p["W"], p["F0"], p["lam"], p["gamma"], z, p["bias"])
    h_ref, _ = equations_step(p["W"], p["F0"], p["lam"], p["gamma"], z, p["bias"])
    params = [p["W"], p["bias"], p["F0"]]
    for g, w in zip(
        torch.autograd.grad(h.sum(), params), torch.autograd.grad(h_ref.sum(), params), strict=True
    ):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)
