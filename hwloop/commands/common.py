"""Small helpers shared by the CLI command groups: JSON output and rich consoles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(stderr=True)  # progress and tables go to stderr so stdout stays machine-readable


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
