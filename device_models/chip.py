"""One chip: the device-to-device draw of a crossbar, shared by every model of it.

``draw_chip`` is the one function that draws a chip's per-device factors from a seed: the emulated and
aware backends' realisation (``device_models.realisation``) and the simulated lab's arrays
(``drivers.sim.devices``) both call it, so the lab backend's model of a block of devices and the
simulated array it drives are the same devices (same stuck masks, same decay times, windows and pulse
responses).

Layout: an (H, K) layer's pairs are (2, H, K) [G+, G-]; on an H x 2K device array, G+ of synapse
(i, j) sits at (i, j) and G- at (i, K + j) (``device_models.realisation.assign_devices``), which is how
``device_grid`` lays a draw out for a simulated array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from device_models.card import DeviceCard


def draw_chip(
    card: DeviceCard, seed: int, shape: tuple[int, int], d2d: bool = True, stuck: bool = True
) -> dict[str, Any]:
    """The chip of (H, K) = ``shape`` pairs drawn by ``seed``: d2d factors ``tau``, ``window``, ``pulse``
    (log-normal, multiply the card's nominal tau, g_st_max and pulse response) and the ``stuck_on`` /
    ``stuck_off`` masks, each (2, H, K) (float64 / bool).

    The draw: torch PCG on the CPU seeded by ``seed``, in this order: tau, window, pulse (2, H, K)
    standard normals, then one uniform per device for stuck-on / stuck-off."""
    var = card.variability
    gen = torch.Generator().manual_seed(int(seed))
    size = (2, int(shape[0]), int(shape[1]))
    out: dict[str, Any] = {}
    for name, sigma in (
        ("tau", var.d2d_tau_rel),
        ("window", var.d2d_window_rel),
        ("pulse", var.d2d_pulse_rel),
    ):
        draw = torch.randn(size, generator=gen, dtype=torch.float64)
        out[name] = torch.exp(sigma * draw).numpy() if d2d and sigma > 0 else np.ones(size)
    u = torch.rand(size, generator=gen, dtype=torch.float64).numpy()
    on, off = var.stuck_on_fraction, var.stuck_off_fraction
    out["stuck_on"] = (u < on) & stuck
    out["stuck_off"] = (u >= on) & (u < on + off) & stuck
    return out


def device_grid(card: DeviceCard, seed: int, rows: int, cols: int) -> dict[str, Any]:
    """``draw_chip`` laid out on a ``rows`` x ``cols`` device array (each (rows, cols)): the chip of
    (rows, ceil(cols / 2)) pairs with G+ in the first half of the columns and G- in the second, as the
    device-assignment rule places them (an odd last column is dropped)."""
    k = (cols + 1) // 2
    pairs = draw_chip(card, seed, (rows, k))
    return {name: np.concatenate([value[0], value[1]], axis=1)[:, :cols] for name, value in pairs.items()}
