"""The STPN layer against an independent step-by-step formulation of the paper's equations.

The reference below is written from the equations alone (numpy, float64, explicit loops over time,
samples and rows) and shares no code with hwloop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwloop.errors import ShapeError
from hwloop.stpn import STPN

I, H, B, T = 5, 6, 3, 24


def reference_run(params, xs, h0, F0):
    """hs (B, T, H), final h (B, H), final F (B, H, I+H), energy (B, T) of the STPN equations."""
    W, lam, gamma, bias = (params[k] for k in ("weight", "weight_lambda", "weight_gamma", "bias"))
    batch, steps, _ = xs.shape
    hidden = W.shape[0]
    hs = np.zeros((batch, steps, hidden))
    energy = np.zeros((batch, steps))
    h, F = h0.astype(np.float64).copy(), F0.astype(np.float64).copy()
    for t in range(steps):
        for b in range(batch):
            z = np.concatenate([xs[b, t], h[b]])
            G = W + F[b]
            n = np.empty(hidden)
            h_new = np.empty(hidden)
            for i in range(hidden):
                n[i] = math.sqrt(sum(g * g for g in G[i])) + 1e-16
                h_new[i] = math.tanh(sum(G[i, j] * z[j] for j in range(len(z))) / n[i] + bias[i])
                energy[b, t] += sum(abs(G[i, j]) * z[j] ** 2 for j in range(len(z))) / n[i]
            for i in range(hidden):
                for j in range(len(z)):
                    F[b, i, j] = lam[i, j] * F[b, i, j] / n[i] + gamma[i, j] * h_new[i] * z[j]
            h[b] = h_new
            hs[b, t] = h_new
    return hs, h, F, energy


def random_problem(seed: int):
    """Parameters with plasticity strong enough that F visibly shapes the outputs, inputs and a state."""
    rng = np.random.default_rng(seed)
    k = I + H
    params = {
        "weight": rng.normal(0.0, 0.5, (H, k)),
        "weight_lambda": rng.uniform(0.0, 1.0, (H, k)),
        "weight_gamma": rng.uniform(-0.5, 0.5, (H, k)),
        "bias": rng.uniform(-0.5, 0.5, H),
    }
    xs = rng.normal(0.0, 1.0, (B, T, I))
    h0 = rng.uniform(-1.0, 1.0, (B, H))
    F0 = rng.normal(0.0, 0.3, (B, H, k))
    return params, xs, h0, F0


def make_layer(params, dtype: torch.dtype) -> STPN:
    layer = STPN(I, H).to(dtype)
    with torch.no_grad():
        for name, value in params.items():
            getattr(layer, name).copy_(torch.as_tensor(value))
    return layer


TOL: dict[torch.dtype, tuple[float, float]] = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-4, 2e-5)}
PATHS = ["fused", "autograd"]


def run_layer(layer: STPN, xs, h0, F0, path: str, dtype: torch.dtype):
    state = (torch.as_tensor(h0, dtype=dtype), torch.as_tensor(F0, dtype=dtype))
    with torch.set_grad_enabled(path == "autograd"):
        result = layer.run(torch.as_tensor(xs, dtype=dtype), state, energy=True)
    assert (result.hs.grad_fn is not None) == (path == "autograd")
    return result


def assert_close_to(got, want, dtype: torch.dtype) -> None:
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", PATHS)
def test_matches_independent_formulation(path: str, dtype: torch.dtype) -> None:
    params, xs, h0, F0 = random_problem(seed=1)
    hs_ref, h_ref, F_ref, e_ref = reference_run(params, xs, h0, F0)
    assert np.abs(F_ref).max() > 0.05, "the test problem must have a non-negligible plastic state"

    result = run_layer(make_layer(params, dtype), xs, h0, F0, path, dtype)
    h, F = result.state
    assert result.hs.dtype == dtype and F.dtype == dtype
    assert_close_to(result.hs.detach().numpy(), hs_ref, dtype)
    assert_close_to(h.detach().numpy(), h_ref, dtype)
    assert_close_to(F.detach().numpy(), F_ref, dtype)
    assert result.energy is not None
    assert_close_to(result.energy.detach().numpy(), e_ref, dtype)


def test_plasticity_changes_outputs() -> None:
    """Guard for the test problem itself: without the Hebbian write (gamma = 0) outputs differ."""
    params, xs, h0, F0 = random_problem(seed=1)
    hs_ref = reference_run(params, xs, h0, F0)[0]
    no_write = dict(params, weight_gamma=np.zeros((H, I + H)))
    hs_no_write = reference_run(no_write, xs, h0, F0)[0]
    assert np.abs(hs_ref - hs_no_write).max() > 0.05

    layer = make_layer(no_write, torch.float64)
    result = run_layer(layer, xs, h0, F0, "fused", torch.float64)
    assert_close_to(result.hs.numpy(), hs_no_write, torch.float64)


def test_gradients_reach_all_four_parameters() -> None:
    params, xs, _, _ = random_problem(seed=2)
    layer = make_layer(params, torch.float32)
    hs, (_, F) = layer(torch.as_tensor(xs, dtype=torch.float32))
    ((hs**2).sum() + F.sum()).backward()
    for name in ("weight", "weight_lambda", "weight_gamma", "bias"):
        grad = getattr(layer, name).grad
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().max() > 0, name


def test_gradient_matches_finite_difference() -> None:
    """Autograd (BPTT) gradient of one entry of each parameter vs a central difference in float64."""
    params, xs, h0, F0 = random_problem(seed=3)
    layer = make_layer(params, torch.float64)
    x = torch.as_tensor(xs)
    state = (torch.as_tensor(h0), torch.as_tensor(F0))

    def loss() -> torch.Tensor:
        hs, (_, F) = layer(x, state)
        return (hs**2).sum() + 0.5 * F.sum()

    loss().backward()
    step = 1e-6
    for name, index in (
        ("weight", (2, 7)),
        ("weight_lambda", (4, 1)),
        ("weight_gamma", (0, 9)),
        ("bias", (3,)),
    ):
        param = getattr(layer, name)
        analytic = param.grad[index].item()
        with torch.no_grad():
            original = param[index].item()
            param[index] = original + step
            up = loss().item()
            param[index] = original - step
            down = loss().item()
            param[index] = original
        numeric = (up - down) / (2 * step)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_gradcheck_tiny_layer() -> None:
    torch.manual_seed(0)
    layer = STPN(2, 3).double()
    with torch.no_grad():
        layer.weight_gamma.uniform_(-0.5, 0.5)  # strong plasticity so the F path carries gradient
    xs = torch.randn(2, 4, 2, dtype=torch.float64)
    names = ("weight", "weight_lambda", "weight_gamma", "bias")

    def outputs(*values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hs, (_, F) = torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (xs,))
        return hs, F

    inputs = tuple(getattr(layer, n).detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(outputs, inputs)


def test_initialisation_ranges() -> None:
    torch.manual_seed(0)
    hidden = 64
    layer = STPN(10, hidden)
    bound = 1.0 / math.sqrt(hidden)
    lam = layer.weight_lambda.detach()
    assert lam.min() >= 0.0 and lam.max() < 1.0
    assert lam.min() < 0.05 and lam.max() > 0.95  # spread over U(0, 1), not a constant
    for tensor, limit in (
        (layer.weight_gamma, 1e-3 * bound),
        (layer.weight, bound),
        (layer.bias, bound),
    ):
        magnitude = tensor.detach().abs()
        assert magnitude.max() <= limit
        assert magnitude.max() > 0.9 * limit
        assert (tensor > 0).any() and (tensor < 0).any()
    assert (
        layer.weight.shape == layer.weight_lambda.shape == layer.weight_gamma.shape == (hidden, 10 + hidden)
    )
    assert layer.bias.shape == (hidden,)


@pytest.mark.parametrize("path", PATHS)
def test_step_and_forward_agree(path: str) -> None:
    params, xs, _, _ = random_problem(seed=4)
    layer = make_layer(params, torch.float32)
    x = torch.as_tensor(xs, dtype=torch.float32)
    with torch.set_grad_enabled(path == "autograd"):
        hs, (h, F) = layer(x)
        state = None
        for t in range(T):
            state = layer.step(x[:, t], state)
            torch.testing.assert_close(state[0], hs[:, t])
    assert state is not None
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], F)


@pytest.mark.parametrize("path", PATHS)
def test_state_carries_over(path: str) -> None:
    params, xs, h0, F0 = random_problem(seed=5)
    layer = make_layer(params, torch.float64)
    x = torch.as_tensor(xs)
    start = (torch.as_tensor(h0), torch.as_tensor(F0))
    with torch.set_grad_enabled(path == "autograd"):
        hs, (h, F) = layer(x, start)
        hs_a, mid = layer(x[:, :10], start)
        hs_b, (h_b, F_b) = layer(x[:, 10:], mid)
    torch.testing.assert_close(torch.cat([hs_a, hs_b], dim=1), hs)
    torch.testing.assert_close(h_b, h)
    torch.testing.assert_close(F_b, F)
    torch.testing.assert_close(start[1], torch.as_tensor(F0), rtol=0, atol=0)  # the caller's state untouched


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda layer: layer(torch.zeros(B, I)), f"xs of shape (B, T, {I})"),
        (lambda layer: layer(torch.zeros(B, T, I + 1)), f"xs of shape (B, T, {I})"),
        (lambda layer: layer(np.zeros((B, T, I))), "got ndarray"),
        (lambda layer: layer.step(torch.zeros(B, I, 1)), f"x of shape (B, {I})"),
        (
            lambda layer: layer.step(torch.zeros(B, I), (torch.zeros(B, H + 1), torch.zeros(B, H, I + H))),
            "got h (3, 7)",
        ),
        (
            lambda layer: layer.step(torch.zeros(B, I), (torch.zeros(B, H), torch.zeros(B, H, I))),
            "F (3, 6, 5)",
        ),
        (
            lambda layer: layer(torch.zeros(B, T, I), (torch.zeros(B + 1, H), torch.zeros(B + 1, H, I + H))),
            "got h (4, 6)",
        ),
    ],
)
def test_wrong_shapes_raise_one_clear_error(call, expected: str) -> None:
    layer = STPN(I, H)
    with pytest.raises(ShapeError) as info:
        call(layer)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
