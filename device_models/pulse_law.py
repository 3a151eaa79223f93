"""The pulse-width law of a volatile device: forward (drive -> dG) and inverse (dG -> width), both polarities.

THE one place a write becomes a pulse. A pulse of amplitude V (sign = polarity) and width w drives a
device by the dimensionless

    drive = (|V| / v_ref)^a (w / w_ref)^b            (0 when |V| < v_threshold)

and moves its volatile conductance g_st in [0, g_st_max] (soft bounds, ``device_models.memristor``):

    V > 0:  g_st -> g_st_max - (g_st_max - g_st) exp(-drive dg_up / g_st_max)
    V < 0:  g_st -> g_st exp(-drive dg_down / g_st_max)

From rest a small pulse changes g_st by the small-signal dG = dg_up drive (dg_down drive for a
depression from saturation). ``PulseLaw`` holds the parameters per device (dg_up, dg_down, a, b,
g_st_max: arrays of any device shape, or scalars; v_ref, w_ref, v_threshold: one per array) and
answers both directions of every form the project uses: the small-signal width of a write
(``width_for_dg``), the soft-bound drive between two states (``up_drive`` / ``down_drive``) and its
response (``respond``), the width or amplitude of a drive. Built from a card (``from_card``, the chip's
d2d factors optional) or from a calibration record (``from_record``: each device's own exponents and
depression gain). Elementwise on numpy arrays and floats; ``drive``, ``dg`` and ``width_for_dg`` of a
law of scalars also take torch tensors (the emulated backend's per-step energy).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from device_models.card import DeviceCard
from device_models.errors import HwloopError
from device_models.record import CalibrationRecord

Array = NDArray[np.float64]


def _exp(x: Any) -> Any:
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.exp(x)
    return np.exp(x)


@dataclass(frozen=True)
class PulseLaw:
    """Per-device pulse response (module docstring); per-device fields broadcast against each other.

    dg_up_siemens: potentiation of one reference pulse from rest (S). dg_down_siemens: depression rate
    of one reference pulse at saturation (S, > 0). amp_exponent a, width_exponent b (1).
    g_st_max_siemens: volatile window (S). v_ref_v, width_ref_s: the reference pulse (V, s).
    v_threshold_v: no effect below this |V| (V).
    """

    dg_up_siemens: Any
    dg_down_siemens: Any
    amp_exponent: Any
    width_exponent: Any
    g_st_max_siemens: Any
    v_ref_v: float
    width_ref_s: float
    v_threshold_v: float = 0.0

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_card(cls, card: DeviceCard, pulse: Any = 1.0, window: Any = 1.0) -> PulseLaw:
        """The card's nominal law, its pulse response scaled by the chip's factor ``pulse`` and its window
        by ``window`` (``device_models.chip.draw_chip``; 1 for the nominal device)."""
        p = card.pulse
        return cls(
            dg_up_siemens=p.dg_up_ref_siemens * pulse,
            dg_down_siemens=p.dg_down_ref_siemens * pulse,
            amp_exponent=p.amp_exponent,
            width_exponent=p.width_exponent,
            g_st_max_siemens=card.window.g_st_max_siemens * window,
            v_ref_v=p.v_ref_v,
            width_ref_s=p.width_ref_s,
            v_threshold_v=p.v_threshold_v,
        )

    @classmethod
    def from_record(cls, record: CalibrationRecord, card: DeviceCard | None = None) -> PulseLaw:
        """Each of the record's D devices' own law, (D,): its dg_up, |dg_down| and exponents at the
        record's reference pulse (NaN where a device has none). ``card`` gives what a record does not
        hold: the volatile window and the pulse threshold (without a card: NaN window, no threshold)."""
        ref = record.reference_pulse
        if ref is None:
            raise HwloopError("the calibration record has no pulse response (reference_pulse is missing)")
        n = record.n_devices
        return cls(
            dg_up_siemens=record.array("dg_up_siemens"),
            dg_down_siemens=np.abs(record.array("dg_down_siemens")),
            amp_exponent=record.array("amp_exponent"),
            width_exponent=record.array("width_exponent"),
            g_st_max_siemens=np.full(n, card.window.g_st_max_siemens if card is not None else np.nan),
            v_ref_v=float(ref.amplitude_v),
            width_ref_s=float(ref.width_s),
            v_threshold_v=card.pulse.v_threshold_v if card is not None else 0.0,
        )

    def _per_device(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _SCALARS}

    def at(self, index: Any) -> PulseLaw:
        """The law of the devices ``index`` selects (numpy fancy index into every per-device field)."""

        def pick(value: Any) -> Any:  # a scalar field is every device's value
            return value if np.ndim(value) == 0 else np.asarray(value)[index]

        return replace(self, **{k: pick(v) for k, v in self._per_device().items()})

    def on_grid(self, rows: Any, cols: Any, shape: tuple[int, int]) -> PulseLaw:
        """This law laid out on a device array of ``shape``: device d at (``rows[d]``, ``cols[d]``) (each of
        the law's device shape); positions no device takes are NaN."""
        out: dict[str, Any] = {}
        for name, value in self._per_device().items():
            grid = np.full(shape, np.nan)
            grid[rows, cols] = np.broadcast_to(np.asarray(value, dtype=np.float64), np.shape(rows))
            out[name] = grid
        return replace(self, **out)

    def filled(self, other: PulseLaw) -> PulseLaw:
        """This law where a device's parameters are known (finite, gains > 0), ``other``'s elsewhere
        (one mask per device over all its fields); reference pulse and threshold stay this law's. For a
        device with a different reference pulse, ``other``'s gains are moved onto this law's."""
        mine, theirs = self._per_device(), other._per_device()
        ok = np.isfinite(mine["dg_up_siemens"]) & (np.asarray(mine["dg_up_siemens"]) > 0)
        for name in ("dg_down_siemens", "amp_exponent", "width_exponent", "g_st_max_siemens"):
            ok = ok & np.isfinite(mine[name])
        ok = ok & (np.asarray(mine["dg_down_siemens"]) > 0)
        # other's gains moved to this law's reference pulse (its drive there, threshold aside)
        scale = (self.v_ref_v / other.v_ref_v) ** theirs["amp_exponent"] * (
            self.width_ref_s / other.width_ref_s
        ) ** theirs["width_exponent"]
        moved = {**theirs, "dg_up_siemens": theirs["dg_up_siemens"] * scale}
        moved["dg_down_siemens"] = theirs["dg_down_siemens"] * scale
        out: dict[str, Any] = {
            k: np.where(ok, np.asarray(v, dtype=np.float64), moved[k]) for k, v in mine.items()
        }
        return replace(self, **out)

    # -- forward ---------------------------------------------------------------------------------
    def drive(self, amplitude_v: Any, width_s: Any) -> Any:
        """Dimensionless drive (|V| / v_ref)^a (w / w_ref)^b of a pulse; 0 below the threshold."""
        mag = abs(amplitude_v)
        strength = (mag / self.v_ref_v) ** self.amp_exponent * (
            width_s / self.width_ref_s
        ) ** self.width_exponent
        return strength * (mag >= self.v_threshold_v)

    def dg(self, amplitude_v: Any, width_s: Any, polarity: int = 1) -> Any:
        """Small-signal |dG| (S) of one pulse: dg_up drive (polarity +1, from rest) or dg_down drive (-1)."""
        return self._gain(polarity) * self.drive(amplitude_v, width_s)

    def respond(self, g_st_siemens: Any, drive: Any) -> Any:
        """Volatile conductance (S) after a pulse of signed ``drive`` (> 0 potentiates, < 0 depresses):
        the soft-bound law, exact to saturation."""
        g_max = self.g_st_max_siemens
        up = g_max - (g_max - g_st_siemens) * _exp(-np.maximum(drive, 0) * self.dg_up_siemens / g_max)
        down = g_st_siemens * _exp(np.minimum(drive, 0) * self.dg_down_siemens / g_max)
        return np.where(drive > 0, up, np.where(drive < 0, down, g_st_siemens))

    def fraction_left(self, drive: Any) -> Any:
        """Fraction (1) of its volatile conductance a depression pulse of ``drive`` >= 0 leaves."""
        return _exp(-drive * self.dg_down_siemens / self.g_st_max_siemens)

    # -- inverse ---------------------------------------------------------------------------------
    def up_drive(self, room_left: Any) -> Any:
        """Drive of the potentiation that leaves ``room_left`` in (0, 1] of the room g_st_max - g_st
        (the exact inverse of ``respond`` for drive > 0)."""
        return -np.log(room_left) * self.g_st_max_siemens / self.dg_up_siemens

    def down_drive(self, fraction_left: Any) -> Any:
        """Drive (> 0) of the depression that leaves ``fraction_left`` in (0, 1] of g_st (the exact
        inverse of ``respond`` for drive < 0, and of ``fraction_left``)."""
        return -np.log(fraction_left) * self.g_st_max_siemens / self.dg_down_siemens

    def width_for_drive(self, drive: Any, amplitude_v: Any) -> Any:
        """Width (s) at which a pulse of ``amplitude_v`` gives ``drive``; inf below the threshold."""
        mag = abs(amplitude_v)
        width = self.width_ref_s * (drive / (mag / self.v_ref_v) ** self.amp_exponent) ** (
            1.0 / self.width_exponent
        )
        return np.where(mag >= self.v_threshold_v, width, np.inf)

    def amplitude_for_drive(self, drive: Any, width_s: Any) -> Any:
        """|Amplitude| (V) at which a pulse of ``width_s`` gives ``drive`` (threshold not applied)."""
        return self.v_ref_v * (drive / (width_s / self.width_ref_s) ** self.width_exponent) ** (
            1.0 / self.amp_exponent
        )

    def width_for_dg(self, dg_siemens: Any, amplitude_v: Any, polarity: int = 1) -> Any:
        """Small-signal width (s) of the pulse of ``amplitude_v`` that writes |dG| = ``dg_siemens``: the
        inverse of ``dg``; inf below the threshold. numpy, or torch for a law of scalars."""
        mag = abs(amplitude_v)
        per_ref = self._gain(polarity) * (mag / self.v_ref_v) ** self.amp_exponent
        width = self.width_ref_s * (abs(dg_siemens) / per_ref) ** (1.0 / self.width_exponent)
        if type(width).__module__.startswith("torch"):
            return width if mag >= self.v_threshold_v else width * np.inf
        return np.where(np.asarray(mag) >= self.v_threshold_v, width, np.inf)

    def _gain(self, polarity: int) -> Any:
        if polarity not in (1, -1):
            raise HwloopError(f"pulse polarity must be +1 or -1, got {polarity!r}")
        return self.dg_up_siemens if polarity > 0 else self.dg_down_siemens


_SCALARS = ("v_ref_v", "width_ref_s", "v_threshold_v")
