"""The ideal digital crossbar: exact float arithmetic of the STPN equations, differentiable."""

from __future__ import annotations

import torch
from torch import Tensor

from hwloop.crossbar import NORM_EPS, Readout, Synapses
from hwloop.energy import synaptic_energy_metric


class IdealCrossbar:
    """G = W + F held as float tensors; every operation is plain autograd-friendly torch."""

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
        """y = (G z) / n with G = W + F, n = ||G_i,:|| + 1e-16."""
        G = self.synapses.weight + F
        n = torch.linalg.vector_norm(G, dim=2) + NORM_EPS
        y = torch.bmm(G, z.unsqueeze(2)).squeeze(2) / n
        e = synaptic_energy_metric(G, n, z) if energy else None
        return Readout(y, n, e)

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """F_t = lambda * F_{t-1} / n + gamma * (h outer z)."""
        s = self.synapses
        return s.lam * (F / n.unsqueeze(2)) + s.gamma * (h.unsqueeze(2) * z.unsqueeze(1))

    def energy(self) -> dict[str, float]:
        """A digital array has no physical energy counters."""
        return {}
