"""Energy accounting: the STPN paper's synaptic energy metric and physical energy helpers."""

from __future__ import annotations

import torch
from torch import Tensor


def synaptic_energy_metric(G: Tensor, n: Tensor, z: Tensor) -> Tensor:
    """The STPN paper's per-step synaptic energy, sum_ij |G_ij / n_i| * z_j^2, per sample.

    G: (B, H, K) efficacy, n: (B, H) row norms, z: (B, K) presynaptic activity read as volts.
    Returns (B,). With G in siemens and z in volts this is a power (W) per unit read time.
    """
    per_row = torch.einsum("bhk,bk->bh", G.abs(), z * z)
    return (per_row / n).sum(dim=1)
