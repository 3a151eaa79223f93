"""Small helpers shared by the CLI command groups: JSON output, rich consoles, backends from options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from hwloop.crossbar import Crossbar

console = Console(stderr=True)  # progress and tables go to stderr so stdout stays machine-readable


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


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def backend_from_options(
    name: str,
    *,
    card: Path | None = None,
    calibration: Path | None = None,
    seed: int | None = None,
    extra: list[str] | None = None,
) -> Crossbar:
    """Build crossbar backend ``name`` from CLI options, passing only the options the user gave.

    ``card``: device card file; ``calibration``: calibration record (JSON); ``seed``: the backend's
    own randomness (programming noise, device variation); ``extra``: ``KEY=VALUE`` strings from
    ``--backend-option`` (e.g. ``normalisation=native``, ``dt_s=0.05``, ``read_noise=false``).
    A backend that does not take a given option refuses it with one clear error (``make_backend``),
    so nothing is silently ignored.
    """
    from hwloop.crossbar import make_backend

    given = {"card": card, "calibration": calibration, "seed": seed, **parse_backend_options(extra or [])}
    return make_backend(name, **{key: value for key, value in given.items() if value is not None})


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
