"""What an array of volatile memristors can realise: the one owner of lambda, bias, pulses and energy.

An STPN synapse (i, j) is a differential pair of devices [G+, G-]; every per-device array here is
(2, H, K). A ``Realisation`` is built from a device card (nominal device plus a seeded chip draw of
its spreads and stuck devices) or from a calibration record (each device's fitted law), and a time
step ``dt_s``. It answers, per device:

* ``lambda_range``: the per-step retention reachable inside the bias window;
* ``bias_for_lambda``: the decay bias that realises a target lambda and the lambda achieved, under the
  array's bias topology (``device_models.bias_lines``: line voltages by default, a source per device,
  row voltages only, or none);
* ``pulse_law`` / ``pulse_for_write``: the per-device pulse law (``device_models.pulse_law``) and the
  pulse (amplitude, width, count) that writes a target |dG|;
* ``read_energy_j`` / ``pulse_energy_j`` / ``bias_power_w``: what a read, a pulse, a held bias cost.

Decay model. A device relaxes by its law phi(t) (``device_models.laws``) with time scale tau1 at the
bias it was characterised at (``v_char``); a decay bias V scales every time constant of the law by
s(V) = exp(-(V - v_char) / efold) (``device_models.memristor.tau_at_bias``). Its per-step retention
is lambda(V) = L(dt / s(V)), where L is the law's per-step retention (``laws.step_retention``: exact
for "exp", the best per-step fit over ``horizon_steps`` steps otherwise). For non-exponential laws,
L is tabulated once per device shape on a log grid of dt / tau1 and interpolated (monotone) in
ln(-ln lambda); for "exp" everything is closed-form.

Known versus true. The controller computes biases from what it *knows* about a device: with a card,
only the nominal device (the chip's d2d spread is unknown to it, so the achieved lambda scatters);
with a record, each device's own fitted law (so the bias compensates each device, up to the bias
window). ``bias_for_lambda`` returns both the bias (from the known model) and the lambda the true
device then has.

Device assignment (the one rule, ``assign_devices``): a physical array is H rows by 2K columns, G+
of synapse (i, j) in column j, G- in column K + j; device (r, c) has row-major index r * 2K + c.
A record of exactly that shape is used as is (bad devices included: they count as broken); any
other record shape gives each of the 2HK devices a uniform draw, with replacement, from the record's
usable devices (numpy PCG64 seeded by ``seed``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from device_models.bias_lines import (
    DEFAULT_TOPOLOGY,
    BiasTopology,
    LineBias,
    check_topology,
    dac_count,
    fit_line_bias,
)
from device_models.card import DeviceCard, load_card
from device_models.chip import draw_chip
from device_models.errors import HwloopError
from device_models.laws import (
    DEFAULT_HORIZON_STEPS,
    exp_retention,
    exp_tau_s,
    log_step_time,
    retention_of_log_step_time,
    step_retention,
)
from device_models.memristor import (
    bias_energy_j,
    bias_for_tau,
    pulse_energy_j,
    read_energy_j,
    tau_at_bias,
)
from device_models.pulse_law import PulseLaw
from device_models.record import CalibrationRecord

Array = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_GRID_LN = np.linspace(-12.0, 8.0, 321)  # ln(dt / tau1) grid of the non-exponential tables
_BULK_QUANTILE = 0.1  # trainable range: reachable by at least 90% of the usable devices
DEFAULT_DT_S = 0.1  # s per STPN step when neither the user nor a checkpoint says (ART's step)
WIDTH_STEP_S = 10e-9  # default width resolution of a pulse generator (100 MHz clock), s
WIDTH_MAX_S = 1e-3  # default longest single pulse, s


class RealisationError(HwloopError):
    """A realisation was asked for something impossible (bad dt, shape, target or record)."""


@dataclass(frozen=True)
class _Shape:
    """A decay law up to its time scale: phi(t) = law(t / tau1) with tau2 / tau1, w1, beta fixed."""

    law: str
    tau2_rel: float = 1.0
    w1: float = 1.0
    beta: float = 1.0


@dataclass
class _Decay:
    """Per-device decay model, each (2, H, K): time scale at v_char, e-fold voltage, shape index."""

    tau1_s: Array
    efold_v: Array
    shape: NDArray[np.int64]


@dataclass(frozen=True)
class Pulses:
    """The pulses that realise a write, per device: amplitude (V), width (s), count, and |dG| (S)."""

    amplitude_v: Array
    width_s: Array
    count: NDArray[np.int64]
    dg_siemens: Array


def assign_devices(
    record_shape: tuple[int, int] | None, usable: BoolArray | None, shape: tuple[int, int], seed: int
) -> NDArray[np.int64]:
    """(2, H, K) row-major device index of G+ and G- of every synapse: THE device-assignment rule.

    ``record_shape`` None (a card: the array is drawn to measure) or equal to (H, 2K): G+ of (i, j) is
    device i * 2K + j, G- is i * 2K + K + j. Otherwise each device is a seeded uniform draw with
    replacement from the record's ``usable`` (D,) devices.
    """
    h, k = int(shape[0]), int(shape[1])
    if h < 1 or k < 1:
        raise RealisationError(f"array shape must be positive, got {shape}")
    if record_shape is None or tuple(record_shape) == (h, 2 * k):
        row = np.arange(h, dtype=np.int64)[:, None] * 2 * k
        col = np.arange(k, dtype=np.int64)[None, :]
        return np.stack([row + col, row + k + col])
    assert usable is not None
    good = np.flatnonzero(usable)
    if good.size == 0:
        raise RealisationError("the calibration record has no usable ('ok') device")
    rng = np.random.default_rng(seed)
    return good[rng.integers(0, good.size, size=(2, h, k))].astype(np.int64)


class Realisation:
    """What one (2, H, K) array of devices realises at time step ``dt_s``; see the module docstring.

    Build with ``from_card`` or ``from_record``. Public per-device arrays, each (2, H, K):
    ``device_index`` (int), ``stuck_on`` / ``stuck_off`` (bool: holds g_max / g_min, no volatile
    state; a broken record device counts as stuck off), ``g_st_max_siemens`` (volatile window, S),
    ``write_gain`` (1: the |dG| a write realises per |dG| asked, the true device's response over the
    known one's: a card's chip, each device's pulse factor, since the controller knows the nominal
    device; a record's devices, 1, since the controller inverts each device's own recorded law).
    ``pulse_law`` (``device_models.pulse_law.PulseLaw``, per device): the true devices' pulse response,
    forward and inverse, both polarities; ``known_pulse_law`` the one the controller computes pulses
    from (a card's nominal device, or each recorded device's own law).
    """

    def __init__(
        self,
        *,
        card: DeviceCard,
        dt_s: float,
        shape: tuple[int, int],
        shapes: list[_Shape],
        true: _Decay,
        known: _Decay,
        v_char: float,
        device_index: NDArray[np.int64],
        stuck_on: BoolArray,
        stuck_off: BoolArray,
        g_st_max_siemens: Array,
        write_gain: Array,
        pulse_law: PulseLaw,
        known_pulse_law: PulseLaw,
        horizon_steps: int = DEFAULT_HORIZON_STEPS,
        record: CalibrationRecord | None = None,
        bias: str = DEFAULT_TOPOLOGY,
    ) -> None:
        if not (isinstance(dt_s, int | float) and dt_s > 0 and math.isfinite(dt_s)):
            raise RealisationError(f"dt_s must be a positive number of seconds, got {dt_s}")
        self.card, self.record = card, record
        self.dt_s, self.shape, self.horizon_steps = float(dt_s), (int(shape[0]), int(shape[1])), horizon_steps
        self._shapes, self._true, self._known, self.v_char = shapes, true, known, float(v_char)
        self.device_index = device_index
        self.stuck_on, self.stuck_off = stuck_on, stuck_off
        self.g_st_max_siemens, self.write_gain = g_st_max_siemens, write_gain
        self.pulse_law, self.known_pulse_law = pulse_law, known_pulse_law
        self._tables = _ln_q_tables(tuple(shapes), horizon_steps)
        self.bias: BiasTopology = check_topology(bias)
        self.line_bias: LineBias | None = None  # set by bias_for_lambda for "lines" / "rows"

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_card(
        cls,
        card: str | DeviceCard | None,
        dt_s: float,
        seed: int = 0,
        shape: tuple[int, int] = (1, 1),
        *,
        d2d: bool = True,
        stuck: bool = True,
        bias: str = DEFAULT_TOPOLOGY,
    ) -> Realisation:
        """An (H, K) array of pairs drawn from ``card`` by ``seed`` (d2d spreads, stuck devices), its
        decay biases held by ``bias`` (``device_models.bias_lines``: "lines", "rows", "device", "none").

        The draw (torch PCG on the CPU, in this order: tau, window, pulse spreads (2, H, K) log-normal,
        then one uniform per device for stuck-on / stuck-off) is the emulated backend's chip.
        """
        c = load_card(card)
        draws = _chip_draws(c, seed, shape, d2d, stuck)
        shapes = [_card_shape(c)]
        ones = np.ones((2, *shape))
        nominal = _Decay(c.decay.tau_s * ones, c.bias.bias_efold_v * ones, np.zeros((2, *shape), np.int64))
        true = _Decay(nominal.tau1_s * draws["tau"], nominal.efold_v, nominal.shape)
        return cls(
            card=c,
            dt_s=dt_s,
            shape=shape,
            shapes=shapes,
            true=true,
            known=nominal,
            v_char=c.bias.bias_ref_v,
            device_index=assign_devices(None, None, shape, seed),
            stuck_on=draws["stuck_on"],
            stuck_off=draws["stuck_off"],
            g_st_max_siemens=c.window.g_st_max_siemens * draws["window"],
            write_gain=draws["pulse"],  # the known device is the nominal one
            pulse_law=PulseLaw.from_card(c, draws["pulse"], draws["window"]),
            known_pulse_law=PulseLaw.from_card(c),
            bias=bias,
        )

    @classmethod
    def from_record(
        cls,
        record: CalibrationRecord,
        dt_s: float,
        seed: int = 0,
        shape: tuple[int, int] = (1, 1),
        *,
        card: str | DeviceCard | None = None,
        stuck: bool = True,
        bias: str = DEFAULT_TOPOLOGY,
    ) -> Realisation:
        """An (H, K) array of pairs realised by the record's devices (``assign_devices``), biased by
        ``bias`` (as ``from_card``).

        Each device decays by its own fitted law at the record's characterisation bias
        (``decay_bias_v``; the card's reference bias if unknown), moved by the bias with its measured
        e-fold voltage (``bias_law``) or else the card's. The card gives what a record does not hold:
        the bias window, the volatile window, the pulse reference, and (``stuck``) the stuck-device
        fractions, drawn as for a card on top of the record's broken devices.
        """
        c = load_card(card)
        idx = assign_devices((record.shape[0], record.shape[1]), record.good(), shape, seed)
        draws = _chip_draws(c, seed, shape, False, stuck)
        good = record.good()[idx]
        laws = np.asarray(record.law, dtype=object)
        tau1 = record.array("tau1_s")
        efold = np.full(record.n_devices, c.bias.bias_efold_v)
        if record.bias_law is not None:
            measured = record.bias_law.array("efold_v")
            efold = np.where(np.isfinite(measured) & (measured != 0), measured, efold)
        shapes = [_Shape("exp")]
        shape_of = np.zeros(record.n_devices, np.int64)
        usable, tau2, w1, beta = (
            record.good(),
            record.array("tau2_s"),
            record.array("w1"),
            record.array("beta"),
        )

        def given(value: float) -> float:  # a parameter the law does not use is stored as null
            return float(value) if np.isfinite(value) else 1.0

        for d in np.unique(idx):
            if usable[d] and laws[d] != "exp":
                t1 = tau1[d]
                shapes.append(_Shape(str(laws[d]), given(tau2[d] / t1), given(w1[d]), given(beta[d])))
                shape_of[d] = len(shapes) - 1
        broken = ~good | ~np.isfinite(tau1[idx]) | ~(tau1[idx] > 0)
        decay = _Decay(
            np.where(broken, c.decay.tau_s, tau1[idx]), efold[idx], np.where(broken, 0, shape_of[idx])
        )
        v_char = c.bias.bias_ref_v if record.decay_bias_v is None else float(record.decay_bias_v)
        law = PulseLaw.from_card(c)  # a record without a pulse response: the card's nominal device
        if record.reference_pulse is not None:  # each device's own law, the card's where it has none
            law = PulseLaw.from_record(record, c).at(idx).filled(law)
        return cls(
            card=c,
            dt_s=dt_s,
            shape=shape,
            shapes=shapes,
            true=decay,
            known=decay,
            v_char=v_char,
            device_index=idx,
            stuck_on=draws["stuck_on"] & ~broken,
            stuck_off=draws["stuck_off"] | broken,
            g_st_max_siemens=c.window.g_st_max_siemens * np.ones((2, *shape)),
            write_gain=np.ones((2, *shape)),  # the controller writes by each device's own law
            pulse_law=law,
            known_pulse_law=law,
            horizon_steps=record.horizon_steps,
            record=record,
            bias=bias,
        )

    # -- decay -----------------------------------------------------------------------------------
    def synapse_retention(self, lam_pair: Array) -> Array:
        """One retention per synapse (H, K) from a pair's (2, H, K), for a substrate that holds F on one
        device (aihwkit): the mean of the usable devices of the pair, 0 if neither is."""
        ok = self.usable
        n = ok.sum(0)
        return np.where(n > 0, np.where(ok, lam_pair, 0.0).sum(0) / np.maximum(n, 1), 0.0)

    @property
    def tau1_s(self) -> Array:
        """(2, H, K) each true device's (fast) time constant at the characterisation bias ``v_char``, s."""
        return self._true.tau1_s

    @property
    def usable(self) -> BoolArray:
        """(2, H, K) devices that hold a volatile state (neither stuck nor broken)."""
        return ~(self.stuck_on | self.stuck_off)

    def _tau_at(self, decay: _Decay, bias_v: Array) -> Array:
        """Time scale tau1 (s) of each device held at ``bias_v`` (V): the bias law ``tau_at_bias``."""
        v = np.asarray(bias_v, dtype=np.float64)
        efold: Any = decay.efold_v  # per device; the law is elementwise
        return np.asarray(tau_at_bias(v, decay.tau1_s, self.v_char, efold))

    def _lambda_of(self, decay: _Decay, bias_v: Array) -> Array:
        """Per-step retention (1) of each device of ``decay`` held at ``bias_v`` (V)."""
        tau = self._tau_at(decay, bias_v)
        lam = step_retention("exp", self.dt_s, tau)[0]  # exact for "exp"; other shapes from their table
        lam = np.array(np.broadcast_to(lam, decay.shape.shape), dtype=np.float64)
        flat, tau_flat = lam.reshape(-1), np.broadcast_to(tau, lam.shape).reshape(-1)  # flat: a view
        for table, at in _shape_groups(decay.shape, self._tables):
            flat[at] = retention_of_log_step_time(
                np.interp(np.log(self.dt_s / tau_flat[at]), _GRID_LN, table)
            )
        return lam

    def _bias_of(self, decay: _Decay, lam: Array) -> Array:
        """Decay bias (V, unclipped) at which each device of ``decay`` retains ``lam`` in (0, 1) per step:
        the inverse of ``_lambda_of`` (for "exp", tau = -dt / ln lambda), then ``bias_for_tau``."""
        ln_y = np.array(np.broadcast_to(log_step_time(lam), decay.shape.shape), dtype=np.float64)  # "exp"
        flat = ln_y.reshape(-1)  # a view: the tables' shapes are written into ln_y
        for table, at in _shape_groups(decay.shape, self._tables):
            flat[at] = np.interp(flat[at], table, _GRID_LN)
        tau_needed = self.dt_s / np.exp(ln_y)
        efold: Any = decay.efold_v  # per device; the law is elementwise
        return np.asarray(bias_for_tau(tau_needed, decay.tau1_s, self.v_char, efold))

    def lambda_at_bias(self, bias_v: Array) -> Array:
        """(2, H, K) per-step retention (1) of each true device held at ``bias_v`` (V); 0 where stuck."""
        lam = self._lambda_of(self._true, np.broadcast_to(bias_v, (2, *self.shape)))
        return np.where(self.usable, lam, 0.0)

    def lambda_range(self) -> tuple[Array, Array]:
        """(lam_min, lam_max), each (2, H, K): the retention each device reaches under this topology.

        Inside the card's bias window for "lines", "rows" and "device" (each device alone can reach
        either end; which combinations lines can hold together is ``bias_for_lambda``'s fit); the
        retention at 0 V for "none". Stuck devices hold no volatile state: 0 for both."""
        ends = [self.lambda_at_bias(np.full((2, *self.shape), v)) for v in self._window_ends()]
        return np.minimum(*ends), np.maximum(*ends)

    def _window_ends(self) -> tuple[float, float]:
        """The decay biases (V) this topology can reach: the card's window, or 0 V alone for "none"."""
        b = self.card.bias
        return (0.0, 0.0) if self.bias == "none" else (b.bias_min_v, b.bias_max_v)

    @property
    def dac_count(self) -> int:
        """Independent bias sources this array's topology needs (``device_models.bias_lines.dac_count``)."""
        return dac_count(self.bias, self.shape)

    def trainable_lambda_range(self) -> tuple[float, float]:
        """(lo, hi): the lambda range a hardware-aware model should train in.

        The range the *known* devices reach inside the bias window: for a card, the nominal device's
        (the chip's d2d spread is unknown to the controller); for a record, the range at least 90% of
        the usable devices reach (lo = 90th percentile of the devices' lam_min, hi = 10th of lam_max).
        """
        ends = [self._lambda_of(self._known, np.full((2, *self.shape), v)) for v in self._window_ends()]
        lo, hi = np.minimum(*ends)[self.usable], np.maximum(*ends)[self.usable]
        if lo.size == 0:
            raise RealisationError("no usable device in the array")
        return float(np.quantile(lo, 1 - _BULK_QUANTILE)), float(np.quantile(hi, _BULK_QUANTILE))

    def bias_for_lambda(self, lam: Any, *, clip: bool = True) -> tuple[Array, Array]:
        """Target lambda (H, K) (or (2, H, K)) -> (bias_v (2, H, K), lam_achieved (2, H, K)).

        Each device's needed bias comes from the known device model, clipped to the card's bias
        window; targets outside (0, 1) are no device's retention and go to the nearest end of the
        window (lambda >= 1: the slowest decay, <= 0: the fastest). The topology then decides what
        the array holds: "device" that bias itself; "lines" / "rows" the line voltages that best meet
        every device's need in log-time (``device_models.bias_lines.fit_line_bias``, kept in
        ``line_bias`` with its residual); "none" 0 V everywhere. The achieved lambda is the true
        device's at the bias it gets (0 on stuck devices).

        ``clip=False`` (per-device topology only, for equivalence tests): the bias is not clipped,
        and non-physical targets pass through as achieved, with the reference bias.
        """
        target = np.broadcast_to(np.asarray(lam, dtype=np.float64), (2, *self.shape))
        physical = (target > 0) & (target < 1)
        b = self.card.bias
        safe = np.where(physical, target, 0.5)
        bias = self._bias_of(self._known, safe)
        slow_end = b.bias_min_v if self.card.bias.bias_efold_v > 0 else b.bias_max_v
        fast_end = b.bias_max_v + b.bias_min_v - slow_end
        if not clip:
            if self.bias != "device":
                raise RealisationError(
                    f"unclipped decay biases exist only per device (bias='device'), not bias={self.bias!r}"
                )
            bias = np.where(physical, bias, b.bias_ref_v)
            achieved = np.where(
                physical, self._lambda_of(self._true, np.where(physical, bias, self.v_char)), target
            )
            return bias, np.where(self.usable, achieved, 0.0)
        bias = np.where(physical, bias, np.where(target >= 1, slow_end, fast_end))
        bias = np.clip(bias, b.bias_min_v, b.bias_max_v)
        if self.bias == "none":
            bias = np.zeros_like(bias)
        elif self.bias in ("lines", "rows"):
            self.line_bias = fit_line_bias(
                bias, self._known.efold_v, np.ones_like(bias), (b.bias_min_v, b.bias_max_v), self.bias
            )
            bias = self.line_bias.device_bias_v()
        achieved = self._lambda_of(self._true, bias)
        return bias, np.where(self.usable, achieved, 0.0)

    def differentiable_retention(self, lam: torch.Tensor) -> torch.Tensor:
        """(2, H, K) retention of the true devices as a differentiable torch function of target lam (H, K).

        The torch twin of ``bias_for_lambda`` for hardware-aware training: each device's needed bias
        from the known model (closed form, exponential-law devices), clipped to the window, then what
        the topology holds: "lines" the unweighted least-squares line fit without the window
        constraint (row mean + column mean - grand mean of the (H, 2K) biases, then clipped), "rows"
        the row mean, "device" the bias itself; the true device's retention at that bias. It equals
        ``bias_for_lambda`` wherever the constrained fit is the unconstrained one (uniform e-fold
        voltages, no active window bound); trainers add the difference straight-through. Devices of a
        non-exponential law, and the "none" topology, give lam itself (straight-through only).
        """
        b = self.card.bias
        dtype = lam.dtype
        target = lam.expand(2, *self.shape).clamp(1e-12, 1 - 1e-12)

        def t(x: Array) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(dtype)

        if self.bias == "none":
            return target
        tau_needed = exp_tau_s(target, self.dt_s)
        bias = bias_for_tau(tau_needed, t(self._known.tau1_s), self.v_char, t(self._known.efold_v))
        bias = bias.clamp(b.bias_min_v, b.bias_max_v)
        if self.bias in ("lines", "rows"):
            rows = torch.cat([bias[0], bias[1]], dim=1)  # (H, 2K) as the array's lines see it
            held = rows.mean(1, keepdim=True)
            if self.bias == "lines":
                held = held + rows.mean(0, keepdim=True) - rows.mean()
            held = held.expand_as(rows).clamp(b.bias_min_v, b.bias_max_v)
            k = self.shape[1]
            bias = torch.stack([held[:, :k], held[:, k:]])
        tau = tau_at_bias(bias, t(self._true.tau1_s), self.v_char, t(self._true.efold_v))
        achieved = exp_retention(self.dt_s, tau)
        exp_law = torch.as_tensor(self._true.shape == 0) & torch.as_tensor(self._tables[0] is None)
        out = torch.where(exp_law, achieved, target)
        return torch.where(torch.as_tensor(self.usable), out, torch.zeros_like(out))

    # -- writes ----------------------------------------------------------------------------------
    def pulse_for_write(self, dg_siemens: Any) -> Pulses:
        """Pulses that raise each device's volatile conductance by |dg_siemens| (S), from rest.

        Amplitude: the card's write voltage (writes are width-modulated). Width: the known device's
        small-signal pulse law (``known_pulse_law.width_for_dg``) inverted, quantised to
        ``WIDTH_STEP_S`` and split into ``count`` equal pulses of at most ``WIDTH_MAX_S`` each. The
        achieved |dG| is the true device's (``pulse_law.dg``) for those pulses. dG = 0 -> count 0.
        """
        dg = np.broadcast_to(np.abs(np.asarray(dg_siemens, dtype=np.float64)), (2, *self.shape))
        amp = self.card.read.write_v
        width = self.known_pulse_law.width_for_dg(dg, amp)
        count = np.where(dg > 0, np.maximum(np.ceil(width / WIDTH_MAX_S), 1), 0).astype(np.int64)
        each = np.where(count > 0, np.round(width / np.maximum(count, 1) / WIDTH_STEP_S) * WIDTH_STEP_S, 0.0)
        achieved = count * self.pulse_law.dg(amp, each)
        return Pulses(np.where(count > 0, amp, 0.0), each, count, np.where(self.usable, achieved, 0.0))

    # -- energy ----------------------------------------------------------------------------------
    def read_energy_j(self, g_siemens: Any, v_volts: Any) -> Any:
        """Energy (J) of one read of devices of conductance g at read voltage v: V^2 G t_read."""
        return read_energy_j(g_siemens, v_volts, self.card.read.read_time_s)

    @staticmethod
    def pulse_energy_j(g_siemens: Any, amplitude_v: Any, width_s: Any) -> Any:
        """Energy (J) of one write pulse into a device of conductance g: V^2 G w."""
        return pulse_energy_j(g_siemens, amplitude_v, width_s)

    @staticmethod
    def bias_power_w(g_siemens: Any, bias_v: Any) -> Any:
        """Power (W) of holding a device of conductance g at its decay bias: V^2 G (x seconds = J)."""
        return bias_energy_j(g_siemens, bias_v, 1.0)


def _card_shape(card: DeviceCard) -> _Shape:
    d = card.decay
    if d.law == "biexp":
        return _Shape("biexp", d.tau_slow_s / d.tau_s, d.fast_fraction, 1.0)
    if d.law == "stretched":
        return _Shape("stretched", 1.0, 1.0, d.stretch_beta)
    return _Shape("exp")


def _shape_groups(shape_of: NDArray[np.int64], tables: tuple[Array | None, ...]) -> list[tuple[Array, Any]]:
    """(table, flat indices into ``shape_of``) for every tabulated shape present, so that each device is
    looked up once in its own shape's table (not every device in every table)."""
    tabulated = np.array([t is not None for t in tables])
    if not tabulated.any():
        return []
    flat = np.asarray(shape_of).reshape(-1)
    at = np.flatnonzero(tabulated[flat])
    codes = flat[at]
    order = np.argsort(codes, kind="stable")
    at, codes = at[order], codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], at.size]
    return [(tables[int(codes[a])], at[a:b]) for a, b in zip(starts, ends, strict=True)]  # type: ignore[misc]


@functools.lru_cache(maxsize=16)
def _ln_q_tables(shapes: tuple[_Shape, ...], horizon_steps: int) -> tuple[Array | None, ...]:
    """Per shape: ln(-ln lambda) of its per-step retention on the ``_GRID_LN`` grid of ln(dt / tau1),
    made non-decreasing (a relaxation's per-step retention falls with the step); None for "exp".
    One batched ``step_retention`` call per law. Cached: every chip drawn from one record has the same
    shapes, and the tables (seconds for a record's hundreds of stretched devices) do not depend on the
    draw. The tables are read-only."""
    tables: list[Array | None] = [None] * len(shapes)
    y = np.exp(_GRID_LN)
    for law in sorted({s.law for s in shapes} - {"exp"}):  # any non-exponential law of laws.py
        which = [i for i, s in enumerate(shapes) if s.law == law]
        if not which:
            continue
        par = np.array([[shapes[i].tau2_rel, shapes[i].w1, shapes[i].beta] for i in which])
        rep = np.repeat(par, y.size, axis=0)
        steps = np.tile(y, len(which))
        lam, _ = step_retention(
            law, steps, np.ones_like(steps), rep[:, 0], rep[:, 1], rep[:, 2], horizon_steps
        )
        ln_q = log_step_time(np.clip(lam, 1e-300, 1 - 1e-16)).reshape(len(which), y.size)
        for row, i in enumerate(which):
            table = np.maximum.accumulate(ln_q[row])
            table.setflags(write=False)
            tables[i] = table
    return tuple(tables)


def _chip_draws(
    card: DeviceCard, seed: int, shape: tuple[int, int], d2d: bool, stuck: bool
) -> dict[str, Any]:
    """The chip's d2d factors (tau, window, pulse) and stuck masks, each (2, H, K), from ``seed``: THE
    chip draw (``device_models.chip.draw_chip``), the same one the simulated lab's arrays use."""
    return draw_chip(card, seed, shape, d2d, stuck)
