"""The hardware-native STPN variant in exact digital arithmetic: retention without normalisation.

A volatile device decays by its own law and cannot divide its conductance by the row norm, so on
hardware-native arrays (``EmulatedCrossbar(normalisation="native")``) the STPN becomes

    G = W + F_{t-1},  n_i = ||G_i,:||_2 + 1e-16,  h_t = tanh((G z)_i / n_i + b_i)      (as the STPN)
    F_t = lambda * F_{t-1} + gamma * (h_t outer z)                                        (no / n)

This backend is that variant in plain differentiable torch, so a model trained on the ideal STPN can
be fine-tuned to it (``--backend ideal-native``) before it runs on native hardware.
"""

from __future__ import annotations

from torch import Tensor

from hwloop.backends.ideal import IdealCrossbar
from hwloop.crossbar import StepResult, read_then_update


class IdealNativeCrossbar(IdealCrossbar):
    """The ideal crossbar with the norm applied only at read: F_t = lambda F_{t-1} + gamma h z."""

    name = "ideal-native"

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """F_t = lambda * F_{t-1} + gamma * (h outer z); ``n`` is not used by this variant."""
        s = self.synapses
        return s.lam * F + s.gamma * (h.unsqueeze(2) * z.unsqueeze(1))

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """``read`` then this variant's ``update`` (the ideal backend's fused step is for the STPN proper)."""
        return read_then_update(self, F, z, bias, energy=energy)
