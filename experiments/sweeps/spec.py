"""The sweep spec: what to evaluate, on which backend and card, over which grid, with which seeds.

A spec is a TOML file validated by pydantic; any problem is one ``SweepSpecError`` line naming the field:

    name = "srtio3-read-noise"            # optional; default: the file's stem
    metric = "accuracy"                   # what the report plots (see METRICS)

    [task]                                # kind = "art-eval" | "art-train-eval" | "pong"
    kind = "art-eval"
    n = 2000                              # fresh ART test sequences per point
    test_seed = 0                         # the test stream of repeat r is test_seed + r

    [backend]
    name = "emulated"
    card = "my_card.toml"                 # optional, relative to the spec; default: the shipped card
    options = { dt_s = 0.1 }              # fixed backend options (``--backend-option``)

    [[grid]]                              # one table per swept parameter: a device-card field
    param = "variability.read_noise_rel"  # (section.field) or a backend option (option.KEY)
    values = [0.0, 0.01, 0.03, 0.1]

    [[grid]]
    param = "variability.d2d_tau_rel"
    start = 0.0                           # or an evenly spaced range
    stop = 0.6
    num = 4                               # scale = "log" for log spacing

    [seeds]
    chip = [0, 1, 2]                      # one chip (device draw) per seed: the backend's ``seed``
    repeats = 1                           # task repeats per chip (fresh test data / games each)

    [execution]
    cpus_per_point = 1                    # CPUs each point declares (and torch threads it uses)
    retries = 2                           # a failed or lost point is retried this often, then recorded

    [report]
    margin = 0.05                         # tolerance: the metric drops by more than this from its best

A *point* is one (grid value combination, chip seed, repeat): it is evaluated once and stored as one
row. Every number a point uses comes from the spec, so a point's result is the same on any executor.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device_models.card import DeviceCard, DeviceCardError, load_card
from device_models.errors import HwloopError

OPTION_PREFIX = "option."
ParamValue = float | int | bool | str

# metric -> True when larger is better; ART energies are in joules, Pong scores in points
METRICS: dict[str, dict[str, bool]] = {
    "art-eval": {
        "accuracy": True,
        "energy_j": False,
        "energy_read_j": False,
        "energy_program_j": False,
        "energy_bias_j": False,
    },
    "pong": {"mean_score": True, "mean_earned_score": True, "energy_per_step": False},
}
METRICS["art-train-eval"] = {**METRICS["art-eval"], "train_val_accuracy": True}


class SweepSpecError(HwloopError):
    """A sweep spec is missing, unreadable, or has a missing / invalid field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtEvalTask(_Strict):
    """Accuracy of an ART checkpoint on fresh sequences (``hwloop art eval``)."""

    kind: Literal["art-eval"]
    n: int = Field(default=2000, ge=1, description="fresh test sequences per point")
    test_seed: int = Field(default=0, ge=0, description="test stream of repeat 0; repeat r uses +r")
    checkpoint: Path | None = Field(default=None, description="ART checkpoint; default: the shipped STPN-11")


class ArtTrainEvalTask(_Strict):
    """Hardware-aware training on the point's card (``hwloop art train --hardware-aware``), then eval."""

    kind: Literal["art-train-eval"]
    n: int = Field(default=2000, ge=1, description="fresh test sequences per point")
    test_seed: int = Field(default=0, ge=0, description="test stream of repeat 0; repeat r uses +r")
    epochs: int = Field(default=5, ge=1, description="training epochs per point")
    train_size: int = Field(default=20_000, ge=128, description="training sequences")
    train_seed: int = Field(default=0, description="seeds data, initialisation and shuffling")
    hidden: int | None = Field(default=None, ge=1, description="hidden units; default: STPN 11")
    checkpoint: Path | None = Field(default=None, description="start from this checkpoint, else from scratch")


class PongTask(_Strict):
    """Greedy Pong games of the agent (``hwloop pong``)."""

    kind: Literal["pong"]
    episodes: int = Field(default=1, ge=1, description="games per point")
    game_seed: int = Field(default=0, ge=0, description="first game's seed of repeat 0")
    sticky: float = Field(default=0.25, ge=0, le=1, description="sticky-action probability")
    checkpoint: Path | None = Field(default=None, description="agent checkpoint; default: shipped STPN-64")


Task = Annotated[ArtEvalTask | ArtTrainEvalTask | PongTask, Field(discriminator="kind")]


class Backend(_Strict):
    """The crossbar backend of every point, with its card or calibration and fixed options."""

    name: str = Field(default="emulated", description="registered backend name")
    card: Path | None = Field(default=None, description="device card; default: the backend's default")
    calibration: Path | None = Field(default=None, description="calibration record (JSON)")
    options: dict[str, ParamValue] = Field(default_factory=dict, description="fixed backend options")

    @field_validator("options")
    @classmethod
    def _no_reserved(cls, options: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for key in ("card", "calibration", "seed"):
            if key in options:
                raise ValueError(f"'{key}' is set by the sweep ([backend].{key} or [seeds]), not an option")
        return options


class Axis(_Strict):
    """One swept parameter: explicit ``values``, or ``start``/``stop``/``num`` (linear or log spacing)."""

    param: str = Field(description="card field 'section.field' or backend option 'option.KEY'")
    values: list[ParamValue] | None = None
    start: float | None = None
    stop: float | None = None
    num: int | None = Field(default=None, ge=2)
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _one_form(self) -> Axis:
        ranged = (self.start, self.stop, self.num)
        if self.values is not None:
            if any(v is not None for v in ranged):
                raise ValueError("give either values or start/stop/num, not both")
            if not self.values:
                raise ValueError("values is empty")
            if len(set(map(json.dumps, self.values))) != len(self.values):
                raise ValueError("values repeat")
            kinds = {_kind(v) for v in self.values}
            if len(kinds) > 1 and kinds != {"int", "float"}:
                raise ValueError(f"values mix types ({', '.join(sorted(kinds))})")
        elif any(v is None for v in ranged):
            raise ValueError("give values, or all of start, stop and num")
        elif self.scale == "log" and (self.start or 0) <= 0:
            raise ValueError("a log-spaced range needs start > 0")
        return self

    def grid_values(self) -> list[ParamValue]:
        """The axis' values in sweep order."""
        if self.values is not None:
            return list(self.values)
        start, stop, num = float(self.start or 0), float(self.stop or 0), int(self.num or 2)
        if self.scale == "log":
            a, b = math.log10(start), math.log10(stop)
            return [10 ** (a + (b - a) * i / (num - 1)) for i in range(num)]
        return [start + (stop - start) * i / (num - 1) for i in range(num)]


class Seeds(_Strict):
    """Chip seeds (one device draw each) and task repeats per chip."""

    chip: list[int] = Field(default_factory=lambda: [0], min_length=1)
    repeats: int = Field(default=1, ge=1)

    @field_validator("chip")
    @classmethod
    def _distinct(cls, chip: list[int]) -> list[int]:
        if len(set(chip)) != len(chip):
            raise ValueError("chip seeds repeat")
        return chip


class Execution(_Strict):
    """Resources a point declares and how often a failed or lost point is retried."""

    cpus_per_point: float = Field(default=1, gt=0)
    retries: int = Field(default=2, ge=0)


class ReportSettings(_Strict):
    """Defaults of ``hwloop sweep report``."""

    margin: float = Field(default=0.05, gt=0, description="drop from the best that marks the threshold")
    bootstrap: int = Field(default=1000, ge=100, description="bootstrap resamples for the CI")


class SweepSpec(_Strict):
    """A whole sweep; see the module docstring."""

    name: str = ""
    metric: str = "accuracy"
    task: Task
    backend: Backend = Field(default_factory=Backend)
    grid: list[Axis] = Field(min_length=1)
    seeds: Seeds = Field(default_factory=Seeds)
    execution: Execution = Field(default_factory=Execution)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        allowed = METRICS[self.task.kind]
        if self.metric not in allowed:
            raise ValueError(
                f"metric {self.metric!r} is not one of task {self.task.kind}'s: {', '.join(allowed)}"
            )
        params = [axis.param for axis in self.grid]
        if len(set(params)) != len(params):
            raise ValueError(f"a parameter is swept twice: {params}")
        return self

    # -- derived -----------------------------------------------------------------------------------
    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric is better (accuracy, score) or worse (energy)."""
        return METRICS[self.task.kind][self.metric]

    @property
    def params(self) -> list[str]:
        """Swept parameters in spec order."""
        return [axis.param for axis in self.grid]

    def base_card(self) -> DeviceCard:
        """The card the grid overrides: ``[backend].card`` or the shipped illustrative card."""
        return load_card(self.backend.card)

    def uses_card(self) -> bool:
        """True when points pass a card to the backend (a card is named or a card field is swept)."""
        return self.backend.card is not None or any(not p.startswith(OPTION_PREFIX) for p in self.params)

    def points(self) -> list[Point]:
        """Every point, ordered so each pass over the grid (repeat, then chip seed) completes in turn."""
        axes = [axis.grid_values() for axis in self.grid]
        combos = [dict(zip(self.params, values, strict=True)) for values in itertools.product(*axes)]
        return [
            Point(params=combo, chip_seed=chip, repeat=rep)
            for rep in range(self.seeds.repeats)
            for chip in self.seeds.chip
            for combo in combos
        ]

    def fingerprint(self) -> str:
        """Hash of what makes a point's result: task, backend, card, metric (not grid or seeds)."""
        identity = {
            "task": self.task.model_dump(mode="json"),
            "backend": self.backend.model_dump(mode="json", exclude={"card"}),
            "card": self.base_card().model_dump(mode="json") if self.uses_card() else None,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class Point(_Strict):
    """One evaluation: a value per swept parameter, a chip seed and a repeat index."""

    params: dict[str, ParamValue]
    chip_seed: int
    repeat: int

    @property
    def id(self) -> str:
        """Stable identity of the point (hash of its values and seeds)."""
        key = json.dumps({"p": self.params, "c": self.chip_seed, "r": self.repeat}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def card_overrides(self) -> dict[str, ParamValue]:
        """The swept card fields of this point, ``{"section.field": value}``."""
        return {k: v for k, v in self.params.items() if not k.startswith(OPTION_PREFIX)}

    def backend_options(self) -> dict[str, ParamValue]:
        """The swept backend options of this point, ``{"key": value}``."""
        prefix = OPTION_PREFIX
        return {k.removeprefix(prefix): v for k, v in self.params.items() if k.startswith(prefix)}


def card_with(card: DeviceCard, overrides: dict[str, ParamValue]) -> DeviceCard:
    """``card`` with each ``"section.field"`` set to its value, validated as a whole card.

    A path that is not a card field or a value the card refuses raises one ``DeviceCardError``.
    """
    if not overrides:
        return card
    data = card.model_dump()
    for path, value in overrides.items():
        section, _, field = path.partition(".")
        check_card_path(path)
        data[section][field] = value
    shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
    return DeviceCard.from_mapping(data, f"'{card.meta.name}' with {shown}")


def check_card_path(path: str) -> None:
    """Raise ``SweepSpecError`` unless ``path`` is ``section.field`` of a device card."""
    section, dot, field = path.partition(".")
    sections = DeviceCard.model_fields
    if not dot or "." in field:
        raise SweepSpecError(
            f"parameter {path!r}: expected a card field 'section.field' (sections: {', '.join(sections)}) "
            f"or a backend option '{OPTION_PREFIX}KEY'"
        )
    if section not in sections:
        raise SweepSpecError(
            f"parameter {path!r}: unknown card section {section!r}; sections: {', '.join(sections)} "
            f"(backend options are written '{OPTION_PREFIX}KEY')"
        )
    fields = sections[section].annotation.model_fields  # type: ignore[union-attr]
    if field not in fields:
        raise SweepSpecError(
            f"parameter {path!r}: card section {section!r} has no field {field!r}; "
            f"it has: {', '.join(fields)}"
        )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec TOML; relative card / calibration / checkpoint paths are taken
    relative to the spec file. Every grid value of a card field is checked against the card here."""
    p = Path(path)
    if not p.is_file():
        raise SweepSpecError(f"sweep spec {p} not found")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SweepSpecError(f"sweep spec {p} is not valid TOML: {exc}") from None
    data.setdefault("name", p.stem)
    _resolve_paths(data, p.parent)
    return spec_from_mapping(data, str(p))


def spec_from_mapping(data: dict[str, Any], source: str = "<dict>") -> SweepSpec:
    """Validate a spec given as a mapping (as read from TOML); see ``load_spec``."""
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepSpecError(f"sweep spec {source}: {_first_problem(exc)}") from None
    for i, axis in enumerate(spec.grid):
        if axis.param.startswith(OPTION_PREFIX):
            if not axis.param.removeprefix(OPTION_PREFIX):
                raise SweepSpecError(f"sweep spec {source}: field 'grid.{i}.param': empty option name")
            continue
        try:
            check_card_path(axis.param)
            base = spec.base_card()
            for value in axis.grid_values():
                card_with(base, {axis.param: value})
        except (SweepSpecError, DeviceCardError) as exc:
            raise SweepSpecError(f"sweep spec {source}: field 'grid.{i}': {exc}") from None
    return spec


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for section, key in (("backend", "card"), ("backend", "calibration"), ("task", "checkpoint")):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            path = Path(table[key]).expanduser()
            table[key] = str(path if path.is_absolute() else (base / path).resolve())


def _kind(value: ParamValue) -> str:
    return type(value).__name__


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    if loc and loc[0] == "task" and len(loc) > 1 and loc[1] in METRICS:
        del loc[1]  # the discriminated union's branch name repeats task.kind
    field = ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"field '{field}' is missing"
    if err["type"] == "extra_forbidden":
        return f"unknown field '{field}'"
    if err["type"] == "union_tag_invalid":
        return f"field '{field}.kind': {msg}"
    if err["type"] == "union_tag_not_found":
        return f"field '{field}.kind' is missing (one of: {', '.join(METRICS)})"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or not field else f" (got {got!r})"
    return f"field '{field}': {msg}{shown}" if field else msg
