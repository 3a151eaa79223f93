"""The device card: every number the device model uses, named with its unit, loaded from TOML or JSON.

A card describes one *type* of volatile memristor (nominal values plus spreads). The shipped card
``cards/srtio3_illustrative.toml`` carries ILLUSTRATIVE numbers for SrTiO3-type devices in the
non-filamentary low-conductance regime (Weilenmann et al., Nat. Commun. 2024): the paper's exact
conductance window, pulse response and variability are not public, so a user replaces the card with
their own calibration. Only the idle-power point (4.3 nW per synapse at 0.6 V) and the decay range
(~0.1-10 s, bias dependent) come from the literature.

Model summary (the functions live in ``device_models.memristor``):
    G = g_lt + g_st                   long-term (non-volatile, the weight W) + short-term (volatile, F)
    g_lt in [g_min, g_max]            programmed, quantised to ``levels`` levels
    g_st in [0, g_st_max]             potentiated by pulses, relaxes to 0 by the decay law
    tau(V) = tau_s * exp(-(V - bias_ref_v) / bias_efold_v)      decay time at decay bias V
    pulse of amplitude V, width w:  drive = (|V| / v_ref)^a (w / w_ref)^b   (0 below v_threshold)
        V > 0: g_st -> g_st_max - (g_st_max - g_st) exp(-drive * dg_up_ref / g_st_max)
        V < 0: g_st -> g_st exp(-drive * dg_down_ref / g_st_max)
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from device_models.errors import HwloopError

CARDS_DIR = Path(__file__).resolve().parent / "cards"
DEFAULT_CARD = CARDS_DIR / "srtio3_illustrative.toml"
DecayLaw = Literal["exp", "biexp", "stretched"]


class DeviceCardError(HwloopError):
    """A device card file is missing, unreadable, or has a missing / invalid field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(_Section):
    """What the card describes and where its numbers come from."""

    name: str = Field(description="short name of the device type")
    illustrative: bool = Field(description="true when the numbers are placeholders, not a calibration")
    source: str = Field(default="", description="reference or measurement campaign the numbers come from")


class Window(_Section):
    """Conductance window and programming resolution of one device."""

    g_min_siemens: float = Field(ge=0, description="lowest long-term conductance, S")
    g_max_siemens: float = Field(gt=0, description="highest long-term conductance, S")
    g_st_max_siemens: float = Field(gt=0, description="saturation of the volatile short-term part, S")
    levels: int = Field(ge=2, description="programmable long-term levels across [g_min, g_max]")

    @field_validator("g_max_siemens")
    @classmethod
    def _window_positive(cls, g_max: float, info: ValidationInfo) -> float:
        g_min = info.data.get("g_min_siemens")
        if g_min is not None and g_max <= g_min:
            raise ValueError(
                f"must exceed g_min_siemens ({g_min:g}): the conductance window is empty or negative"
            )
        return g_max


class Decay(_Section):
    """Relaxation law of the short-term part at the reference bias."""

    law: DecayLaw = Field(description="exp | biexp | stretched")
    tau_s: float = Field(gt=0, description="(fast) decay time constant at bias_ref_v, s")
    tau_slow_s: float = Field(gt=0, description="slow time constant of the biexp law (unused otherwise), s")
    fast_fraction: float = Field(ge=0, le=1, description="weight of the fast term of the biexp law, 1")
    stretch_beta: float = Field(gt=0, le=1, description="Kohlrausch exponent of the stretched law, 1")


class Bias(_Section):
    """Decay time as a function of the applied (decay) bias: tau(V) = tau * exp(-(V - ref) / efold)."""

    bias_ref_v: float = Field(description="bias at which decay.tau_s holds, V")
    bias_efold_v: float = Field(
        description="bias change that divides tau by e (negative: tau grows with V), V"
    )
    bias_min_v: float = Field(description="lowest decay bias the device tolerates, V")
    bias_max_v: float = Field(description="highest decay bias the device tolerates, V")

    @field_validator("bias_efold_v")
    @classmethod
    def _nonzero(cls, efold: float) -> float:
        if efold == 0:
            raise ValueError("must be non-zero")
        return efold

    @field_validator("bias_max_v")
    @classmethod
    def _bias_window(cls, v_max: float, info: ValidationInfo) -> float:
        v_min = info.data.get("bias_min_v")
        if v_min is not None and v_max <= v_min:
            raise ValueError(f"must exceed bias_min_v ({v_min:g})")
        return v_max


class Pulse(_Section):
    """Pulse response of the short-term part (see the module docstring for the law)."""

    v_ref_v: float = Field(gt=0, description="reference pulse amplitude, V")
    width_ref_s: float = Field(gt=0, description="reference pulse width, s")
    v_threshold_v: float = Field(ge=0, description="amplitude below which a pulse does nothing, V")
    v_max_v: float = Field(gt=0, description="largest safe pulse amplitude, V")
    dg_up_ref_siemens: float = Field(gt=0, description="potentiation of one reference pulse from g_st = 0, S")
    dg_down_ref_siemens: float = Field(
        gt=0, description="depression rate of one reference pulse at saturation, S"
    )
    amp_exponent: float = Field(gt=0, description="drive ~ (|V| / v_ref)^amp_exponent, 1")
    width_exponent: float = Field(gt=0, description="drive ~ (w / width_ref)^width_exponent, 1")


class Variability(_Section):
    """Device-to-device (d2d, drawn once per device) and cycle-to-cycle (c2c, per event) spreads."""

    d2d_tau_rel: float = Field(ge=0, description="lognormal sigma of each device's tau, 1")
    d2d_g_rel: float = Field(ge=0, description="relative sigma of a programmed long-term conductance, 1")
    d2d_window_rel: float = Field(ge=0, description="lognormal sigma of each device's g_st_max, 1")
    d2d_pulse_rel: float = Field(ge=0, description="lognormal sigma of each device's pulse response, 1")
    c2c_pulse_rel: float = Field(ge=0, description="relative sigma of each pulse's conductance change, 1")
    read_noise_rel: float = Field(
        ge=0, description="read noise sigma_G / G at G = g_max; var(G) = read_noise_rel^2 * g_max * G, 1"
    )
    stuck_on_fraction: float = Field(ge=0, le=1, description="fraction of devices stuck at g_max, 1")
    stuck_off_fraction: float = Field(ge=0, le=1, description="fraction of devices stuck at g_min, 1")

    @model_validator(mode="after")
    def _fractions(self) -> Variability:
        if self.stuck_on_fraction + self.stuck_off_fraction > 1:
            raise ValueError("stuck_on_fraction + stuck_off_fraction must not exceed 1")
        return self


class Read(_Section):
    """How the array is read: activity z_j maps to a read voltage z_j * read_v_per_unit on column j."""

    read_v_per_unit: float = Field(gt=0, description="read voltage per unit of presynaptic activity, V")
    read_time_s: float = Field(gt=0, description="duration of one read (integration time), s")
    write_v: float = Field(gt=0, description="amplitude of the STP write pulses (width is modulated), V")


class DeviceCard(_Section):
    """A complete device card; see the module docstring for the model the fields parameterise."""

    meta: Meta
    window: Window
    decay: Decay
    bias: Bias
    pulse: Pulse
    variability: Variability
    read: Read

    @model_validator(mode="after")
    def _cross(self) -> DeviceCard:
        if self.pulse.v_threshold_v >= self.pulse.v_max_v:
            raise ValueError("pulse.v_threshold_v must be below pulse.v_max_v")
        b, threshold = self.bias, self.pulse.v_threshold_v
        reach = max(abs(b.bias_min_v), abs(b.bias_max_v))
        if reach >= threshold:
            raise ValueError(
                f"bias window {b.bias_min_v:g}..{b.bias_max_v:g} V reaches pulse.v_threshold_v "
                f"({threshold:g} V): a decay bias that high would write the device; keep "
                "|bias.bias_min_v| and |bias.bias_max_v| below the pulse threshold"
            )
        if self.read.write_v > self.pulse.v_max_v:
            raise ValueError(
                f"read.write_v ({self.read.write_v:g}) exceeds pulse.v_max_v ({self.pulse.v_max_v:g})"
            )
        return self

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "<dict>") -> DeviceCard:
        """Validate a nested mapping; any problem is one ``DeviceCardError`` naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise DeviceCardError(f"device card {source}: {_first_problem(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> DeviceCard:
        """Read a card from a ``.toml`` or ``.json`` file."""
        p = Path(path)
        if not p.is_file():
            raise DeviceCardError(f"device card {p} not found")
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(p.read_text())
            elif p.suffix.lower() == ".toml":
                data = tomllib.loads(p.read_text())
            else:
                raise DeviceCardError(f"device card {p}: expected a .toml or .json file")
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DeviceCardError(f"device card {p} is not valid {p.suffix[1:].upper()}: {exc}") from None
        if not isinstance(data, dict):
            raise DeviceCardError(f"device card {p}: top level must be a table of sections")
        return cls.from_mapping(data, str(p))

    def tau_range_s(self) -> tuple[float, float]:
        """(shortest, longest) decay time the bias window allows, s."""
        from device_models.memristor import tau_at_bias

        ends = [
            float(tau_at_bias(v, self.decay.tau_s, self.bias.bias_ref_v, self.bias.bias_efold_v))
            for v in (self.bias.bias_min_v, self.bias.bias_max_v)
        ]
        return min(ends), max(ends)


def load_card(card: str | Path | DeviceCard | None = None) -> DeviceCard:
    """A card given as a path or an instance; ``None`` means the shipped illustrative card."""
    if isinstance(card, DeviceCard):
        return card
    return DeviceCard.load(DEFAULT_CARD if card is None else card)


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        return f"field '{field}' is missing"
    if err["type"] == "extra_forbidden":
        return f"unknown field '{field}'"
    msg = err["msg"].removeprefix("Value error, ")
    if not field:
        return msg
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"field '{field}': {msg}{shown}"
