"""The ideal digital crossbar: exact float arithmetic of the STPN equations.

The arithmetic paths give the same numbers to float rounding; the choice is made here, per call, so
the STPN never needs to know. On CPU float32/float64 tensors a whole ``step`` is one hand-fused pass
per row (``hwloop.backends.fused``), and when a gradient is needed (training, BPTT) the same pass with
a hand-derived backward (``hwloop.backends.fused_grad``). When no gradient is needed
(``torch.no_grad``, ``torch.inference_mode``, or no input requires grad) ``read`` and ``update`` are
fused kernels too. Everything else (other devices or dtypes, ``read``/``update`` under autograd, a
differentiable step that also reports energy) is plain differentiable torch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hwloop.backends.fused import fusable, fused_read, fused_step, fused_update
from hwloop.backends.fused_grad import fused_step_with_grad
from hwloop.crossbar import NORM_EPS, Readout, StepResult, Synapses, read_then_update
from hwloop.energy import synaptic_energy_metric


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class IdealCrossbar:
    """G = W + F held as float tensors; autograd-friendly torch when training, fused kernels otherwise."""

    name = "ideal"

    def __init__(self) -> None:
        self._synapses: Synapses | None = None

    @property
    def synapses(self) -> Synapses:
        if self._synapses is None:
            raise RuntimeError("crossbar used before program(): call program(synapses) first")
        return self._synapses

    def program(self, synapses: Synapses) -> None:
        """Keep references to the parameters, so gradients flow to them."""
        self._synapses = synapses

    def initial_state(self, batch_size: int) -> Tensor:
        """F = 0, (B, H, K)."""
        w = self.synapses.weight
        return w.new_zeros((batch_size, *w.shape))

    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """y = (G z) / n with G = W + F, n = ||G_i,:|| + 1e-16; optionally the paper's energy metric."""
        weight = self.synapses.weight
        if not _needs_grad(weight, F, z) and fusable(weight, F, z):
            return Readout(*fused_read(weight, F, z, NORM_EPS, energy))
        G = weight + F
        n = torch.linalg.vector_norm(G, dim=2) + NORM_EPS
        y = torch.bmm(G, z.unsqueeze(2)).squeeze(2) / n
        e = synaptic_energy_metric(G, n, z) if energy else None
        return Readout(y, n, e)

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """F_t = lambda * F_{t-1} / n + gamma * (h outer z)."""
        s = self.synapses
        if not _needs_grad(F, n, h, z, s.lam, s.gamma) and fusable(F, n, h, z, s.lam, s.gamma):
            return fused_update(F, s.lam, s.gamma, n, h, z)
        return s.lam * (F / n.unsqueeze(2)) + s.gamma * (h.unsqueeze(2) * z.unsqueeze(1))

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step: read, h = tanh(y + bias), update; one fused pass per row, and when a gradient
        is needed (training) the fused step with its hand-derived backward (``fused_grad``)."""
        s = self.synapses
        inputs = (s.weight, F, s.lam, s.gamma, z, bias)
        if not fusable(*inputs):
            return read_then_update(self, F, z, bias, energy=energy)
        if not _needs_grad(*inputs):
            return StepResult(*fused_step(*inputs, NORM_EPS, energy))
        if not energy:
            return StepResult(*fused_step_with_grad(*inputs, NORM_EPS), None)
        return read_then_update(self, F, z, bias, energy=energy)

    def energy(self) -> dict[str, float]:
        """A digital array has no physical energy counters."""
        return {}
