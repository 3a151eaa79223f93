"""Relaxation by discrete jumps: a diffusive (Ag-type) filament that ruptures in steps.

A volatile filament of several conducting strands (or constrictions) holds its conductance until a
strand ruptures, which happens abruptly (surface diffusion of the last few atoms, far faster than any
read interval); the read-out shows a plateau, a drop, another plateau, ..., and after the last rupture
the off state. Pure numpy; times in seconds, conductances in siemens.

    g(t) = g_off + delta_g * sum_k s_k [t < t_k] + tail_siemens * exp(-t / tau_tail_s)

with rupture times t_k, the strands' shares s_k of the volatile conductance (sum_k s_k = 1: the filament
relaxes fully), and an optional slow exponential tail (e.g. the ionic background of the film). No law of
``device_models.laws`` describes it: the time to full relaxation is a random survival time, not a
time constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Ruptures:
    """Per device (D, K): rupture times (s, NaN for strands that do not exist, sorted ascending) and
    the conductance share each strand carries (0 where no strand; each row sums to 1)."""

    t_s: Array
    share: Array

    @property
    def last_s(self) -> Array:
        """(D,) time of full relaxation: the last rupture, s."""
        return np.nanmax(self.t_s, axis=1)


def stepwise_conductance(
    t_s: Array,
    ruptures: Ruptures,
    g_off_siemens: Array | float,
    delta_g_siemens: Array | float,
    tail_siemens: Array | float = 0.0,
    tau_tail_s: Array | float = np.inf,
) -> Array:
    """g(t) (D, N) S of devices relaxing by ruptures at times t_s (N,) or (D, N) s since the pulse;
    the per-device scalars broadcast as (D,)."""
    t = np.asarray(t_s, dtype=np.float64)
    t = t[None, :] if t.ndim == 1 else t
    intact = t[:, :, None] < np.where(np.isnan(ruptures.t_s), -np.inf, ruptures.t_s)[:, None, :]
    held = (intact * ruptures.share[:, None, :]).sum(axis=2)

    def col(x: Array | float) -> Array:
        return np.asarray(x, dtype=np.float64).reshape(-1, 1) if np.ndim(x) else np.asarray(x)

    tail = col(tail_siemens) * np.exp(-t / col(tau_tail_s))
    return col(g_off_siemens) + col(delta_g_siemens) * held + tail


def draw_ruptures(
    rng: np.random.Generator,
    n_devices: int,
    first_s: float,
    last_s: float,
    max_ruptures: int = 4,
    min_share: float = 0.15,
) -> Ruptures:
    """Random ruptures for ``n_devices``: 1..max_ruptures strands each, rupture times log-uniform in
    [first_s, last_s] s (ruptures cluster within a decade or two of time), shares from a flat Dirichlet
    redrawn until every strand carries at least ``min_share`` (a strand too thin to see is no strand)."""
    counts = rng.integers(1, max_ruptures + 1, n_devices)
    times = np.exp(rng.uniform(np.log(first_s), np.log(last_s), (n_devices, max_ruptures)))
    exists = np.arange(max_ruptures)[None, :] < counts[:, None]
    times = np.sort(np.where(exists, times, np.nan), axis=1)  # NaN sorts last
    share = np.zeros((n_devices, max_ruptures))
    for d in range(n_devices):
        k = int(counts[d])
        floor = min(min_share, 1.0 / k)
        while True:
            s = rng.dirichlet(np.ones(k))
            if s.min() >= floor * 0.999:
                break
        share[d, :k] = s
    return Ruptures(times, share)


def draw_strands(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    tau_s: Array,
    max_strands: int = 4,
    min_share: float = 0.15,
) -> tuple[Array, Array]:
    """Strands of freshly formed filaments, per device of ``shape``: (rupture ages (shape + (K,)) s,
    inf where no strand; shares (shape + (K,)), summing to 1 per device). 1..max_strands strands each;
    a strand's rupture age is exponential with mean ``tau_s`` (shape, s: a thermally activated surface
    diffusion with rate 1/tau), so the time to full relaxation is the largest of a few such ages."""
    count = rng.integers(1, max_strands + 1, shape)
    exists = np.arange(max_strands) < count[..., None]
    ages = np.where(
        exists, rng.exponential(1.0, (*shape, max_strands)) * np.asarray(tau_s)[..., None], np.inf
    )
    raw = np.where(exists, min_share + rng.uniform(0.0, 1.0, (*shape, max_strands)), 0.0)
    return ages, raw / raw.sum(axis=-1, keepdims=True)


def held_fraction(age_s: Array, rupture_age_s: Array, share: Array) -> Array:
    """Fraction of the volatile conductance still held at ``age_s`` s after the filament formed (any
    shape broadcasting against the devices' shape), from strands (device shape + (K,)) s and shares."""
    age = np.asarray(age_s, dtype=np.float64)[..., None]
    return np.asarray((share * (age < rupture_age_s)).sum(axis=-1))
