"""The ideal crossbar's read and update, on both arithmetic paths, against the equations per row."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hwloop.backends.ideal as ideal
from hwloop.backends.fused import fused_step
from hwloop.crossbar import Crossbar, Synapses, available_backends, make_backend
from hwloop.errors import BackendUnavailable
from hwloop.stpn import STPN

B, H, K = 3, 5, 37  # K not a multiple of any SIMD width, so loop tails are exercised


def reference_read(W, F, z):
    """y (B, H), n (B, H), energy (B,) of G = W + F per row, float64, written from the equations."""
    y, n, energy = np.zeros((B, H)), np.zeros((B, H)), np.zeros(B)
    for b in range(B):
        for i in range(H):
            row = [W[i, j] + F[b, i, j] for j in range(K)]
            n[b, i] = math.sqrt(sum(g * g for g in row)) + 1e-16
            y[b, i] = sum(g * z[b, j] for j, g in enumerate(row)) / n[b, i]
            energy[b] += sum(abs(g) * z[b, j] ** 2 for j, g in enumerate(row)) / n[b, i]
    return y, n, energy


def reference_update(F, lam, gamma, n, h, z):
    out = np.zeros((B, H, K))
    for b in range(B):
        for i in range(H):
            for j in range(K):
                out[b, i, j] = lam[i, j] * F[b, i, j] / n[b, i] + gamma[i, j] * h[b, i] * z[b, j]
    return out


def arrays(seed: int):
    rng = np.random.default_rng(seed)
    return {
        "W": rng.normal(0, 0.5, (H, K)),
        "lam": rng.uniform(0, 1, (H, K)),
        "gamma": rng.uniform(-0.5, 0.5, (H, K)),
        "F": rng.normal(0, 0.3, (B, H, K)),
        "z": rng.normal(0, 1, (B, K)),
        "h": rng.uniform(-1, 1, (B, H)),
        "n": rng.uniform(0.5, 2.0, (B, H)),
    }


def programmed(a, dtype: torch.dtype, requires_grad: bool) -> ideal.IdealCrossbar:
    crossbar = ideal.IdealCrossbar()
    params = (torch.tensor(a[k], dtype=dtype, requires_grad=requires_grad) for k in ("W", "lam", "gamma"))
    crossbar.program(Synapses(*params))
    return crossbar


TOL: dict[torch.dtype, tuple[float, float]] = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-6)}
CONTEXTS = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode, "autograd": torch.enable_grad}


def assert_close_to(got, want, dtype: torch.dtype) -> None:
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts calls into the fused kernels made by the ideal backend."""
    calls = {"read": 0, "update": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(ideal, "fused_read", counting("read", ideal.fused_read))
    monkeypatch.setattr(ideal, "fused_update", counting("update", ideal.fused_update))
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_read_and_update_match_the_equations(context: str, dtype: torch.dtype, kernel_calls) -> None:
    a = arrays(seed=0)
    crossbar = programmed(a, dtype, requires_grad=True)
    F, z, h, n = (torch.tensor(a[k], dtype=dtype) for k in ("F", "z", "h", "n"))
    with CONTEXTS[context]():
        out = crossbar.read(F, z, energy=True)
        F_next = crossbar.update(F, n, h, z)
    fused = context != "autograd"
    assert kernel_calls == {"read": int(fused), "update": int(fused)}
    assert (F_next.grad_fn is None) == fused

    y_ref, n_ref, e_ref = reference_read(a["W"], a["F"], a["z"])
    for got, want in ((out.y, y_ref), (out.n, n_ref), (out.energy, e_ref)):
        assert got is not None and got.dtype == dtype
        assert_close_to(got.detach().numpy(), want, dtype)
    F_ref = reference_update(a["F"], a["lam"], a["gamma"], a["n"], a["h"], a["z"])
    assert F_next.dtype == dtype and F_next.shape == (B, H, K)
    assert_close_to(F_next.detach().numpy(), F_ref, dtype)


def test_fused_path_when_nothing_requires_grad(kernel_calls) -> None:
    a = arrays(seed=1)
    crossbar = programmed(a, torch.float64, requires_grad=False)
    F, z, h = (torch.tensor(a[k]) for k in ("F", "z", "h"))
    crossbar.update(F, crossbar.read(F, z).n, h, z)  # grad mode on, but no input needs a gradient
    assert kernel_calls == {"read": 1, "update": 1}


def test_read_without_energy_returns_none() -> None:
    a = arrays(seed=2)
    crossbar = programmed(a, torch.float32, requires_grad=False)
    for context in CONTEXTS.values():
        with context():
            assert crossbar.read(torch.tensor(a["F"], dtype=torch.float32), torch.zeros(B, K)).energy is None


def test_update_leaves_the_callers_state_untouched() -> None:
    a = arrays(seed=3)
    crossbar = programmed(a, torch.float64, requires_grad=False)
    F = torch.tensor(a["F"])
    before = F.clone()
    with torch.no_grad():
        F_next = crossbar.update(F, torch.tensor(a["n"]), torch.tensor(a["h"]), torch.tensor(a["z"]))
    assert F_next.data_ptr() != F.data_ptr()
    assert torch.equal(F, before)


def test_non_contiguous_inputs_on_the_fused_path() -> None:
    a = arrays(seed=4)
    crossbar = programmed(a, torch.float64, requires_grad=False)
    wide = torch.zeros(B, H, 2 * K, dtype=torch.float64)
    wide[:, :, ::2] = torch.tensor(a["F"])
    F = wide[:, :, ::2]  # a strided view of the state
    z = torch.tensor(a["z"]).T.contiguous().T  # a transposed layout
    assert not F.is_contiguous() and not z.is_contiguous()
    with torch.no_grad():
        out = crossbar.read(F, z, energy=True)
    y_ref, n_ref, e_ref = reference_read(a["W"], a["F"], a["z"])
    assert out.energy is not None
    for got, want in ((out.y, y_ref), (out.n, n_ref), (out.energy, e_ref)):
        assert_close_to(got.numpy(), want, torch.float64)


@pytest.mark.parametrize("context", list(CONTEXTS))
def test_all_zero_row_reads_zero_not_nan(context: str) -> None:
    a = arrays(seed=5)
    a["W"][2] = 0.0
    a["F"][:, 2] = 0.0
    crossbar = programmed(a, torch.float32, requires_grad=True)
    with CONTEXTS[context]():
        out = crossbar.read(torch.tensor(a["F"], dtype=torch.float32), torch.ones(B, K), energy=True)
    assert out.energy is not None
    assert torch.isfinite(out.y).all() and torch.isfinite(out.energy).all()
    assert torch.equal(out.y[:, 2], torch.zeros(B))
    torch.testing.assert_close(out.n[:, 2], torch.full((B,), 1e-16))


def test_fused_kernels_keep_torch_thread_setting() -> None:
    """numba's OpenMP start-up shares libgomp with torch; the user's thread count must survive it.

    Run in a fresh interpreter: the start-up happens once per process.
    """
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from hwloop.backends.ideal import IdealCrossbar\n"
        "from hwloop.crossbar import Synapses\n"
        "c = IdealCrossbar(); c.program(Synapses(*(torch.rand(4, 9) for _ in range(3))))\n"
        "ones = torch.ones(2, 4)\n"
        "with torch.no_grad(): c.update(c.initial_state(2), ones, ones, torch.ones(2, 9))\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_ideal_backend_is_registered_and_a_crossbar() -> None:
    assert "ideal" in available_backends()
    backend = make_backend("ideal")
    assert isinstance(backend, Crossbar)
    assert backend.name == "ideal"
    assert backend.energy() == {}


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(BackendUnavailable) as info:
        make_backend("no-such-array")
    message = str(info.value)
    assert "no-such-array" in message
    assert all(name in message for name in available_backends())
    assert "\n" not in message
    with pytest.raises(BackendUnavailable, match="no-such-array"):
        STPN(3, 4, backend="no-such-array")


def test_backend_option_it_does_not_take_is_refused() -> None:
    with pytest.raises(BackendUnavailable, match="does not take option"):
        make_backend("ideal", noise=0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("context", list(CONTEXTS))
def test_whole_step_matches_the_equations(context: str, dtype: torch.dtype, monkeypatch) -> None:
    """``step`` = read, h = tanh(y + b), update; one fused pass per row whenever no gradient is needed."""
    calls = []
    monkeypatch.setattr(ideal, "fused_step", lambda *args: calls.append(1) or fused_step(*args))
    a = arrays(seed=3)
    bias = np.random.default_rng(3).uniform(-0.5, 0.5, H)
    crossbar = programmed(a, dtype, requires_grad=True)
    F, z = (torch.tensor(a[k], dtype=dtype) for k in ("F", "z"))
    with CONTEXTS[context]():
        h, F_next, energy = crossbar.step(F, z, torch.tensor(bias, dtype=dtype), energy=True)
    assert len(calls) == int(context != "autograd")

    y_ref, n_ref, e_ref = reference_read(a["W"], a["F"], a["z"])
    h_ref = np.tanh(y_ref + bias)
    F_ref = reference_update(a["F"], a["lam"], a["gamma"], n_ref, h_ref, a["z"])
    assert energy is not None
    for got, want in ((h, h_ref), (F_next, F_ref), (energy, e_ref)):
        assert got.dtype == dtype
        assert_close_to(got.detach().numpy(), want, dtype)
