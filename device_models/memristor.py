"""Volatile-memristor physics as small pure functions; units are in every name.

Each function works elementwise on torch tensors, numpy arrays or Python floats (mixed scalars
broadcast) and returns the same kind of object it was given: per-device parameters are simply
arrays of the device shape. No state is kept here; callers pass it in and get it back.

Conventions: conductances in siemens (S), voltages in volts (V), times in seconds (s), energies
in joules (J). The short-term (volatile) part g_st of a device lives in [0, g_st_max_siemens] and
relaxes to 0; the long-term part g_lt is the programmed weight. See ``device_models.card`` for
what each parameter means and the shipped illustrative values.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from device_models.card import DeviceCard

X = TypeVar("X", Tensor, np.ndarray, float)


def _exp(x: Any) -> Any:
    return torch.exp(x) if isinstance(x, Tensor) else np.exp(x)


def _log(x: Any) -> Any:
    return torch.log(x) if isinstance(x, Tensor) else np.log(x)


def _out(x: Any, *like: Any) -> Any:
    """Python float out when every input was a plain number."""
    if all(isinstance(v, int | float) for v in like):
        return float(x)
    return x


# -- decay ---------------------------------------------------------------------------------------


def tau_at_bias(bias_v: X, tau_ref_s: Any, bias_ref_v: float, bias_efold_v: Any) -> X:
    """Decay time (s) at decay bias ``bias_v``: tau_ref_s * exp(-(bias_v - bias_ref_v) / bias_efold_v)."""
    return _out(tau_ref_s * _exp(-(bias_v - bias_ref_v) / bias_efold_v), bias_v, tau_ref_s)


def bias_for_tau(tau_s: X, tau_ref_s: Any, bias_ref_v: float, bias_efold_v: Any) -> X:
    """Decay bias (V) that gives decay time ``tau_s``: the inverse of ``tau_at_bias`` (unclipped)."""
    return _out(bias_ref_v - bias_efold_v * _log(tau_s / tau_ref_s), tau_s, tau_ref_s)


def decay_exp(g_st_siemens: X, dt_s: float, tau_s: Any) -> X:
    """Short-term conductance (S) after ``dt_s`` of single-exponential relaxation."""
    return _out(g_st_siemens * _exp(-dt_s / tau_s), g_st_siemens, tau_s)


def decay_biexp(
    g_fast_siemens: X, g_slow_siemens: X, dt_s: float, tau_fast_s: Any, tau_slow_s: Any
) -> tuple[X, X]:
    """Fast and slow short-term components (S) after ``dt_s``; each relaxes by its own exponential.

    A biexponential device is Markovian in these two components: a pulse adds ``fast_fraction`` of
    its effect to the fast one and the rest to the slow one.
    """
    return decay_exp(g_fast_siemens, dt_s, tau_fast_s), decay_exp(g_slow_siemens, dt_s, tau_slow_s)


def decay_stretched(g_st_siemens: X, age_s: Any, dt_s: float, tau_s: Any, beta: float) -> X:
    """Short-term conductance (S) after ``dt_s`` of stretched-exponential relaxation.

    The law g(t) = g(0) exp(-(t / tau)^beta) is not memoryless: the decay over dt depends on the
    time ``age_s`` since the potentiation, g(age + dt) = g(age) exp(-((age + dt)/tau)^beta + (age/tau)^beta).
    """
    exponent = ((age_s + dt_s) / tau_s) ** beta - (age_s / tau_s) ** beta
    return _out(g_st_siemens * _exp(-exponent), g_st_siemens, age_s, tau_s)


def card_relaxation(card: DeviceCard, t_s: X, bias_v: float | None = None) -> X:
    """phi(t) (1) of the card's nominal device held at ``bias_v`` (default: the card's reference bias),
    by the one decay law ``device_models.laws.relaxation`` (numpy).

    The bias scales every time constant of the law by the same factor tau(V) / tau(V_ref).
    """
    from device_models.laws import relaxation

    d, b = card.decay, card.bias
    scale = 1.0 if bias_v is None else math.exp(-(bias_v - b.bias_ref_v) / b.bias_efold_v)
    phi = relaxation(d.law, t_s, d.tau_s * scale, d.tau_slow_s * scale, d.fast_fraction, d.stretch_beta)
    return _out(phi, t_s)


# -- pulses --------------------------------------------------------------------------------------


def pulse_drive(
    amplitude_v: X,
    width_s: Any,
    *,
    v_ref_v: float,
    width_ref_s: float,
    v_threshold_v: float = 0.0,
    amp_exponent: float = 1.0,
    width_exponent: float = 1.0,
) -> X:
    """Dimensionless strength of a pulse: (|V| / v_ref)^a (w / w_ref)^b, 0 when |V| < v_threshold (1)."""
    mag = abs(amplitude_v)
    drive = (mag / v_ref_v) ** amp_exponent * (width_s / width_ref_s) ** width_exponent
    return _out(drive * (mag >= v_threshold_v), amplitude_v, width_s)


def pulse_response(
    g_st_siemens: X,
    amplitude_v: Any,
    width_s: Any,
    *,
    g_st_max_siemens: Any,
    dg_up_ref_siemens: Any,
    dg_down_ref_siemens: Any,
    v_ref_v: float,
    width_ref_s: float,
    v_threshold_v: float = 0.0,
    amp_exponent: float = 1.0,
    width_exponent: float = 1.0,
) -> X:
    """Short-term conductance (S) after one pulse of ``amplitude_v`` (sign = polarity) and ``width_s``.

    Soft bounds with exact saturation: a positive pulse moves g_st toward g_st_max,
    g_max - (g_max - g) exp(-drive dg_up / g_max); a negative one toward 0, g exp(-drive dg_down / g_max).
    From rest a small reference pulse potentiates by ~dg_up_ref; the effect shrinks near either bound.
    """
    drive = pulse_drive(
        amplitude_v,
        width_s,
        v_ref_v=v_ref_v,
        width_ref_s=width_ref_s,
        v_threshold_v=v_threshold_v,
        amp_exponent=amp_exponent,
        width_exponent=width_exponent,
    )
    up = g_st_max_siemens - (g_st_max_siemens - g_st_siemens) * _exp(
        -drive * dg_up_ref_siemens / g_st_max_siemens
    )
    down = g_st_siemens * _exp(-drive * dg_down_ref_siemens / g_st_max_siemens)
    if isinstance(amplitude_v, int | float):
        g = up if amplitude_v > 0 else down if amplitude_v < 0 else g_st_siemens + 0 * up
    else:
        where: Any = torch.where if isinstance(up, Tensor) else np.where
        g = where(amplitude_v > 0, up, where(amplitude_v < 0, down, g_st_siemens))
    return _out(g, g_st_siemens, amplitude_v, width_s, g_st_max_siemens, dg_up_ref_siemens)


# The inverses of the pulse law (width for a change, drive between two states) live in
# ``device_models.pulse_law.PulseLaw``, per device and both polarities.


def card_pulse_kwargs(card: DeviceCard) -> dict[str, float]:
    """The nominal keyword arguments of ``pulse_response`` taken from a card."""
    p = card.pulse
    return {
        "g_st_max_siemens": card.window.g_st_max_siemens,
        "dg_up_ref_siemens": p.dg_up_ref_siemens,
        "dg_down_ref_siemens": p.dg_down_ref_siemens,
        "v_ref_v": p.v_ref_v,
        "width_ref_s": p.width_ref_s,
        "v_threshold_v": p.v_threshold_v,
        "amp_exponent": p.amp_exponent,
        "width_exponent": p.width_exponent,
    }


# -- conductance window, noise, currents, energies ------------------------------------------------


def quantise_conductance(g_siemens: X, g_min_siemens: float, g_max_siemens: float, levels: int) -> X:
    """Nearest of ``levels`` equally spaced programmable conductances in [g_min, g_max] (S), clipped."""
    step = (g_max_siemens - g_min_siemens) / (levels - 1)
    k = (g_siemens - g_min_siemens) / step
    k = k.round().clamp(0, levels - 1) if isinstance(k, Tensor) else np.clip(np.round(k), 0, levels - 1)
    return _out(g_min_siemens + k * step, g_siemens)


def read_noise_var_siemens2(g_siemens: X, read_noise_rel: float, g_max_siemens: float) -> X:
    """Variance (S^2) of one read of a device of conductance g: read_noise_rel^2 * g_max * g.

    Proportional to g, as thermal (4 k T G B) and shot (2 q I B) current noise are; the relative
    noise sigma_G / G equals ``read_noise_rel`` at g = g_max and grows as 1/sqrt(g) below it.
    """
    return read_noise_rel**2 * g_max_siemens * g_siemens


def read_current_a(g_siemens: X, v_volts: Any) -> X:
    """Ohmic read current (A) I = G V."""
    return g_siemens * v_volts


def read_energy_j(g_siemens: X, v_volts: Any, read_time_s: float) -> X:
    """Energy (J) dissipated in one device during a read: V^2 G t."""
    return v_volts**2 * g_siemens * read_time_s


def pulse_energy_j(g_siemens: X, amplitude_v: Any, width_s: Any) -> X:
    """Energy (J) of one programming pulse into a device of conductance g: V^2 G w."""
    return amplitude_v**2 * g_siemens * width_s


def bias_energy_j(g_siemens: X, bias_v: Any, duration_s: float) -> X:
    """Energy (J) of holding a device at its decay bias for ``duration_s``: V^2 G t."""
    return bias_v**2 * g_siemens * duration_s
