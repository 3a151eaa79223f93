"""Small helpers shared by the CLI command groups: JSON output, rich consoles, backends from options.

The CLI convention every result command follows: ``--json`` (a flag) prints the result as JSON on stdout,
``--json-out PATH`` writes it to a file (both may be given). Every command that runs an STPN takes
``--backend``, ``--backend-option KEY=VALUE`` (repeatable), ``--card``, ``--calibration`` and
``--backend-seed``, declared once here (``BackendOpt`` ...) and turned into a backend by
``backend_from_options``, the one option parser.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from hwloop.crossbar import Crossbar

console = Console(stderr=True)  # progress and tables go to stderr so stdout stays machine-readable

# -- the shared options (typer ``Annotated`` types) ---------------------------------------------
BackendOpt = Annotated[str, typer.Option("--backend", help="Crossbar backend for the STPN layer.")]
BackendOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--backend-option",
        help="Backend option KEY=VALUE (repeatable), e.g. normalisation=native, dt_s=0.05, rows=0:8.",
    ),
]
AwareBackendOptionOpt = Annotated[  # training commands: the options of the 'aware' backend
    list[str] | None,
    typer.Option(
        "--backend-option",
        help="Option KEY=VALUE of the aware training backend (repeatable), e.g. periphery=both, c2c=false.",
    ),
]
CardOpt = Annotated[Path | None, typer.Option("--card", help="Device card for the backend.")]
CalibrationOpt = Annotated[
    Path | None, typer.Option("--calibration", help="Calibration record (JSON) for the backend.")
]
BackendSeedOpt = Annotated[int | None, typer.Option("--backend-seed", help="Seed of the backend's noise.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
JsonOutOpt = Annotated[Path | None, typer.Option("--json-out", help="Write the JSON result to this file.")]


def progress_bar() -> Progress:
    """A rich progress bar on stderr: description, bar, done/total, time remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def emit_json(payload: Any, out: Path | None = None) -> None:
    """Print ``payload`` as JSON on stdout, or write it to ``out`` (and say where)."""
    text = json.dumps(payload, indent=2, default=_to_jsonable)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        console.print(f"wrote {out}")


def emit_result(payload: Any, as_json: bool, json_out: Path | None) -> None:
    """The convention: JSON on stdout if ``as_json`` (``--json``), and to ``json_out`` if given."""
    if as_json:
        emit_json(payload)
    if json_out is not None:
        emit_json(payload, json_out)


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def backend_options(
    name: str,
    *,
    card: Path | None = None,
    calibration: Path | None = None,
    seed: int | None = None,
    extra: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword options backend ``name`` is built with: what the user gave, plus ``defaults``.

    ``defaults`` (e.g. ``{"dt_s": 1 / 15}`` for Pong) apply only to backends that take that option and
    only where the user did not give it through ``--backend-option``.
    """
    from hwloop.crossbar import backend_parameters

    given = {"card": card, "calibration": calibration, "seed": seed, **parse_backend_options(extra or [])}
    options = {key: value for key, value in given.items() if value is not None}
    if defaults:
        accepted = backend_parameters(name)
        for key, value in defaults.items():
            if key in accepted and key not in options:
                options[key] = value
    return options


def backend_from_options(
    name: str,
    *,
    card: Path | None = None,
    calibration: Path | None = None,
    seed: int | None = None,
    extra: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Crossbar:
    """Build crossbar backend ``name`` from CLI options, passing only the options the user gave.

    ``card``: device card file; ``calibration``: calibration record (JSON); ``seed``: the backend's
    own randomness (programming noise, device variation); ``extra``: ``KEY=VALUE`` strings from
    ``--backend-option`` (e.g. ``normalisation=native``, ``dt_s=0.05``, ``read_noise=false``);
    ``defaults``: the command's own defaults (``backend_options``).
    A backend that does not take a given option refuses it with one clear error (``make_backend``),
    so nothing is silently ignored.
    """
    from hwloop.crossbar import make_backend

    options = backend_options(
        name, card=card, calibration=calibration, seed=seed, extra=extra, defaults=defaults
    )
    return make_backend(name, **options)


def parse_backend_options(pairs: list[str]) -> dict[str, Any]:
    """``["dt_s=0.05", "noise=off"]`` -> ``{"dt_s": 0.05, "noise": "off"}``.

    Values are read as JSON where they parse (numbers, true/false, null), else kept as strings.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise HwloopError(f"--backend-option {pair!r}: expected KEY=VALUE, e.g. normalisation=native")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = value
    return options
