"""The configuration of one emulated array, nested like aihwkit's RPUConfig: ``ArrayConfig``.

An ``ArrayConfig`` holds everything that decides what an array of volatile devices realises: the
device card (and, optionally, a calibration record of measured devices), the step time ``dt_s``, the
chip ``seed``, the non-idealities (``NonIdealities``, by named preset or switch by switch), the
normalisation, the periphery and the bias topology. ``realise(shape)`` makes, for an (H, K) layer,
the one ``device_models.realisation.Realisation`` every backend reads: the chip (one draw,
``device_models.chip``), the decay law and its inverse (``device_models.laws``), the pulse law
(``device_models.pulse_law``) and the per-device answers (biases, retention, pulses, energies).
``compile(weight, lam, gamma)`` programs a layer's trained synapses onto it: the ``ProgrammedArray``
(long-term conductances written with fault-aware programming, line voltages, each device's retention,
the effective gamma, the window, the digital synapses), which the emulated and aware backends run.

Every backend builds its config from its keyword options, so ``--backend-option key=value`` spellings
keep working: ``--backend-option nonidealities=ideal-devices`` picks a preset,
``--backend-option read_noise=false`` switches one non-ideality of it. ``NONIDEALITY_PRESETS``:

    default         every non-ideality on, fault-aware programming, energy counters
    ideal-devices   no read or write noise, no device spread, no stuck devices, no quantisation, no
                    window saturation, no fault-aware programming (the bias window still holds)
    no-noise        the default without read noise and cycle-to-cycle write noise
    no-faults       the default without stuck devices (and so nothing for fault-aware programming)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import Tensor

from device_models.bias_lines import DEFAULT_TOPOLOGY, BiasTopology, LineBias
from device_models.card import DeviceCard, load_card
from device_models.errors import HwloopError
from device_models.mapping import weight_scale_siemens, weights_to_pair
from device_models.programming import (
    VERIFY_SEED_OFFSET,
    FaultReport,
    program_and_verify,
    written_conductance,
)
from device_models.pulse_law import PulseLaw
from device_models.realisation import DEFAULT_DT_S, Realisation
from device_models.record import CalibrationRecord

Normalisation = Literal["exact", "native"]
REFRESH_ERASE_LEFT = 1e-3  # fraction of its short-term conductance a refresh's erase pulse leaves
PeripheryName = Literal["none", "aihwkit", "both"]


class ArrayConfigError(HwloopError):
    """An array configuration with an unknown preset, option or value."""


class NonIdealities(BaseModel):
    """Which non-idealities the emulated array has; each switch is on (True) by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    read_noise: bool = Field(default=True, description="read noise, variance proportional to each device's G")
    d2d: bool = Field(
        default=True, description="device-to-device spread of the chip (decay, window, pulse, writes)"
    )
    c2c: bool = Field(default=True, description="cycle-to-cycle noise of every write pulse")
    stuck: bool = Field(default=True, description="stuck-on / stuck-off devices of the chip")
    quantise: bool = Field(default=True, description="long-term conductances on the card's levels")
    saturation: bool = Field(
        default=True, description="the volatile window g_st_max bounds the short-term state"
    )
    bias_limits: bool = Field(default=True, description="decay biases clipped to the card's window")
    fault_aware: bool = Field(
        default=True, description="program-and-verify finds stuck devices and compensates"
    )
    energy_counters: bool = Field(
        default=True, description="count read, programming, bias and refresh energy"
    )


NONIDEALITY_PRESETS: dict[str, NonIdealities] = {
    "default": NonIdealities(),
    "ideal-devices": NonIdealities(
        read_noise=False,
        d2d=False,
        c2c=False,
        stuck=False,
        quantise=False,
        saturation=False,
        fault_aware=False,
    ),
    "no-noise": NonIdealities(read_noise=False, c2c=False),
    "no-faults": NonIdealities(stuck=False),
}


def nonidealities(
    preset: str | NonIdealities | dict[str, Any] | None = None, **switches: Any
) -> NonIdealities:
    """The non-idealities of preset ``preset`` (a name of ``NONIDEALITY_PRESETS``, a model or a dict of
    switches; None: "default") with ``switches`` that are not None set on top; one clear error for an
    unknown preset or switch."""
    if preset is None:
        base = NONIDEALITY_PRESETS["default"]
    elif isinstance(preset, NonIdealities):
        base = preset
    elif isinstance(preset, dict):
        base = _validated(NonIdealities, preset, "nonidealities")
    elif preset in NONIDEALITY_PRESETS:
        base = NONIDEALITY_PRESETS[preset]
    else:
        raise ArrayConfigError(
            f"nonidealities={preset!r} is no preset; choose one of {', '.join(NONIDEALITY_PRESETS)}"
        )
    given = {key: value for key, value in switches.items() if value is not None}
    if not given:
        return base
    return _validated(NonIdealities, {**base.model_dump(), **given}, "nonidealities")


class ArrayConfig(BaseModel):
    """Everything that decides what an emulated array realises (module docstring). Build with
    ``ArrayConfig.build`` (loads the card and record, one clear error for a bad value)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    card: DeviceCard
    calibration: CalibrationRecord | None = None
    dt_s: float = Field(default=DEFAULT_DT_S, gt=0, allow_inf_nan=False, description="seconds per STPN step")
    seed: int = Field(default=0, description="draws the chip and seeds the noise")
    nonidealities: NonIdealities = NonIdealities()
    normalisation: Normalisation = "exact"
    max_write_gain: float = Field(default=16.0, ge=1, description="exact mode: largest write gain 1/s")
    periphery: PeripheryName = "none"
    bias: BiasTopology = DEFAULT_TOPOLOGY

    @model_validator(mode="after")
    def _unclipped_bias_is_per_device(self) -> ArrayConfig:
        # lines and rows are fitted inside the window; only a source per device can go outside it
        if not self.nonidealities.bias_limits and self.bias != "device":
            raise ArrayConfigError(
                f"bias_limits=False needs bias='device' (unclipped per-device biases), not {self.bias!r}"
            )
        return self

    @classmethod
    def build(
        cls,
        card: str | Path | DeviceCard | None = None,
        calibration: str | Path | CalibrationRecord | None = None,
        **options: Any,
    ) -> ArrayConfig:
        """The config of ``card`` (path, card or None: the shipped card), ``calibration`` (record path,
        record or None) and ``options`` (the fields above; ``nonidealities`` a preset name, model or
        dict). One clear error line for anything invalid."""
        record = calibration
        if isinstance(calibration, str | Path):
            record = CalibrationRecord.load(calibration)
        if "nonidealities" in options and not isinstance(options["nonidealities"], NonIdealities):
            options["nonidealities"] = nonidealities(options["nonidealities"])
        return _validated(cls, {"card": load_card(card), "calibration": record, **options}, "array config")

    def realise(self, shape: tuple[int, int], seed: int | None = None) -> Realisation:
        """The array this config realises for an (H, K) layer (chip ``seed``, default the config's):
        ``Realisation.from_record`` with a calibration record, else ``Realisation.from_card``."""
        n, chip = self.nonidealities, self.seed if seed is None else int(seed)
        if self.calibration is not None:
            return Realisation.from_record(
                self.calibration, self.dt_s, chip, shape, card=self.card, stuck=n.stuck, bias=self.bias
            )
        return Realisation.from_card(
            self.card, self.dt_s, chip, shape, d2d=n.d2d, stuck=n.stuck, bias=self.bias
        )

    def compile(self, weight: Tensor, lam: Tensor, gamma: Tensor, noise: torch.Generator) -> ProgrammedArray:
        """Trained (H, K) synapses programmed onto this array (``compile_array``); ``noise`` draws the
        programming error."""
        return compile_array(self, weight, lam, gamma, noise)


@dataclass(frozen=True)
class EnergyCoefficients:
    """Per-device energy coefficients of a programmed array (torch, float64; computed once by
    ``compile_array``; the emulated backend's counters and its fused step only read them).

    Decay bias (power V^2 G over dt_s, G the device's conductance): bias_base_w (2, H, K) W, each
    device's power at its base conductance (exact: g_min, the short-term pair at rest; native: its
    long-term G); bias_abs (H, K) V^2 S per weight unit of |F| (the pair's mean V^2 times
    g_per_weight) and bias_sgn (H, K) the same per unit of F (G+ and G- at different biases), or None
    where it is 0 everywhere: the short-term part of a row's power is sum_j bias_abs |F| + bias_sgn F.
    Reads: g_lt_sum (H, K) S, both long-term devices of a synapse the array reads (0 where the
    periphery computes W z). Writes (small-signal, width_for_dg linear in dG for width exponent 1):
    width_per_siemens (s per S of change at ``read.write_v``), g_up / g_down (H, K) S the conductance
    of the device a positive / negative change hits, coef_abs (H, K) |gamma_pulsed| (g_up + g_down) / 2
    g_per_weight and coef_sgn (H, K) gamma_pulsed (g_up - g_down) / 2 g_per_weight (or None), so that
    sum_ij |dF_ij| g_written,ij = |h| . (|z| @ coef_abs^T) + h . (z @ coef_sgn^T) for dF = gamma h z.
    A device whose known law is its own (a record's) takes its own width: coef_abs / coef_sgn weigh
    each device by its small-signal width over the nominal one. Refreshes: erase_width_s, the width of
    the one depression pulse at -write_v that leaves ``REFRESH_ERASE_LEFT`` of a device's short-term
    conductance. nominal_pulse_law: the card's pulse law these widths come from (``PulseLaw.from_card``).
    """

    bias_base_w: Tensor
    bias_abs: Tensor
    bias_sgn: Tensor | None
    g_lt_sum: Tensor
    g_up: Tensor
    g_down: Tensor
    coef_abs: Tensor
    coef_sgn: Tensor | None
    width_per_siemens: float
    erase_width_s: float
    nominal_pulse_law: PulseLaw


def energy_coefficients(
    config: ArrayConfig,
    g_per_weight: float,
    g_lt_siemens: Tensor,
    decay_bias_v: Tensor,
    gamma_pulsed: Tensor,
    read: Tensor,
    known_law: PulseLaw,
) -> EnergyCoefficients:
    """The ``EnergyCoefficients`` of an array programmed with long-term conductances ``g_lt_siemens``
    (2, H, K) S, decay biases ``decay_bias_v`` (2, H, K) V and pulsed gamma ``gamma_pulsed`` (H, K);
    ``read`` (H, K) bool: synapses whose long-term devices the array reads; ``known_law``: the pulse
    law writes are computed from (``Realisation.known_pulse_law``: the card's nominal device, or each
    recorded device's own law)."""
    c, gpw = config.card, g_per_weight
    g_min = c.window.g_min_siemens
    exact = config.normalisation == "exact"
    g_base = torch.full_like(g_lt_siemens, g_min) if exact else g_lt_siemens
    v2 = decay_bias_v**2
    sgn = (v2[0] - v2[1]) / 2 * gpw  # G+ and G- at different biases (calibrated devices)
    # small-signal programming energy from the nominal pulse law (``device_models.pulse_law``): a
    # write of dG takes width_for_dg(dG) = w_ref (dG / dg(V, w_ref))^(1/b), linear for b = 1
    law = PulseLaw.from_card(c)
    erase_drive = law.down_drive(REFRESH_ERASE_LEFT)
    # the device a write of positive F hits is G+ (of the F pair in exact mode), negative G-
    g_up, g_down = g_base.unbind(0)
    # conductance times the device's write width over the nominal width (exactly 1 on a card's chip)
    v, w = c.read.write_v, law.width_ref_s
    g_wide = g_base * torch.from_numpy(np.asarray(law.dg(v, w) / known_law.dg(v, w), dtype=np.float64))
    half = (g_wide[0] - g_wide[1]) / 2
    return EnergyCoefficients(
        bias_base_w=v2 * g_base,
        bias_abs=(v2[0] + v2[1]) / 2 * gpw,
        bias_sgn=sgn if bool(sgn.abs().max() > 0) else None,
        g_lt_sum=g_lt_siemens.sum(0) * read,
        g_up=g_up,
        g_down=g_down,
        coef_abs=gamma_pulsed.abs() * (g_wide[0] + g_wide[1]) / 2 * gpw,
        coef_sgn=gamma_pulsed * half * gpw if bool(half.abs().max() > 0) else None,
        width_per_siemens=law.width_ref_s / float(law.dg(c.read.write_v, law.width_ref_s)),
        erase_width_s=float(law.width_for_drive(erase_drive, -c.read.write_v)),
        nominal_pulse_law=law,
    )


@dataclass
class ProgrammedArray:
    """One layer's trained synapses compiled onto an array (``ArrayConfig.compile``); torch, float64.

    config / real: what was compiled and its chip (``Realisation``: decay law, pulse law, stuck
    devices). g_per_weight: S per weight unit. g_lt_siemens (2, H, K): long-term conductances of
    [G+, G-] as written (quantised, programming error, stuck). weight (H, K): the W the array and the
    periphery hold (weight units). decay_bias_v / retention (2, H, K): each device's bias (V, inside
    the window) and per-step retention (0 on stuck devices; the trained lambda on digital synapses).
    line_bias: the line voltages ("lines" / "rows"), else None. gamma (H, K): the effective plasticity
    (the pair's mean pulse response times the trained gamma; the trained gamma on digital synapses);
    gamma_pulsed (H, K): the trained gamma on analog synapses, 0 on digital ones (what pulses write).
    digital_w / digital_f (H, K): synapses whose W z / F the periphery computes (fault-aware
    programming). window: (lo (H, K), hi (H, K)) bounds of F in weight units, or None (no bound).
    energy: the per-device energy coefficients (``EnergyCoefficients``).
    """

    config: ArrayConfig
    real: Realisation
    g_per_weight: float
    g_lt_siemens: Tensor
    weight: Tensor
    decay_bias_v: Tensor
    retention: Tensor
    line_bias: LineBias | None
    gamma: Tensor
    gamma_pulsed: Tensor
    digital_w: Tensor
    digital_f: Tensor
    window: tuple[Tensor, Tensor] | None
    faults: FaultReport
    energy: EnergyCoefficients

    @property
    def pulse_law(self) -> PulseLaw:
        """The true devices' pulse law (``Realisation.pulse_law``)."""
        return self.real.pulse_law

    @property
    def dac_count(self) -> int:
        """Independent bias sources (line drivers) the array's topology needs."""
        return self.real.dac_count


def compile_array(
    config: ArrayConfig, weight: Tensor, lam: Tensor, gamma: Tensor, noise: torch.Generator
) -> ProgrammedArray:
    """Program trained (H, K) ``weight``, ``lam``, ``gamma`` onto the array ``config`` realises.

    W: mapped onto [G+, G-] (``device_models.mapping``), written with the config's non-idealities
    (``device_models.programming.written_conductance``, programming error drawn from ``noise``), then
    fault-aware programming (verify stream seed + ``VERIFY_SEED_OFFSET``). lambda: each device's decay
    bias and achieved retention (``Realisation.bias_for_lambda``, under the bias topology). gamma: the
    pair's mean pulse response (a write hits G+ or G- by its sign). Digital synapses keep the trained
    values. ``noise`` is the caller's generator: its draws continue in the caller's read noise.
    """
    n, card = config.nonidealities, config.card
    w = weight.detach().to(torch.float64)
    h, k = w.shape
    real = config.realise((h, k))
    stuck = (torch.from_numpy(real.stuck_on), torch.from_numpy(real.stuck_off))
    win = card.window

    def write(g_target: Tensor, generator: torch.Generator) -> Tensor:  # what the devices do with a write
        return written_conductance(g_target, card, generator, stuck, quantise=n.quantise, error=n.d2d)

    # long-term conductances: map, quantise, programming error, stuck devices
    w_max = float(w.abs().max()) or 1.0
    gpw = weight_scale_siemens(w_max, win.g_min_siemens, win.g_max_siemens)
    g_target = torch.stack(weights_to_pair(w, win.g_min_siemens, gpw))
    g_lt = write(g_target, noise)

    # retention: target lambda -> decay bias (known device, clipped) -> the true device's lambda
    b = card.bias
    lam64 = lam.detach().to(torch.float64)
    bias, retention_np = real.bias_for_lambda(lam64.numpy(), clip=n.bias_limits)
    retention = torch.from_numpy(retention_np)
    bias_clipped = torch.from_numpy(np.clip(bias, b.bias_min_v, b.bias_max_v))
    volatile = torch.from_numpy(real.usable)
    gain = torch.from_numpy(real.write_gain)
    gamma64 = gamma.detach().to(torch.float64)
    gamma_eff = gamma64 * (gain[0] + gain[1]) / 2  # a write hits G+ or G- by its sign: the pair's mean

    # fault-aware programming: verify, find stuck devices, compensate by the partner or digitally
    digital_w = digital_f = torch.zeros((h, k), dtype=torch.bool)
    faults = FaultReport(devices=2 * h * k)
    if n.fault_aware:
        verify = torch.Generator().manual_seed(config.seed + VERIFY_SEED_OFFSET)

        def respond(target: Tensor, which: Tensor) -> Tensor:
            return write(target, verify)

        g_lt, digital_w, digital_f, faults = program_and_verify(
            g_target, g_lt, w * gpw, card, respond, verify
        )
    W = torch.where(digital_w, w, (g_lt[0] - g_lt[1]) / gpw)  # periphery: W z itself

    retention = torch.where(digital_f, lam64, retention)  # digital F: the exact trained law
    volatile = volatile | digital_f
    gamma_eff = torch.where(digital_f, gamma64, gamma_eff)
    # per device, no source is spent on a digital synapse; lines bias every device on them
    decay_bias = torch.where(digital_f, 0.0, bias_clipped) if config.bias == "device" else bias_clipped

    # finite short-term window (and stuck devices that cannot hold any) in weight units
    window: tuple[Tensor, Tensor] | None = None
    if n.saturation or not bool(volatile.all()):  # stuck or broken devices hold no short-term part
        window_s = torch.from_numpy(real.g_st_max_siemens)
        cap = window_s if n.saturation else torch.full((2, h, k), math.inf, dtype=torch.float64)
        cap = torch.where(volatile, cap, 0.0) / gpw
        cap = torch.where(digital_f, math.inf, cap)
        window = (-cap[1], cap[0])
    gamma_pulsed = torch.where(digital_f, 0.0, gamma64)
    # a digital F has no bias and gamma_pulsed 0: neither biased nor pulsed already
    energy = energy_coefficients(
        config, gpw, g_lt, decay_bias, gamma_pulsed, read=~digital_w, known_law=real.known_pulse_law
    )
    return ProgrammedArray(
        config=config,
        real=real,
        g_per_weight=gpw,
        g_lt_siemens=g_lt,
        weight=W,
        decay_bias_v=decay_bias,
        retention=retention,
        line_bias=real.line_bias,
        gamma=gamma_eff,
        gamma_pulsed=gamma_pulsed,
        digital_w=digital_w,
        digital_f=digital_f,
        window=window,
        faults=faults,
        energy=energy,
    )


def _validated(model: Any, data: dict[str, Any], what: str) -> Any:
    """``model.model_validate(data)``, its first problem as one error line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or what
        value = err.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict) else ""
        raise ArrayConfigError(f"{what}: {where}: {err['msg']}{shown}") from None
