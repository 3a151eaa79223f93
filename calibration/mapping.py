"""From a trained STPN to what a calibrated array realises of it, per synapse (``calibrate map``).

Retention: ``device_models.realisation`` is the one model: each synapse's pair of devices
(its one device-assignment rule) is biased for the trained lambda, within the card's bias window,
and retains what its law gives at that bias (``Realisation.bias_for_lambda``); the hardware lambda
of a synapse is its pair's mean over usable devices, NaN where a device is broken.

Plasticity: one Hebbian event gamma * h * z changes F by that many weight units, i.e. a device's
short-term conductance by dG = gamma h z g_per_weight siemens (``device_models.mapping``). The pulse
response calibrated per device, dG = dg_ref (|V|/V_ref)^a (w/w_ref)^b (small-signal, from rest: the
one ``device_models.pulse_law.PulseLaw``, which the backends' realisation reads per device too), says
which pulse (amplitude V, width w) writes a given dG, and which |dG| an allowed pulse range can write
at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from device_models.array import ArrayConfig, nonidealities
from device_models.bias_lines import DEFAULT_TOPOLOGY
from device_models.card import DeviceCard, load_card
from device_models.mapping import weight_scale_siemens
from device_models.pulse_law import PulseLaw
from device_models.record import CalibrationError, CalibrationRecord

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PulseWindow:
    """The pulses the hardware may use for Hebbian writes: amplitude (V) and width (s) ranges."""

    amplitude_min_v: float
    amplitude_max_v: float
    width_min_s: float
    width_max_s: float

    def __post_init__(self) -> None:
        if not (
            0 < self.amplitude_min_v <= self.amplitude_max_v and 0 < self.width_min_s <= self.width_max_s
        ):
            raise CalibrationError(f"pulse window needs 0 < min <= max for amplitude and width, got {self}")

    @classmethod
    def of_card(cls, card: DeviceCard, width_min_s: float = 1e-6, width_max_s: float = 1e-3) -> PulseWindow:
        """The amplitudes a card's devices can be written with: from its threshold to its largest safe
        amplitude (V), over the given widths (s)."""
        return cls(card.pulse.v_threshold_v, card.pulse.v_max_v, width_min_s, width_max_s)

    def check_for(self, card: DeviceCard) -> None:
        """One clear error when the amplitudes leave what ``card`` allows: above its largest safe
        amplitude (unsafe), or below its write threshold (such a pulse writes nothing)."""
        lo, hi = self.amplitude_min_v, self.amplitude_max_v
        v_max, v_threshold = card.pulse.v_max_v, card.pulse.v_threshold_v
        if hi > v_max:
            raise CalibrationError(
                f"pulse amplitude {hi:g} V exceeds the card's largest safe amplitude {v_max:g} V"
            )
        if lo < v_threshold:
            raise CalibrationError(
                f"pulse amplitude {lo:g} V is below the card's write threshold {v_threshold:g} V:"
                " such a pulse writes nothing (amplitudes must span threshold..v_max)"
            )


def _pulse_law(record: CalibrationRecord) -> PulseLaw:
    """The record's per-device pulse law (``device_models.pulse_law.PulseLaw``, (D,)), one clear error
    when the record has none."""
    if record.reference_pulse is None:
        raise CalibrationError("the calibration record has no pulse response (reference_pulse is missing)")
    return PulseLaw.from_record(record)


def pulse_width_for_update(
    record: CalibrationRecord, dg_siemens: Array, amplitude_v: float, polarity: int = 1
) -> Array:
    """Pulse width (s) per device writing |dG| = ``dg_siemens`` at ``amplitude_v`` (V), from the record's
    pulse response (potentiation for polarity +1, depression for -1): ``PulseLaw.width_for_dg``. NaN
    where the device has none."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(_pulse_law(record).width_for_dg(dg_siemens, amplitude_v, 1 if polarity > 0 else -1))


def update_range(record: CalibrationRecord, window: PulseWindow) -> tuple[Array, Array]:
    """(smallest, largest) |dG| (S) per device that a pulse inside ``window`` writes in BOTH polarities
    (a Hebbian update h z can have either sign): the weaker polarity bounds the range."""
    law = _pulse_law(record)
    v_lo, v_hi, w_lo, w_hi = (
        window.amplitude_min_v,
        window.amplitude_max_v,
        window.width_min_s,
        window.width_max_s,
    )
    low = np.maximum(law.dg(v_lo, w_lo, 1), law.dg(v_lo, w_lo, -1))
    high = np.minimum(law.dg(v_hi, w_hi, 1), law.dg(v_hi, w_hi, -1))
    return low, high


@dataclass
class StpnMapping:
    """Trained vs hardware parameters of one STPN layer on a calibrated array, each (H, K); the
    devices' ``device_index`` and ``decay_bias_v`` are (2, H, K), [G+, G-]."""

    lam_trained: Array
    lam_hardware: Array
    gamma_trained: Array
    gamma_hardware: Array
    gamma_in_range: NDArray[np.bool_]
    device_index: NDArray[np.int64]
    decay_bias_v: Array

    def summary(self) -> dict[str, float]:
        """Headline numbers: lambda and gamma errors over all synapses on working devices."""
        good = np.isfinite(self.lam_hardware)
        dl = np.abs(self.lam_hardware - self.lam_trained)[good]
        with np.errstate(divide="ignore", invalid="ignore"):
            dg_rel = np.abs(self.gamma_hardware / self.gamma_trained - 1)[good & (self.gamma_trained != 0)]
        gamma_known = bool(np.isfinite(self.gamma_hardware).any())  # False: no pulse response measured
        return {
            "synapses": float(self.lam_trained.size),
            "broken_device_fraction": float(1 - good.mean()),
            "lambda_abs_err_median": float(np.median(dl)),
            "lambda_abs_err_p95": float(np.percentile(dl, 95)),
            "lambda_within_0.05_fraction": float(np.mean(dl <= 0.05)),
            "gamma_in_range_fraction": float(self.gamma_in_range[good].mean()) if gamma_known else np.nan,
            "gamma_rel_err_median": (float(np.median(dg_rel)) if dg_rel.size else 0.0)
            if gamma_known
            else np.nan,
        }


def map_trained(
    lam_trained: Array,
    gamma_trained: Array,
    record: CalibrationRecord,
    dt_s: float,
    g_per_weight: float,
    window: PulseWindow,
    seed: int = 0,
    card: DeviceCard | None = None,
    bias: str = DEFAULT_TOPOLOGY,
) -> StpnMapping:
    """Place trained (H, K) lambda and gamma (weight units per unit h z) on the calibrated array.

    The hardware lambda is what the realisation achieves for the trained one at step dt_s (s) under
    the ``bias`` topology (``device_models.bias_lines``: line voltages by default, "device" for a bias
    per device) inside ``card``'s bias window (default card if None); the hardware gamma is
    the trained one clipped to the |dG| range the pulse window (inside the card's threshold..v_max)
    writes on both devices of the pair,
    converted with g_per_weight (S per weight unit); NaN (and never in range) when the record has no
    pulse response (decays only, e.g. imported traces).
    """
    lam_t = np.asarray(lam_trained, dtype=np.float64)
    gam_t = np.asarray(gamma_trained, dtype=np.float64)
    if lam_t.ndim != 2 or lam_t.shape != gam_t.shape:
        raise CalibrationError(
            f"lambda and gamma must be (H, K) of one shape, got {lam_t.shape} and {gam_t.shape}"
        )
    if not g_per_weight > 0:
        raise CalibrationError(f"g_per_weight must be positive (S per weight unit), got {g_per_weight}")
    card = load_card(card)
    window.check_for(card)
    shape = (lam_t.shape[0], lam_t.shape[1])
    config = ArrayConfig.build(
        card, record, dt_s=dt_s, seed=seed, bias=bias, nonidealities=nonidealities(stuck=False)
    )
    real = config.realise(shape)  # the array the backends build from this record (no drawn stuck devices)
    bias_v, achieved = real.bias_for_lambda(lam_t)
    broken = ~real.usable.all(0)
    lam_hw = np.where(broken, np.nan, real.synapse_retention(achieved))
    idx = real.device_index
    if record.reference_pulse is None:  # decays only (e.g. imported traces): no gamma on the array
        nan = np.full(lam_t.shape, np.nan)
        return StpnMapping(lam_t, lam_hw, gam_t, nan, np.zeros(lam_t.shape, dtype=bool), idx, bias_v)
    low, high = update_range(record, window)
    g_low = np.maximum(low[idx[0]], low[idx[1]]) / g_per_weight
    g_high = np.minimum(high[idx[0]], high[idx[1]]) / g_per_weight
    mag = np.abs(gam_t)
    in_range = (mag >= g_low) & (mag <= g_high)
    gam_hw = np.sign(gam_t) * np.clip(mag, g_low, g_high)
    return StpnMapping(lam_t, lam_hw, gam_t, gam_hw, in_range, idx, bias_v)


def map_stpn(
    layer: Any,
    record: CalibrationRecord,
    dt_s: float,
    window: PulseWindow,
    g_per_weight: float | None = None,
    seed: int = 0,
    card: DeviceCard | None = None,
    bias: str = DEFAULT_TOPOLOGY,
) -> StpnMapping:
    """``map_trained`` for a trained STPN layer: anything with ``weight``, ``weight_lambda`` and
    ``weight_gamma`` tensors, e.g. ``hwloop.stpn.STPN`` (calibration does not import hwloop).

    Without ``g_per_weight`` (S per weight unit) the layer's largest |W| spans the record's median
    long-term window (``device_models.mapping``)."""
    if g_per_weight is None:
        g_min = np.nanmedian(record.array("g_min_siemens"))
        g_max = np.nanmedian(record.array("g_max_siemens"))
        if not (np.isfinite(g_min) and np.isfinite(g_max)):
            raise CalibrationError("the record has no conductance window: give g_per_weight explicitly")
        g_per_weight = weight_scale_siemens(
            float(layer.weight.detach().abs().max()), float(g_min), float(g_max)
        )
    return map_trained(
        layer.weight_lambda.detach().cpu().double().numpy(),
        layer.weight_gamma.detach().cpu().double().numpy(),
        record,
        dt_s,
        g_per_weight,
        window,
        seed,
        card,
        bias,
    )
