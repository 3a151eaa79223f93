"""``hwloop view``: follow a campaign file or a lab step log live in the browser (Bokeh imported inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwloop.errors import HwloopError


def view_cmd(
    file: Annotated[
        Path, typer.Argument(help="Campaign file (calibrate run/import) or lab step log (HDF5).")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)] = 0,
    once: Annotated[
        Path | None, typer.Option("--once", help="Write a static HTML snapshot here and exit (no server).")
    ] = None,
    dt: Annotated[float, typer.Option("--dt", help="Step for the lambda histogram of a campaign, s.")] = 0.1,
    run: Annotated[
        str | None, typer.Option(help="Run of a lab log to follow, e.g. 0000 (default: the latest).")
    ] = None,
    period_ms: Annotated[
        int, typer.Option("--period-ms", help="Refresh period of the page, ms.", min=100)
    ] = 1000,
) -> None:
    """Follow a campaign or a lab step log as it grows: a live page on 127.0.0.1 (URL printed).

    Reads the file without locks (SWMR where the writer uses it), so the writer is never blocked.
    """
    if not dt > 0:
        raise HwloopError(f"--dt must be a positive number of seconds, got {dt}")
    from hwloop.view import page

    if once is not None:
        page.render_once(file, once, dt, run)
        typer.echo(f"wrote {once}")
        return
    chosen = port or page.free_port()

    def ready(url: str) -> None:
        typer.echo(f"hwloop view: following {file} at {url} (Ctrl-C to stop)", err=False)

    page.serve(file, port=chosen, dt_s=dt, run=run, period_ms=period_ms, ready=ready)
