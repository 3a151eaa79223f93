"""The configuration of one emulated array, nested like aihwkit's RPUConfig: ``ArrayConfig``.

An ``ArrayConfig`` holds everything that decides what an array of volatile devices realises: the
device card (and, optionally, a calibration record of measured devices), the step time ``dt_s``, the
chip ``seed``, the non-idealities (``NonIdealities``, by named preset or switch by switch), the
normalisation, the periphery and the bias topology. ``realise(shape)`` compiles it, for an (H, K)
layer, into the one ``device_models.realisation.Realisation`` every backend reads: the chip (one
draw, ``device_models.chip``), the decay law and its inverse (``device_models.laws``), the pulse law
(``device_models.pulse_law``) and the per-device outputs (biases, retention, windows, energies).

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

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device_models.bias_lines import DEFAULT_TOPOLOGY, BiasTopology
from device_models.card import DeviceCard, load_card
from device_models.errors import HwloopError
from device_models.realisation import DEFAULT_DT_S, Realisation
from device_models.record import CalibrationRecord

Normalisation = Literal["exact", "native"]
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
