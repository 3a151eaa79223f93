"""``hwloop lab report LOG``: the fidelity of a mixed-mode lab run from its step log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwloop.commands.common import JsonOpt, JsonOutOpt, console, emit_result

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def _f(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


@app.command("report")
def report_cmd(
    log: Annotated[Path, typer.Argument(help="A lab backend step log (HDF5, --backend-option log=...).")],
    run: Annotated[str | None, typer.Option(help="Run in the log (e.g. 0002); default the last.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the four fidelity panels here (PNG).")] = None,
    as_json: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """How closely the block followed the STPN over a run: correlation and RMS ratio of measured vs model
    F, the lateness histogram, dropped writes, and the bias held vs prescribed."""
    from hwloop.backends.lab_report import lab_report, plot_report

    report, series = lab_report(log, run)
    if not as_json:
        r = report
        console.print(
            f"{r.log} run {r.run}: {r.steps} steps, {r.games} games on {r.resource} (dt {r.dt_s:.4g} s)",
            highlight=False,
        )
        console.print(
            f"bias: {r.bias}; normalisation: {r.normalisation}; {r.refresh_rows} row refreshes",
            highlight=False,
        )
        console.print(
            f"fidelity: correlation {_f(r.correlation)}, RMS ratio {_f(r.rms_ratio)} "
            f"(measured {_f(r.rms_measured, '.4g')}, model {_f(r.rms_model, '.4g')}, "
            f"{r.pairs} synapse-steps)",
            highlight=False,
        )
        edges = r.lateness_bins_s
        bins = ", ".join(
            f"{edges[i] * 1e3:g}-{edges[i + 1] * 1e3:g} ms: {c}" for i, c in enumerate(r.lateness_counts) if c
        )
        console.print(
            f"lateness: {r.overruns} overruns, worst {r.worst_lateness_s * 1e3:.1f} ms ({bins})",
            highlight=False,
        )
        console.print(f"dropped writes: {r.dropped_writes}", highlight=False)
        if r.bias_prescribed_v:
            console.print(
                f"bias held vs prescribed: {len(r.bias_prescribed_v)} lines, largest difference "
                f"{r.bias_max_error_v * 1e3:.2f} mV",
                highlight=False,
            )
        for event in r.events:
            if event.startswith("error"):
                console.print(f"run ended with {event}", highlight=False)
    if plot is not None:
        plot_report(report, series, plot)
        if not as_json:
            console.print(f"wrote {plot}")
    emit_result(report.model_dump(), as_json, json_out)
