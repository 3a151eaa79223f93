"""Simulated memristive devices: state and per-device parameters, evolved by ``device_models`` physics.

A ``DeviceArray`` holds any number of devices (one for an SMU, rows x cols behind the controller), each
with its own parameters drawn once from the card's device-to-device spreads (so the ground truth, e.g.
``tau_s(bias_v)``, is known), and evolves their short-term conductance under applied voltages:

* a held level with |V| >= the card's pulse threshold acts as a pulse of that width (``pulse_response``);
* below the threshold the short-term part relaxes with the decay law at tau(V) (``tau_at_bias``).

All physics is delegated to ``device_models.memristor``; this module only keeps the state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device_models.card import DeviceCard
from device_models.memristor import (
    card_pulse_kwargs,
    decay_biexp,
    decay_exp,
    decay_stretched,
    pulse_response,
    quantise_conductance,
    read_current_a,
    read_noise_var_siemens2,
    tau_at_bias,
)

SHORTED_SIEMENS = 1e-2  # a broken-down (stuck-on, shorted) device: 10 mA at 1 V
_PARAMETERS = ("tau_ref_s", "g_st_max_siemens", "pulse_scale", "g_lt_siemens", "stuck_on", "stuck_off")
# evolved in place (never rebound), so that a ``part`` sees and makes every change
_STATE = ("shorted", "g_fast_siemens", "g_slow_siemens", "age_s")


class DeviceArray:
    """Devices of one ``shape`` drawn from ``card`` with ``rng``; state starts at rest (g_st = 0).

    ``chip``: the d2d factors and stuck masks of a drawn chip, each of ``shape``
    (``device_models.chip.device_grid``), so that this array is that chip; ``None`` draws them from
    ``rng`` (a single SMU device). ``rng`` always draws the long-term states and the noise."""

    def __init__(
        self,
        card: DeviceCard,
        shape: tuple[int, ...],
        rng: np.random.Generator,
        chip: dict[str, Any] | None = None,
    ) -> None:
        v, w = card.variability, card.window
        self.card = card
        self.shape = shape
        self._rng = rng
        if chip is None:
            chip = {
                "tau": rng.lognormal(0.0, v.d2d_tau_rel, shape),
                "window": rng.lognormal(0.0, v.d2d_window_rel, shape),
                "pulse": rng.lognormal(0.0, v.d2d_pulse_rel, shape),
            }
        self.tau_ref_s = card.decay.tau_s * chip["tau"]
        self.g_st_max_siemens = w.g_st_max_siemens * chip["window"]
        self.pulse_scale = np.array(chip["pulse"], dtype=float)
        target = rng.uniform(w.g_min_siemens, w.g_max_siemens, shape)
        programmed = quantise_conductance(target, w.g_min_siemens, w.g_max_siemens, w.levels)
        self.g_lt_siemens = np.clip(
            programmed * (1 + v.d2d_g_rel * rng.standard_normal(shape)), w.g_min_siemens, w.g_max_siemens
        )
        if "stuck_on" in chip:
            self.stuck_on, self.stuck_off = np.array(chip["stuck_on"]), np.array(chip["stuck_off"])
        else:
            draw = rng.uniform(size=shape)
            self.stuck_on = draw < v.stuck_on_fraction
            self.stuck_off = (draw >= v.stuck_on_fraction) & (
                draw < v.stuck_on_fraction + v.stuck_off_fraction
            )
        self.g_lt_siemens = np.where(self.stuck_on, w.g_max_siemens, self.g_lt_siemens)
        self.g_lt_siemens = np.where(self.stuck_off, w.g_min_siemens, self.g_lt_siemens)
        self.shorted = np.zeros(shape, dtype=bool)
        self.g_fast_siemens = np.zeros(shape)  # the whole short-term part for the exp and stretched laws
        self.g_slow_siemens = np.zeros(shape)  # biexp only
        self.age_s = np.zeros(shape)  # time since the last pulse (stretched law)
        self.filaments: Any = None  # a ``drivers.sim.diffusive.DiffusiveFilaments``: relaxation by ruptures

    def part(self, index: int | tuple[int, ...]) -> DeviceArray:
        """The devices at ``index`` (e.g. one row of an array) as a ``DeviceArray`` of views into this one:
        evolving, reading or shorting the part does so to these devices here (and shares the rng)."""
        sub = object.__new__(DeviceArray)
        sub.card, sub._rng = self.card, self._rng
        for name in (*_PARAMETERS, *_STATE):
            setattr(sub, name, getattr(self, name)[index])
        sub.shape = sub.g_fast_siemens.shape
        sub.filaments = None if self.filaments is None else self.filaments.part(index)
        return sub

    # -- ground truth --------------------------------------------------------------------------
    def tau_s(self, bias_v: float) -> np.ndarray:
        """Each device's (fast) decay time constant in seconds at decay bias ``bias_v`` (V)."""
        b = self.card.bias
        return np.asarray(tau_at_bias(bias_v, self.tau_ref_s, b.bias_ref_v, b.bias_efold_v))

    def conductance_siemens(self) -> np.ndarray:
        """Total conductance G = g_lt + g_st (S) of every device; shorted devices read SHORTED_SIEMENS."""
        g = self.g_lt_siemens + self.g_fast_siemens + self.g_slow_siemens
        return np.where(self.shorted, SHORTED_SIEMENS, g)

    # -- evolution -----------------------------------------------------------------------------
    def hold(self, volts: np.ndarray | float, duration_s: float) -> None:
        """Apply ``volts`` (per device, broadcast) for ``duration_s``: pulse above threshold, decay below."""
        if duration_s <= 0:
            return
        if np.max(np.abs(volts)) < self.card.pulse.v_threshold_v:  # all below threshold: only decay
            self._decay(np.asarray(volts, dtype=float), duration_s, np.True_)
            return
        v = np.broadcast_to(np.asarray(volts, dtype=float), self.shape)
        pulsing = (np.abs(v) >= self.card.pulse.v_threshold_v) & ~(self.stuck_on | self.stuck_off)
        self._decay(np.where(pulsing, 0.0, v), duration_s, ~pulsing)
        if pulsing.any():
            self._pulse(v, duration_s, pulsing)

    def pulse_train(
        self,
        volts: np.ndarray,
        widths_s: np.ndarray,
        counts: np.ndarray,
        bias_v: np.ndarray,
        duration_s: float,
    ) -> None:
        """Device k gets ``counts[k]`` pulses of ``volts[k]`` (V) and ``widths_s[k]`` (s) and idles at
        ``bias_v[k]`` for the rest of ``duration_s``; devices with count 0, stuck, or below the pulse
        threshold idle at their bias throughout (a sub-threshold level held for a pulse's few
        microseconds is neglected, as a read's)."""
        v = np.broadcast_to(np.asarray(volts, dtype=float), self.shape)
        pulsing = (
            (counts > 0) & (np.abs(v) >= self.card.pulse.v_threshold_v) & ~(self.stuck_on | self.stuck_off)
        )
        for k in range(int(counts[pulsing].max()) if pulsing.any() else 0):
            self._pulse(v, np.asarray(widths_s, dtype=float), pulsing & (counts > k))
        idle = duration_s - np.where(pulsing, counts * widths_s, 0.0)
        self._decay(np.broadcast_to(np.asarray(bias_v, dtype=float), self.shape), idle, np.True_)

    def short(self, index: tuple[int, ...] = ()) -> None:
        """Fault: the device at ``index`` breaks down into a short (stuck on)."""
        self.shorted[index] = True

    def read_current_a(self, volts: np.ndarray | float) -> np.ndarray:
        """One noisy current reading (A) per device at ``volts`` (noise from ``read_noise_var_siemens2``)."""
        g = self.conductance_siemens()
        var = read_noise_var_siemens2(g, self.card.variability.read_noise_rel, self.card.window.g_max_siemens)
        noisy = g + np.sqrt(var) * self._rng.standard_normal(self.shape)
        return np.asarray(read_current_a(noisy, np.asarray(volts, dtype=float)))

    def read_train_a(self, volts: float, offsets_s: np.ndarray) -> np.ndarray:
        """Noisy currents (A), shape (len(offsets_s),) + shape, read at ``offsets_s`` (s from now, ascending)
        while every device is held at ``volts`` below the pulse threshold; the state ends at the last offset.

        The same decay law as ``hold``, evaluated for all offsets at once (a long read train costs one call).
        """
        if abs(volts) >= self.card.pulse.v_threshold_v:
            raise ValueError(f"read_train_a needs a read level below the pulse threshold, got {volts:g} V")
        dt = np.asarray(offsets_s, dtype=float).reshape((-1,) + (1,) * len(self.shape))
        fast, slow = self._decayed(np.full(self.shape, float(volts)), dt)
        g = np.where(self.shorted, SHORTED_SIEMENS, self.g_lt_siemens + fast + slow)
        var = read_noise_var_siemens2(g, self.card.variability.read_noise_rel, self.card.window.g_max_siemens)
        noisy = g + np.sqrt(var) * self._rng.standard_normal(g.shape)
        self._decay(
            np.full(self.shape, float(volts)), float(dt.reshape(-1)[-1]), np.ones(self.shape, dtype=bool)
        )
        return np.asarray(read_current_a(noisy, float(volts)))

    def _decayed(self, bias_v: np.ndarray, dt_s: Any) -> tuple[np.ndarray, np.ndarray]:
        """(fast, slow) short-term parts (S) after ``dt_s`` (scalar or array of offsets) at ``bias_v``."""
        d, b = self.card.decay, self.card.bias
        v = np.clip(bias_v, b.bias_min_v, b.bias_max_v)
        tau = tau_at_bias(v, self.tau_ref_s, b.bias_ref_v, b.bias_efold_v)
        if self.filaments is not None:  # diffusive filaments: plateaus and ruptures
            fast = self.filaments.conductance_siemens(self.age_s + dt_s)
            return fast, self._like(self.g_slow_siemens, fast)
        if d.law == "exp":
            fast = decay_exp(self.g_fast_siemens, dt_s, tau)
            return fast, self._like(self.g_slow_siemens, fast)
        if d.law == "biexp":
            tau_slow = tau * (d.tau_slow_s / d.tau_s)
            return decay_biexp(self.g_fast_siemens, self.g_slow_siemens, dt_s, tau, tau_slow)
        fast = decay_stretched(self.g_fast_siemens, self.age_s, dt_s, tau, d.stretch_beta)
        return fast, self._like(self.g_slow_siemens, fast)

    @staticmethod
    def _like(part: np.ndarray, other: np.ndarray) -> np.ndarray:
        """``part`` broadcast to the shape of ``other`` (itself when the shapes already agree)."""
        return part if part.shape == np.shape(other) else np.broadcast_to(part, np.shape(other))

    def _decay(self, bias_v: np.ndarray, dt_s: float | np.ndarray, where: np.ndarray | np.bool_) -> None:
        fast, slow = self._decayed(bias_v, dt_s)
        np.copyto(self.g_fast_siemens, fast, where=where)
        np.copyto(self.g_slow_siemens, slow, where=where)
        np.add(self.age_s, dt_s, out=self.age_s, where=where)

    def _pulse(self, amplitude_v: np.ndarray, width_s: float | np.ndarray, where: np.ndarray) -> None:
        kw: dict[str, Any] = dict(card_pulse_kwargs(self.card))
        kw["g_st_max_siemens"] = self.g_st_max_siemens
        kw["dg_up_ref_siemens"] = kw["dg_up_ref_siemens"] * self.pulse_scale
        kw["dg_down_ref_siemens"] = kw["dg_down_ref_siemens"] * self.pulse_scale
        g_st = self.g_fast_siemens + self.g_slow_siemens
        after = pulse_response(g_st, amplitude_v, width_s, **kw)
        c2c = 1 + self.card.variability.c2c_pulse_rel * self._rng.standard_normal(self.shape)
        change = (after - g_st) * c2c
        new = np.clip(g_st + change, 0.0, self.g_st_max_siemens)
        if self.card.decay.law == "biexp":
            a = self.card.decay.fast_fraction
            fast = np.maximum(self.g_fast_siemens + a * (new - g_st), 0.0)
            slow = np.maximum(self.g_slow_siemens + (1 - a) * (new - g_st), 0.0)
        else:
            fast, slow = new, self.g_slow_siemens
        np.copyto(self.g_fast_siemens, fast, where=where)
        np.copyto(self.g_slow_siemens, slow, where=where)
        np.copyto(self.age_s, 0.0, where=where)
        if self.filaments is not None:
            self.filaments.form(self.g_fast_siemens + self.g_slow_siemens, where)
