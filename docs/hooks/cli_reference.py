"""MkDocs hook: the CLI reference is generated at build time from ``hwloop.cli``.

Every command of the typer app (walked recursively, hidden ones skipped) gets a section holding the
exact text ``hwloop <command> --help`` prints, so a command added on any branch appears in the
reference and its text cannot drift from ``--help``: both come from the same call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- cli-reference -->"
WIDTH = 100


def command_paths() -> Iterator[list[str]]:
    """Every command path of the ``hwloop`` app, root first (``[]``), depth-first, in declared order."""
    import typer.main

    from hwloop.cli import app

    def walk(cmd: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def help_text(path: list[str]) -> str:
    """What ``hwloop *path --help`` prints on a plain terminal ``WIDTH`` columns wide."""
    from typer.testing import CliRunner

    from hwloop.cli import app

    env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="hwloop")
    if result.exit_code != 0:
        raise RuntimeError(f"hwloop {' '.join(path)} --help exited {result.exit_code}: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")


def render() -> str:
    """The Markdown of the whole reference: one heading and one code block per command."""
    parts = []
    for path in command_paths():
        name = " ".join(["hwloop", *path])
        level = "#" * min(2 + len(path), 6)
        parts.append(f"{level} `{name}`\n\n```text\n{help_text(path)}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker in the CLI reference page with the generated sections."""
    if MARKER not in markdown:
        return markdown
    os.environ.setdefault("COLUMNS", str(WIDTH))
    return markdown.replace(MARKER, render())
