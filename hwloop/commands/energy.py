"""``hwloop energy report RESULT.json``: a run's energy per game in the paper's form, with its assumptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hwloop.commands.common import JsonOpt, JsonOutOpt, console, emit_result
from hwloop.errors import HwloopError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _mj(joules: float | None) -> str:
    return (
        "-" if joules is None else f"{joules * 1e3:,.1f} mJ" if joules >= 1e-4 else f"{joules * 1e3:.3g} mJ"
    )


@app.command("report")
def report_cmd(
    result: Annotated[Path, typer.Argument(help="A `hwloop pong --json-out` result of an STPN agent.")],
    as_json: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Energy per Pong game: the device (decay bias, pulses, reads), a GPU doing the same synaptic work,
    and Weilenmann et al. (Nat. Commun. 2024) beside them, with every constant and its source."""
    from rich.console import Console
    from rich.table import Table

    from hwloop.energy import paper_form

    if not result.is_file():
        raise HwloopError(f"result file not found: {result}")
    try:
        data = json.loads(result.read_text())
    except json.JSONDecodeError as exc:
        raise HwloopError(f"{result} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HwloopError(f"{result} is not a hwloop result (a JSON object)")
    report = paper_form(data)
    table = Table(title=f"Energy per Pong game ({result.name})")
    for column in ("", "this run", "Weilenmann et al. 2024", "note"):
        table.add_column(
            column, justify="right" if column in ("this run", "Weilenmann et al. 2024") else "left"
        )
    for name, mine, paper, note in report.rows:
        table.add_row(name, _mj(mine), _mj(paper), note)
    if not as_json:
        out = Console(width=max(console.width, 110))
        out.print(table)
        if report.metric_per_game is not None:
            out.print(
                f"paper's synaptic metric sum_ij |G_ij/n_i| z_j^2: {report.metric_per_game:,.1f} per game "
                f"(weight units, not joules)",
                highlight=False,
            )
        out.print("Assumptions:")
        for line in report.assumptions:
            out.print(f"- {line}", highlight=False, soft_wrap=True)
    emit_result(report.model_dump(), as_json, json_out)
