"""``hwloop instruments``: list, identify, and pulse-then-read lab instruments (real or simulated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hwloop.commands.common import JsonOutOpt, console, emit_result
from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from drivers import ArrayController, Smu
    from drivers.sim import SimLab
    from drivers.trace import TraceWriter

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

VisaLibrary = Annotated[
    str,
    typer.Option("--visa-library", help='PyVISA library: "" = system NI/Keysight VISA, "@py" = pyvisa-py.'),
]
SimSeed = Annotated[int, typer.Option("--sim-seed", help="Seed of the simulated lab (*.sim resources).")]
Baudrate = Annotated[int, typer.Option("--baudrate", min=1, help="Serial baud rate (crossbar controllers).")]
AllowV1Pulses = Annotated[
    bool,
    typer.Option(
        "--allow-v1-pulses",
        help="Pulse a crossbar controller that speaks only protocol v1 (no CRC, no echo: a corrupted byte "
        "can change a pulse). Refused without this flag.",
    ),
]


def _sim_lab(resource: str, seed: int) -> SimLab | None:
    from drivers.factory import is_simulated

    if resource.startswith(("xbarsim://", "arc2sim://")) or not is_simulated(resource):
        return None
    from drivers.sim import SimLab  # loads the device physics only when a simulated resource is used

    return SimLab(seed=seed)


@app.command("list")
def list_cmd(
    visa_library: VisaLibrary = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the resources as JSON on stdout.")] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """List VISA resources, serial ports, and the simulated lab's instruments."""
    from drivers.factory import list_resources

    found = list_resources(visa_library)
    emit_result(found, as_json, json_out)
    if as_json:
        return
    table = Table(title="instruments")
    table.add_column("kind")
    table.add_column("resource")
    for kind, names in found.items():
        for name in names:
            table.add_row(kind, name)
        if not names:
            table.add_row(kind, "[dim](none found)[/dim]")
    console.print(table)


@app.command("identify")
def identify_cmd(
    resource: Annotated[str, typer.Argument(help="VISA resource name or serial port / URL.")],
    visa_library: VisaLibrary = "",
    sim_seed: SimSeed = 0,
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Reply timeout, s.")] = 2.0,
    baudrate: Baudrate = 115_200,
    as_json: Annotated[bool, typer.Option("--json", help="Print {resource, idn} as JSON.")] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Print the instrument's identification (``*IDN?``); sends nothing that sources."""
    from drivers import SafetyLimits, open_instrument
    from drivers.factory import is_arc2, open_transport

    if is_arc2(resource):  # no line transport: the driver describes the board (it only grounds channels)
        with open_instrument(resource, SafetyLimits.conservative()) as board:
            idn = board.identify()
        emit_result({"resource": resource, "idn": idn}, as_json, json_out)
        if not as_json:
            typer.echo(idn)
        return
    transport, _ = open_transport(
        resource,
        sim=_sim_lab(resource, sim_seed),
        visa_library=visa_library,
        timeout_s=timeout,
        baudrate=baudrate,
    )
    try:
        idn = transport.query("*IDN?").strip()
    finally:
        transport.close()
    emit_result({"resource": resource, "idn": idn}, as_json, json_out)
    if not as_json:
        typer.echo(idn)


@app.command("pulse")
def pulse_cmd(
    resource: Annotated[str, typer.Argument(help="VISA resource name or serial port / URL.")],
    out: Annotated[Path, typer.Option("--out", help="HDF5 trace to write (t_s, i_a), flushed as taken.")],
    amplitude: Annotated[float, typer.Option("--amplitude", help="Pulse amplitude, V.")] = 1.5,
    width: Annotated[float, typer.Option("--width", help="Pulse width, s.")] = 100e-6,
    read: Annotated[float, typer.Option("--read", help="Read voltage, V.")] = 0.1,
    every: Annotated[
        float, typer.Option("--every", help="Read interval, s (at least one reading: NPLC / mains + ~1 ms).")
    ] = 0.05,
    count: Annotated[int, typer.Option("--count", min=1, help="Number of readings.")] = 1000,
    nplc: Annotated[
        float,
        typer.Option("--nplc", help="SMU integration per reading, power-line cycles (1 = 20 ms at 50 Hz)."),
    ] = 1.0,
    compliance: Annotated[float, typer.Option("--compliance", help="Current compliance, A.")] = 1e-4,
    limits_file: Annotated[
        Path | None, typer.Option("--limits", help="Safety limits (.toml / .json); default: conservative.")
    ] = None,
    row: Annotated[int | None, typer.Option("--row", help="Device row (crossbar controllers only).")] = None,
    col: Annotated[
        int | None, typer.Option("--col", help="Device column (crossbar controllers only).")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save a PNG of the trace here.")] = None,
    visa_library: VisaLibrary = "",
    sim_seed: SimSeed = 0,
    baudrate: Baudrate = 115_200,
    allow_v1_pulses: AllowV1Pulses = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (settings, readings, current span).")
    ] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Apply one pulse, then take a timed read train of the device's current; write it to ``--out``."""
    from drivers import CrossbarController, SafetyError, SafetyLimits, Smu, open_instrument
    from drivers.smu import MAX_TRAIN_POINTS
    from drivers.trace import TraceWriter

    limits = SafetyLimits.load(limits_file) if limits_file is not None else SafetyLimits.conservative()
    source = str(limits_file) if limits_file is not None else "conservative defaults"
    console.print(f"safety limits ({source}): {limits.summary()}", soft_wrap=True)
    limits.check_pulse(amplitude, width)  # refuse before opening anything or creating the file
    limits.check_voltage(read, "read voltage")
    limits.check_compliance(compliance)
    if not every > 0:
        raise HwloopError(f"--every must be a positive interval in seconds, got {every:g}")
    if count > MAX_TRAIN_POINTS:
        raise HwloopError(f"--count must be at most {MAX_TRAIN_POINTS} (the SMUs' buffer), got {count}")
    inst = open_instrument(
        resource,
        limits,
        sim=_sim_lab(resource, sim_seed),
        visa_library=visa_library,
        baudrate=baudrate,
        allow_v1_pulses=allow_v1_pulses,
    )
    with inst:
        if not isinstance(inst, Smu) and (row is None or col is None):
            raise HwloopError("a crossbar controller needs --row and --col to address one device")
        if isinstance(inst, CrossbarController):
            inst.check_pulses_allowed()  # before the trace file exists
        attrs = {
            "resource": resource,
            "idn": inst.identify(),
            "driver": type(inst).__name__,
            "amplitude_v": amplitude,
            "width_s": width,
            "read_v": read,
            "every_s": every,
            "count": count,
            "compliance_a": compliance,
            "limits": json.dumps(limits.model_dump()),
        }
        inst.set_compliance(compliance)
        if isinstance(inst, Smu):  # refuse a train the SMU cannot time before the pulse it would record
            inst.nplc = nplc
            try:
                inst.check_read_train(read, every, count)
            except SafetyError as exc:
                raise HwloopError(f"--every: {exc}") from None
            attrs["nplc"] = nplc
        with TraceWriter(out, attrs) as trace:
            if isinstance(inst, Smu):
                _smu_trace(inst, trace, amplitude, width, read, every, count)
            else:
                assert row is not None and col is not None
                _controller_trace(inst, trace, row, col, amplitude, width, read, every, count)
    console.print(f"wrote {out}")
    if plot is not None:
        _plot(out, plot)
        console.print(f"wrote {plot}")
    if as_json or json_out is not None:
        emit_result(_summary(out, plot), as_json, json_out)


def _summary(trace_path: Path, plot: Path | None) -> dict[str, object]:
    """What a pulse command measured, read back from the trace file it wrote."""
    from drivers.trace import read_trace

    t_s, i_a, attrs = read_trace(trace_path)
    settings = ("resource", "idn", "driver", "amplitude_v", "width_s", "read_v", "every_s", "compliance_a")
    return {
        **{key: attrs[key].item() if hasattr(attrs[key], "item") else attrs[key] for key in settings},
        "readings": len(t_s),
        "t_span_s": float(t_s[-1] - t_s[0]) if len(t_s) else 0.0,
        "i_first_a": float(i_a[0]) if len(i_a) else None,
        "i_last_a": float(i_a[-1]) if len(i_a) else None,
        "out": str(trace_path),
        "plot": str(plot) if plot is not None else None,
    }


def _smu_trace(
    smu: Smu, trace: TraceWriter, amplitude: float, width: float, read: float, every: float, n: int
) -> None:
    from drivers import ComplianceError

    smu.pulse(amplitude, width)
    try:
        train = smu.read_train(read, every, n)
    except ComplianceError as exc:  # keep what was measured, then report
        if exc.t_s is not None:
            trace.append(exc.t_s, exc.i_a)
        raise
    trace.append(train.t_s, train.i_a)
    console.print(
        f"{smu.model}: {amplitude:g} V x {width:g} s pulse, {n} readings at {read:g} V over "
        f"{train.t_s[-1]:.4g} s (instrument time); current {train.i_a[0]:.4g} -> {train.i_a[-1]:.4g} A",
        soft_wrap=True,
    )


def _controller_trace(
    xbar: ArrayController,
    trace: TraceWriter,
    row: int,
    col: int,
    amplitude: float,
    width: float,
    read: float,
    every: float,
    n: int,
) -> None:
    xbar.pulse_device(row, col, amplitude, width)
    t0: float | None = None
    first = last = 0.0
    for k in range(n):
        reading = xbar.read_device(row, col, read)
        t0 = reading.t_s if t0 is None else t0
        trace.append(reading.t_s - t0, reading.i_a)
        first = reading.i_a if k == 0 else first
        last = reading.i_a
        if k + 1 < n:
            xbar.wait(every)
    console.print(
        f"controller: {amplitude:g} V x {width:g} s pulse on ({row}, {col}), {n} reads at {read:g} V; "
        f"current {first:.4g} -> {last:.4g} A",
        soft_wrap=True,
    )


def _plot(trace_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from drivers.trace import read_trace

    t_s, i_a, attrs = read_trace(trace_path)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.plot(t_s, np.asarray(i_a) * 1e9, ".", ms=2)
    ax.set_xlabel("time since first reading (s)")
    ax.set_ylabel("current (nA)")
    pulse = f"{attrs.get('amplitude_v', 0):g} V x {attrs.get('width_s', 0):g} s pulse"
    ax.set_title(f"{attrs.get('driver', '')}: {pulse}, read at {attrs.get('read_v', 0):g} V", fontsize=9)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
