"""Diffusive (Ag-type) filaments in the simulated lab: the volatile conductance relaxes by ruptures.

``?device=diffusive`` on an ``xbarsim://`` URL gives every device of the array such a filament: a pulse
forms (or re-forms) a filament of 1-4 strands, each rupturing at a random age (``device_models.stepwise``),
so the read-out holds plateaus and drops abruptly to the off state, with the card's read noise on top.
The card's tau (at the idle bias, 0 V) is the mean rupture age of one strand. State only; the physics is
``device_models.stepwise``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device_models.stepwise import draw_strands, held_fraction

DEVICE_TYPES = ("memristive", "diffusive")


class DiffusiveFilaments:
    """Strands of the devices' filaments (rupture ages, shares) and the volatile conductance they held
    when formed; ``tau_s`` (device shape) is each device's mean rupture age, s."""

    def __init__(self, shape: tuple[int, ...], tau_s: np.ndarray, rng: np.random.Generator) -> None:
        self.tau_s = tau_s
        self._rng = rng
        self.rupture_age_s = np.full((*shape, 4), np.inf)
        self.share = np.zeros((*shape, 4))
        self.formed_siemens = np.zeros(shape)

    def part(self, index: Any) -> DiffusiveFilaments:
        """The filaments at ``index`` as views (changes go to these devices here)."""
        sub = object.__new__(DiffusiveFilaments)
        sub.tau_s, sub._rng = self.tau_s[index], self._rng
        sub.rupture_age_s, sub.share = self.rupture_age_s[index], self.share[index]
        sub.formed_siemens = self.formed_siemens[index]
        return sub

    def form(self, g_st_siemens: np.ndarray, where: np.ndarray) -> None:
        """A pulse left volatile conductance ``g_st_siemens`` on the devices ``where``: new strands."""
        ages, share = draw_strands(self._rng, self.formed_siemens.shape, self.tau_s)
        np.copyto(self.rupture_age_s, ages, where=where[..., None])
        np.copyto(self.share, share, where=where[..., None])
        np.copyto(self.formed_siemens, g_st_siemens, where=where)

    def conductance_siemens(self, age_s: Any) -> np.ndarray:
        """Volatile conductance (S) at ``age_s`` s after the last pulse (broadcasts against the shape)."""
        return self.formed_siemens * held_fraction(age_s, self.rupture_age_s, self.share)
