"""``hwloop sweep``: variability-tolerance sweeps (``run`` a spec on Ray or a process pool, ``report`` it).

Heavy modules (ray, pyarrow, torch, matplotlib, experiments.*) are imported inside the commands.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hwloop.errors import HwloopError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


class _RichProgress:
    """Points done / failed / running with an ETA, on stderr (``ProgressSink`` of the runner)."""

    def __init__(self, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from hwloop.commands.common import console

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
        )
        self.label = label
        self.task: Any = None

    def start(self, total: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total, counts="")

    def update(self, done: int, failed: int, running: int) -> None:
        counts = f"[green]{done} done[/] [red]{failed} failed[/] {running} running"
        self.bar.update(self.task, completed=done + failed, counts=counts, refresh=True)

    def stop(self) -> None:
        self.bar.stop()


@app.command("run")
def run_cmd(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec (TOML).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Results dataset (a directory of Parquet files).", show_default="SPEC.parquet"
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Join an existing Ray cluster (HOST:PORT or 'auto'); default: local."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="auto (Ray if installed, else a process pool), ray or pool.")
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Points run at once (default: cores / cpus_per_point)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the outcome as JSON here.")
    ] = None,
) -> None:
    """Evaluate every point of a sweep spec not yet in the results; rows are stored as points finish."""
    from experiments.sweeps.runner import run_sweep
    from experiments.sweeps.spec import load_spec
    from hwloop.commands.common import console, emit_result

    if executor not in ("auto", "ray", "pool"):
        raise HwloopError(f"--executor must be auto, ray or pool, got {executor!r}")
    spec = load_spec(spec_path)
    out = out if out is not None else spec_path.with_suffix(".parquet")
    points = len(spec.points())
    console.print(
        f"sweep [bold]{spec.name}[/]: {spec.task.kind} on {spec.backend.name}, "
        f"{' x '.join(f'{len(a.grid_values())} {a.param}' for a in spec.grid)} x "
        f"{len(spec.seeds.chip)} chip seeds x {spec.seeds.repeats} repeats = {points} points -> {out}"
    )
    progress = _RichProgress(f"{spec.name}")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Ray's own messages must not mix into --json output
            outcome = run_sweep(
                spec,
                out,
                executor=executor,  # type: ignore[arg-type]  # checked above
                address=address,
                workers=workers,
                progress=progress,
            )
    except KeyboardInterrupt:
        progress.stop()
        console.print(f"interrupted: finished points are in {out}; run the same command to resume")
        raise typer.Exit(130) from None
    finally:
        progress.stop()
    if outcome.skipped:
        console.print(f"skipped {outcome.skipped} points finished earlier")
    console.print(
        f"{outcome.done} done, {outcome.failed} failed, {outcome.retried} retries, on {outcome.executor} "
        f"in {outcome.seconds:.1f} s; results in {out}"
    )
    for failure in outcome.failures[:5]:
        console.print(f"[red]failed[/] {failure}")
    emit_result({**outcome.__dict__, "results": str(out)}, as_json, json_out)
    if outcome.failed:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    results: Annotated[
        Path, typer.Argument(metavar="RESULTS", help="Results dataset of `hwloop sweep run`.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Figure to write (PNG).")] = Path("sweep.png"),
    margin: Annotated[
        float | None,
        typer.Option("--margin", min=0.0, help="Drop from the best that marks the threshold (spec default)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print thresholds and per-point means as JSON on stdout.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write thresholds and per-point means as JSON here.")
    ] = None,
) -> None:
    """Plot the metric against each swept parameter and report tolerance thresholds with 95% CIs."""
    from rich.table import Table

    from experiments.sweeps.report import describe, grid_from, plot_report, thresholds
    from experiments.sweeps.store import read_results
    from hwloop.commands.common import console, emit_result

    spec, table = read_results(results)
    margin = spec.report.margin if margin is None else margin
    if margin <= 0:
        raise HwloopError("--margin must be positive")
    grid = grid_from(spec, table)
    started = time.perf_counter()
    found = thresholds(grid, margin, spec.report.bootstrap)
    failed = sum(1 for s in table["status"].to_pylist() if s != "ok")
    title = (
        f"{spec.name}: {spec.metric} of {spec.task.kind} on {spec.backend.name}, "
        f"{len(grid.seeds)} seeds per point" + (f", {failed} failed points" if failed else "")
    )
    plot_report(grid, found, margin, out, title)
    best_word = "highest" if grid.higher_is_better else "lowest"
    rows = Table(
        title=f"tolerance: {spec.metric} within {margin:g} of its best ({best_word} mean {found[0].best:.4g})"
        if found
        else "tolerance"
    )
    for name in ("parameter", "others at", "threshold"):
        rows.add_column(name, overflow="fold")
    for t in found:
        axis = grid.axes[grid.params.index(t.param)]
        at = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.at.items()) or "-"
        rows.add_row(t.param, at, describe(t, axis))
    console.print(rows)
    console.print(
        f"CI: bootstrap over {len(grid.seeds)} seeds ({spec.report.bootstrap} resamples, "
        f"{time.perf_counter() - started:.1f} s), linear interpolation between grid values"
    )
    console.print(f"wrote {out}")
    if as_json or json_out is not None:
        payload = {
            "name": spec.name,
            "metric": spec.metric,
            "margin": margin,
            "seeds": [list(s) for s in grid.seeds],
            "failed_points": failed,
            "thresholds": [t.to_json() for t in found],
            "means": [
                {
                    **{p: grid.axes[k][c[k]] for k, p in enumerate(grid.params)},
                    "mean": None if m != m else float(m),
                }
                for c, m in zip(grid.combos, grid.mean(), strict=True)
            ],
        }
        emit_result(json.loads(json.dumps(payload)), as_json, json_out)
