"""``hwloop devices``: look at a device card and at what its model does before trusting it."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hwloop.commands.common import JsonOutOpt, console, emit_result
from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from device_models.card import DeviceCard

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

CardArg = Annotated[
    Path | None, typer.Argument(help="Device card (.toml or .json); default: the shipped illustrative card.")
]
_UNITS = {"_siemens": "S", "_v": "V", "_s": "s"}
_DECADES = {"": 0, "k": 3, "m": -3, "u": -6, "µ": -6, "n": -9}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kmuµn]?)(V|s)\s*$")


def _unit(field: str) -> str:
    return next((unit for suffix, unit in _UNITS.items() if field.endswith(suffix)), "1")


@app.command("show")
def show_cmd(
    card: CardArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON instead.")] = False,
    json_out: JsonOutOpt = None,
    dt_s: Annotated[
        float, typer.Option("--dt-s", min=0.0, help="Seconds per STPN step (> 0) for the lambda table.")
    ] = 0.1,
) -> None:
    """Print every parameter of a device card with its unit and meaning, and the per-step retention
    (lambda) each bias topology can realise at --dt-s. A card whose bias window reaches its write
    threshold is refused."""
    from device_models.card import DEFAULT_CARD, load_card

    c = load_card(card)
    realisable = realisable_lambdas(c, dt_s)
    emit_result(
        {"card": str(card or DEFAULT_CARD), **c.model_dump(mode="json"), "realisable_lambda": realisable},
        as_json,
        json_out,
    )
    if as_json:
        return
    console.print(escape(f"{c.meta.name}  ({card or DEFAULT_CARD})"))
    if c.meta.source:
        console.print(escape(f"source: {c.meta.source}"))
    table = Table(show_lines=False)
    for column in ("parameter", "value", "unit", "meaning"):
        table.add_column(column, overflow="fold")
    for section_name, section in c:
        if section_name == "meta":
            continue
        for field, info in type(section).model_fields.items():
            value = getattr(section, field)
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            unit = _unit(field) if isinstance(value, int | float) and not isinstance(value, bool) else ""
            meaning = (info.description or "").removesuffix(f", {unit}")
            table.add_row(f"{section_name}.{field}", shown, unit, escape(meaning))
    console.print(table)
    lo, hi = c.tau_range_s()
    console.print(f"decay time over the bias window: {lo:.3g} s .. {hi:.3g} s")
    lam_table = Table(title=f"realisable lambda per step at dt = {dt_s:g} s (nominal device)")
    for column in ("bias", "sources (H x 2K array)", "lambda min", "lambda max", "what it holds"):
        lam_table.add_column(column, overflow="fold")
    for row in realisable["topologies"]:
        lam_table.add_row(
            row["bias"],
            row["sources"],
            f"{row['lambda_min']:.4g}",
            f"{row['lambda_max']:.4g}",
            escape(row["holds"]),
        )
    console.print(lam_table)
    if c.meta.illustrative:
        console.print("[yellow]ILLUSTRATIVE values: replace them with your own calibration[/]")


_TOPOLOGY_ROWS = (
    ("lines", "H + 2K", "device (r, c) at V_row[r] - V_col[c]: ln tau additive in row and column (default)"),
    ("rows", "H", "one bias per row; columns at 0 V"),
    ("device", "2HK", "any bias per device (1T1R-style access; idealised)"),
    ("none", "0", "every device at 0 V"),
)


def realisable_lambdas(c: DeviceCard, dt_s: float) -> dict[str, Any]:
    """Per bias topology: the sources an H x 2K array needs and the per-step retention range (1) the
    nominal device reaches at ``dt_s`` (s), through the array it configures (``device_models.array``)."""
    from device_models.array import ArrayConfig

    rows = []
    for name, sources, holds in _TOPOLOGY_ROWS:
        nominal = ArrayConfig.build(c, dt_s=dt_s, bias=name, nonidealities="ideal-devices")
        real = nominal.realise((1, 1))
        lo, hi = real.lambda_range()
        rows.append(
            {
                "bias": name,
                "sources": sources,
                "lambda_min": float(lo.min()),
                "lambda_max": float(hi.max()),
                "holds": holds,
            }
        )
    return {"dt_s": dt_s, "topologies": rows}


def parse_quantity(text: str, unit: str, what: str) -> float:
    """'100us' -> 1e-4 (for unit 's'); prefixes k, m, u/µ, n. One clear error otherwise."""
    match = _QUANTITY.match(text)
    if match is None or match.group(3) != unit:
        raise HwloopError(
            f"{what} {text!r}: expected a number with unit {unit}, e.g. 1.5{unit} or 100m{unit}"
        )
    value, decades = float(match.group(1)), _DECADES[match.group(2)]
    return value * 10**decades if decades >= 0 else value / 10**-decades  # 100u -> exactly 1e-4


def parse_pulse(spec: str) -> tuple[float, float]:
    """'1.5V,100us' -> (amplitude_v, width_s); the amplitude may be negative (depression)."""
    parts = spec.split(",")
    if len(parts) != 2:
        raise HwloopError(f"--pulse {spec!r}: expected AMPLITUDE,WIDTH such as 1.5V,100us")
    amplitude_v = parse_quantity(parts[0], "V", "--pulse amplitude")
    width_s = parse_quantity(parts[1], "s", "--pulse width")
    if width_s <= 0:
        raise HwloopError(f"--pulse {spec!r}: the width must be positive")
    return amplitude_v, width_s


def relaxation_trace(
    c: DeviceCard, amplitude_v: float, width_s: float, duration_s: float, bias_v: float, points: int
) -> dict[str, Any]:
    """One pulse from rest (g_st = 0) on the nominal device, then its relaxation at ``bias_v``."""
    import numpy as np

    from device_models.memristor import (
        card_pulse_kwargs,
        card_relaxation,
        pulse_energy_j,
        pulse_response,
        tau_at_bias,
    )

    g_peak = float(pulse_response(0.0, amplitude_v, width_s, **card_pulse_kwargs(c)))
    t = np.linspace(0.0, duration_s, points)
    g_st = g_peak * card_relaxation(c, t, bias_v)
    b = c.bias
    return {
        "card": c.meta.name,
        "illustrative": c.meta.illustrative,
        "pulse_amplitude_v": amplitude_v,
        "pulse_width_s": width_s,
        "bias_v": bias_v,
        "law": c.decay.law,
        "tau_s": tau_at_bias(bias_v, c.decay.tau_s, b.bias_ref_v, b.bias_efold_v),
        "g_lt_siemens": c.window.g_min_siemens,
        "g_st_peak_siemens": g_peak,
        # V^2 G w with G the mean of the device's conductance before and after the pulse
        "pulse_energy_j": pulse_energy_j(c.window.g_min_siemens + g_peak / 2, amplitude_v, width_s),
        "time_s": t.tolist(),
        "g_st_siemens": g_st.tolist(),
    }


def _plot(trace: dict[str, Any], c: DeviceCard, out: Path) -> None:
    """The trace (solid), the same pulse decaying at both ends of the bias window (dashed)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from device_models.memristor import card_relaxation, tau_at_bias

    t = np.asarray(trace["time_s"])
    peak = trace["g_st_peak_siemens"]
    lead = 0.05 * t[-1]  # a short rest before the pulse
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for bias_v in (c.bias.bias_min_v, c.bias.bias_max_v):
        tau = tau_at_bias(bias_v, c.decay.tau_s, c.bias.bias_ref_v, c.bias.bias_efold_v)
        g = peak * card_relaxation(c, t, bias_v) * 1e9
        ax.plot(t, g, ls="--", lw=1, alpha=0.6, label=f"bias {bias_v:g} V (tau {tau:.3g} s)")
    g_ns = np.concatenate([[0.0, 0.0], np.asarray(trace["g_st_siemens"]) * 1e9])
    ax.plot(
        np.concatenate([[-lead, 0.0], t]),
        g_ns,
        lw=2,
        color="C3",
        label=f"bias {trace['bias_v']:g} V (tau {trace['tau_s']:.3g} s)",
    )
    ax.axhline(peak * 1e9 / math.e, color="grey", ls=":", lw=1, label="peak / e")
    ax.set_xlabel("time after the pulse (s)")
    ax.set_ylabel("short-term conductance g_st (nS)")
    note = "" if "illustrative" in trace["card"].lower() or not trace["illustrative"] else " (illustrative)"
    ax.set_title(
        f"{trace['card']}{note}: {trace['pulse_amplitude_v']:g} V x {trace['pulse_width_s'] * 1e6:g} us "
        f"pulse, {trace['law']} decay",
        fontsize=10,
    )
    ax.set_xlim(-lead, t[-1])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


@app.command("relax")
def relax_cmd(
    card: CardArg = None,
    pulse: Annotated[
        str, typer.Option("--pulse", help="Pulse AMPLITUDE,WIDTH, e.g. 1.5V,100us.")
    ] = "1.5V,100us",
    duration: Annotated[str, typer.Option("--for", help="How long to follow the decay, e.g. 5s.")] = "5s",
    bias: Annotated[
        str | None, typer.Option("--bias", help="Decay bias, e.g. 0.6V (default: the card's reference).")
    ] = None,
    points: Annotated[int, typer.Option("--points", min=2, help="Samples of the trace.")] = 200,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the trace as a PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON on stdout.")] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Simulate one pulse on the card's nominal device followed by its relaxation."""
    from device_models.card import load_card

    c = load_card(card)
    amplitude_v, width_s = parse_pulse(pulse)
    duration_s = parse_quantity(duration, "s", "--for")
    if duration_s <= 0:
        raise HwloopError(f"--for {duration!r}: the duration must be positive")
    if abs(amplitude_v) > c.pulse.v_max_v:
        raise HwloopError(
            f"--pulse amplitude {amplitude_v:g} V exceeds the card's v_max_v ({c.pulse.v_max_v:g} V)"
        )
    bias_v = c.bias.bias_ref_v if bias is None else parse_quantity(bias, "V", "--bias")
    if not c.bias.bias_min_v <= bias_v <= c.bias.bias_max_v:
        raise HwloopError(
            f"--bias {bias_v:g} V is outside the card's window {c.bias.bias_min_v:g}..{c.bias.bias_max_v:g} V"
        )
    trace = relaxation_trace(c, amplitude_v, width_s, duration_s, bias_v, points)
    if plot is not None:
        _plot(trace, c, plot)
        console.print(f"wrote {plot}")
    emit_result(trace, as_json, json_out)
    if as_json:
        return
    if abs(amplitude_v) < c.pulse.v_threshold_v or amplitude_v < 0:
        console.print("note: from rest only a positive pulse above v_threshold_v changes g_st")
    end = trace["g_st_siemens"][-1]
    console.print(
        f"pulse {amplitude_v:g} V x {width_s:g} s -> g_st peak {trace['g_st_peak_siemens']:.4g} S "
        f"(on g_lt {trace['g_lt_siemens']:.3g} S), {trace['law']} decay at {bias_v:g} V "
        f"(tau {trace['tau_s']:.3g} s): {end:.4g} S after {duration_s:g} s; "
        f"pulse energy {trace['pulse_energy_j']:.3g} J"
    )
