"""The page of ``hwloop view``: Bokeh figures fed by a follower, live (Bokeh server) or as one HTML file.

One function per file kind builds the layout and returns an ``update(snapshot)`` that refreshes every
data source in place; the server calls it on a periodic callback, ``--once`` calls it once and saves.
The numbers the page states are in one text block (``.hwloop-stats``) so a reader, or a test, finds
them in one place.
"""

from __future__ import annotations

import html
import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwloop.view.sources import CampaignFollower, CampaignSnapshot, LabLogFollower, LabSnapshot, file_kind

STATUS_COLORS = {
    "pending": "#d9d9d9",
    "ok": "#1a9850",
    "poor_fit": "#fdae61",
    "threshold_collapse": "#d73027",
    "non_monotonic": "#f46d43",
    "stepwise": "#e6ab02",
    "failed": "#a50026",
    "flat": "#762a83",
    "tau_unresolved": "#8073ac",
}
OTHER_STATUS_COLOR = "#000000"
TRACE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _stats_html(title: str, lines: list[tuple[str, str]], notes: list[str]) -> str:
    rows = "".join(
        f"<tr><td class='k'>{html.escape(k)}</td><td class='v' data-key='{html.escape(k)}'>{html.escape(v)}"
        "</td></tr>"
        for k, v in lines
    )
    note = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        f"<div class='hwloop-stats'><h3 style='margin:0'>{html.escape(title)}</h3>"
        f"<table style='font-family:monospace'>{rows}</table>"
        + (f"<ul class='hwloop-notes' style='color:#7f4f00'>{note}</ul>" if note else "")
        + "</div>"
    )


def _fmt(x: float, spec: str = ".4g") -> str:
    return "-" if not math.isfinite(x) else format(x, spec)


def _opt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else _fmt(x, spec)


def _hist(values: np.ndarray, bins: int, log: bool = False) -> dict[str, list[float]]:
    v = values[np.isfinite(values)]
    if log:
        v = v[v > 0]
    if not v.size:
        return {"left": [], "right": [], "top": []}
    data = np.log10(v) if log else v
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) * 1e-3 + 1e-9), hi + 0.5 * (abs(hi) * 1e-3 + 1e-9)
    counts, edges = np.histogram(data, bins=bins, range=(lo, hi))
    if log:
        edges = 10.0**edges
    return {"left": edges[:-1].tolist(), "right": edges[1:].tolist(), "top": counts.astype(float).tolist()}


def campaign_layout(first: CampaignSnapshot) -> tuple[Any, Callable[[CampaignSnapshot], None]]:
    """The campaign page: stats, device progress and status maps, latest traces with fits, tau/lambda
    histograms; and the function that refreshes them from a snapshot."""
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, Div, LinearColorMapper
    from bokeh.plotting import figure

    rows, cols = first.shape
    stats = Div(text="", width=900)
    mapper = LinearColorMapper(palette="Viridis256", low=0.0, high=1.0)
    size = max(300, min(420, 22 * max(rows, cols)))
    prog_src = ColumnDataSource({"image": [first.progress]})
    prog = figure(
        title="progress per device (fraction measured)",
        width=size + 60,
        height=size,
        x_range=(0, cols),
        y_range=(rows, 0),
        x_axis_label="column",
        y_axis_label="row",
        tools="hover,save",
        tooltips=[("done", "@image{0.00}")],
    )
    prog.image(image="image", x=0, y=0, dw=cols, dh=rows, color_mapper=mapper, source=prog_src)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    status_src = ColumnDataSource(
        {
            "x": cc.ravel() + 0.5,
            "y": rr.ravel() + 0.5,
            "status": first.status.ravel().tolist(),
            "color": ["#d9d9d9"] * (rows * cols),
        }
    )
    stat = figure(
        title="status per device (latest fit verdict)",
        width=size + 60,
        height=size,
        x_range=(0, cols),
        y_range=(rows, 0),
        x_axis_label="column",
        y_axis_label="row",
        tools="hover,save",
        tooltips=[("row", "@y{0}"), ("col", "@x{0}"), ("status", "@status")],
    )
    stat.rect(x="x", y="y", width=0.95, height=0.95, color="color", source=status_src)
    trace_src = [ColumnDataSource({"t": [], "g": [], "fit": []}) for _ in TRACE_COLORS]
    traces = figure(
        title="latest relaxations (dots) and their fits (lines)",
        width=620,
        height=340,
        x_axis_label="time since the pulse train (s)",
        y_axis_label="conductance (S)",
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    for src, color in zip(trace_src, TRACE_COLORS, strict=True):
        traces.scatter("t", "g", source=src, size=3, color=color, alpha=0.6)
        traces.line("t", "fit", source=src, color=color, line_width=2)
    tau_src = ColumnDataSource({"left": [], "right": [], "top": []})
    lam_src = ColumnDataSource({"left": [], "right": [], "top": []})
    tau_fig = figure(
        title="tau of the relaxations fitted ok",
        width=420,
        height=300,
        x_axis_type="log",
        x_axis_label="tau (s)",
        y_axis_label="relaxations",
        tools="save",
    )
    tau_fig.quad(left="left", right="right", top="top", bottom=0, source=tau_src, color="#4575b4")
    lam_fig = figure(
        title=f"lambda per step at dt = {first.dt_s:g} s",
        width=420,
        height=300,
        x_axis_label="lambda",
        y_axis_label="relaxations",
        tools="save",
    )
    lam_fig.quad(left="left", right="right", top="top", bottom=0, source=lam_src, color="#91bfdb")

    def update(s: CampaignSnapshot) -> None:
        counts: dict[str, int] = {}
        for v in s.status.ravel():
            counts[str(v)] = counts.get(str(v), 0) + 1
        lines = [
            ("file", s.path),
            ("array", f"{s.shape[0]} x {s.shape[1]}"),
            ("decay units", f"{s.units_done} of {s.units_expected}"),
            ("pulse-response rows", str(s.pulse_rows)),
            ("relaxations fitted ok", str(s.tau_s.size)),
            ("median tau (s)", _fmt(s.tau_median_s)),
            ("median lambda", _fmt(float(np.median(s.lam)) if s.lam.size else float("nan"), ".5f")),
            ("devices by status", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))),
            ("instruments", "; ".join(s.instruments) or "-"),
        ]
        stats.text = _stats_html("hwloop view: calibration campaign", lines, [])
        prog_src.data = {"image": [s.progress]}
        status_src.data = {
            "x": status_src.data["x"],
            "y": status_src.data["y"],
            "status": s.status.ravel().tolist(),
            "color": [STATUS_COLORS.get(str(v), OTHER_STATUS_COLOR) for v in s.status.ravel()],
        }
        for k, src in enumerate(trace_src):
            if k < len(s.latest):
                tr = s.latest[k]
                src.data = {"t": tr["t_s"], "g": tr["g_siemens"], "fit": tr["fit_g_siemens"]}
            else:
                src.data = {"t": [], "g": [], "fit": []}
        tau_src.data = _hist(s.tau_s, 30, log=True)
        lam_src.data = _hist(s.lam, 30)

    update(first)
    layout = column(stats, row(prog, stat), row(traces, column(tau_fig, lam_fig)))
    return layout, update


def lab_layout(first: LabSnapshot) -> tuple[Any, Callable[[LabSnapshot], None]]:
    """The lab-log page: stats, measured and model F heatmaps of the latest step, their correlation per
    step, lateness and pulses per step, score where logged; and the refresh function."""
    from bokeh.layouts import column, row
    from bokeh.models import ColorBar, ColumnDataSource, Div, LinearColorMapper
    from bokeh.plotting import figure

    stats = Div(text="", width=1000)
    figs: list[Any] = []
    heat_srcs: dict[str, Any] = {}
    mappers: dict[str, Any] = {}
    heatmaps = (
        ("measured F", first.f_measured),
        ("model F", first.f_model),
        ("measured - model F", first.f_diff),
    )
    for name, f0 in heatmaps:
        if f0 is None:
            continue
        r, c = f0.shape
        src = ColumnDataSource({"image": [f0]})
        # Each map on its own symmetric scale: measured and model F can differ by an order of magnitude.
        mapper = mappers[name] = LinearColorMapper(palette="RdBu11", low=-1.0, high=1.0)
        fig = figure(
            title=f"{name}, latest step",
            width=330,
            height=300,
            x_range=(0, c),
            y_range=(0, r),
            x_axis_label="block column",
            y_axis_label="block row",
            tools="hover,save",
            tooltips=[("F", "@image{0.000}")],
        )
        fig.image(image="image", x=0, y=0, dw=c, dh=r, color_mapper=mapper, source=src)
        fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
        heat_srcs[name] = src
        figs.append(fig)
    series = ColumnDataSource({"step": [], "lateness_ms": [], "pulses": [], "dropped": [], "corr": []})

    def line_fig(title: str, y: str, label: str) -> Any:
        fig = figure(
            title=title,
            width=660,
            height=200,
            x_axis_label="step",
            y_axis_label=label,
            tools="pan,box_zoom,reset,save",
        )
        fig.line("step", y, source=series, line_width=1.5)
        return fig

    corr_fig = line_fig("correlation of measured and model F over the block, per step", "corr", "Pearson r")
    late_fig = line_fig("lateness per step (past its deadline)", "lateness_ms", "ms")
    pulse_fig = line_fig("row pulses sent per step", "pulses", "pulses")
    drop_fig = line_fig("device writes dropped per step (below the pulse threshold)", "dropped", "writes")
    score_src = ColumnDataSource({"i": [], "score": []})
    score_fig = figure(title="score as logged", width=660, height=200, x_axis_label="entry", tools="save")
    score_fig.line("i", "score", source=score_src)

    def update(s: LabSnapshot) -> None:
        corr = s.correlation
        fid = s.fidelity
        lines = [
            ("file", s.path),
            ("run", s.run),
            ("resource", s.attrs.get("resource", "-")),
            ("bias", s.attrs.get("bias", "-")),
            ("games", str(s.games)),
            ("steps", str(s.steps.size)),
            ("pulses sent", str(s.pulses_total)),
            ("dropped writes", str(int(np.nansum(s.dropped)))),
            ("row refreshes", str(int(np.nansum(s.refreshed)))),
            (
                "worst lateness (ms)",
                _fmt(float(np.nanmax(s.lateness_s)) * 1e3 if s.lateness_s.size else math.nan),
            ),
            ("overruns", str(int((s.lateness_s > 0).sum()))),
            ("fidelity correlation r", _opt(fid["correlation"], ".4f")),
            ("fidelity RMS ratio", _opt(fid["rms_ratio"], ".4f")),
            ("fidelity synapse-steps", str(int(fid["pairs"] or 0))),
            ("latest correlation r", _fmt(float(corr[-1]) if corr.size else math.nan, ".4f")),
            ("score", _fmt(float(s.score[-1])) if s.score is not None and s.score.size else "-"),
            ("last event", s.events[-1] if s.events else "-"),
        ]
        stats.text = _stats_html("hwloop view: lab step log", lines, s.notes)
        for name, f in (
            ("measured F", s.f_measured),
            ("model F", s.f_model),
            ("measured - model F", s.f_diff),
        ):
            if f is not None and name in heat_srcs:
                heat_srcs[name].data = {"image": [f]}
                top = float(np.nanmax(np.abs(f))) if np.isfinite(f).any() else 0.0
                mappers[name].low, mappers[name].high = -(top or 1.0), top or 1.0
        # Only the new steps go to the browser (stream), not the whole series again every refresh.
        sent = len(series.data["step"])
        columns = {
            "step": s.steps,
            "lateness_ms": s.lateness_s * 1e3,
            "pulses": s.pulses,
            "dropped": s.dropped,
            "corr": s.correlation,
        }
        if s.steps.size < sent:  # the log was replaced: start over
            series.data = columns
        elif s.steps.size > sent:
            series.stream({k: v[sent:] for k, v in columns.items()})
        if s.score is not None:
            score_src.data = {"i": np.arange(s.score.size), "score": s.score}

    update(first)
    parts: list[Any] = [stats]
    if figs:
        parts.append(row(*figs))
    if first.f_measured is not None and first.f_model is not None:
        parts.append(corr_fig)
    parts += [late_fig, pulse_fig, drop_fig]
    if first.score is not None:
        parts.append(score_fig)
    return column(*parts), update


def follower_for(path: Path, dt_s: float, run: str | None) -> CampaignFollower | LabLogFollower:
    """The follower of the file's kind."""
    if file_kind(path) == "campaign":
        return CampaignFollower(path, dt_s)
    return LabLogFollower(path, run)


def make_document(path: Path, dt_s: float, run: str | None, period_ms: int) -> Callable[[Any], None]:
    """A Bokeh application function: each browser session gets its own follower and refresh callback."""

    def build(doc: Any) -> None:
        follower = follower_for(path, dt_s, run)
        snap = follower.poll()
        layout, update = (
            campaign_layout(snap) if isinstance(snap, CampaignSnapshot) else lab_layout(snap)  # type: ignore[arg-type]
        )
        doc.title = f"hwloop view: {path.name}"
        doc.add_root(layout)

        def refresh() -> None:
            update(follower.poll())  # type: ignore[arg-type]

        doc.add_periodic_callback(refresh, period_ms)

    return build


def render_once(path: Path, out: Path, dt_s: float, run: str | None) -> None:
    """A static, self-contained HTML snapshot of the file as it is now."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    snap = follower_for(path, dt_s, run).poll()
    layout, _ = campaign_layout(snap) if isinstance(snap, CampaignSnapshot) else lab_layout(snap)  # type: ignore[arg-type]
    out.write_text(file_html(layout, INLINE, title=f"hwloop view: {path.name}"), encoding="utf-8")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def yield_to_writer() -> None:
    """Run the viewer below the writer's priority, on one thread: on a machine of few cores the page may
    lag, the measurement must not (benchmarks/bench_view.py measures the writer with a viewer attached)."""
    import contextlib
    import os

    import torch

    with contextlib.suppress(OSError):  # not permitted here: the viewer still works, at normal priority
        os.nice(10)
    torch.set_num_threads(1)


def serve(
    path: Path, *, port: int, dt_s: float, run: str | None, period_ms: int, ready: Callable[[str], None]
) -> None:
    """Serve the live page on 127.0.0.1:port until interrupted; ``ready(url)`` once it listens."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    yield_to_writer()
    follower_for(path, dt_s, run).poll()  # a bad file is one error line before anything listens
    app = Application(FunctionHandler(make_document(path, dt_s, run, period_ms)))
    server = Server(
        {"/": app},
        address="127.0.0.1",
        port=port,
        allow_websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
    )
    server.start()
    ready(f"http://127.0.0.1:{port}/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
