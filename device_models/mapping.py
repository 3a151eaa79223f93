"""Signed weights <-> conductances of a differential pair (G+, G-).

A synapse of weight w is two devices: w = (G+ - G-) / g_per_weight. Positive weight sits on G+,
negative on G-, the other device stays at the window floor g_min:

    G+ = g_min + max(w, 0) * g_per_weight        G- = g_min + max(-w, 0) * g_per_weight

``g_per_weight`` (S per weight unit) is chosen so the largest |w| of the layer uses the whole
long-term window: g_per_weight = (g_max - g_min) / max|w|. The same scale maps the short-term
state F (weight units) to the volatile conductance of the pair, so G = W + F is one physical
quantity, and read noise / energies computed in siemens convert back by dividing by g_per_weight.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from torch import Tensor

X = TypeVar("X", Tensor, np.ndarray, float)


def weight_scale_siemens(w_max: float, g_min_siemens: float, g_max_siemens: float) -> float:
    """g_per_weight (S per weight unit) mapping |w| = w_max onto the full window [g_min, g_max]."""
    if not w_max > 0:
        raise ValueError(f"w_max must be positive to map weights onto conductances, got {w_max}")
    return (g_max_siemens - g_min_siemens) / w_max


def weights_to_pair(w: X, g_min_siemens: float, g_per_weight: float) -> tuple[X, X]:
    """(G+, G-) in siemens for signed weights ``w`` (weight units)."""
    pos = w.clamp(min=0) if isinstance(w, Tensor) else np.maximum(w, 0.0)
    neg = (-w).clamp(min=0) if isinstance(w, Tensor) else np.maximum(-w, 0.0)
    return g_min_siemens + pos * g_per_weight, g_min_siemens + neg * g_per_weight


def pair_to_weights(g_plus_siemens: X, g_minus_siemens: Any, g_per_weight: float) -> X:
    """Signed weights (weight units) read back from a pair's conductances (S)."""
    return (g_plus_siemens - g_minus_siemens) / g_per_weight
