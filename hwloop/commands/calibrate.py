"""``hwloop calibrate``: measure an array's decay and pulse response (crossbar controller) or one device's
decay versus bias (SMU), fit them, report them."""

from __future__ import annotations

import json
import math
import shlex
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hwloop.commands.common import JsonOutOpt, console, emit_result, progress_bar
from hwloop.errors import HwloopError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from calibration.campaign import Campaign, CampaignConfig
    from calibration.smu_campaign import SmuCampaign, SmuCampaignConfig
    from calibration.storage import CampaignFile
    from device_models.record import CalibrationRecord
    from drivers import ArrayController, Smu

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

# The decay laws of calibration.fit.MODELS, mirrored for the --model help so that `--help` need not
# import the fitting code (fit_cmd checks against the owner's tuple); tests/test_cli_imports.py checks
# that they still match.
MODELS = ("exp", "biexp", "stretched", "compressed", "auto")


def _read_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text()
        return dict(tomllib.loads(text) if path.suffix == ".toml" else json.loads(text))
    except FileNotFoundError:
        raise HwloopError(f"campaign config {path} does not exist") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise HwloopError(f"campaign config {path} is not valid {path.suffix[1:]}: {exc}") from None


def _numbers(option: str, value: str | None, kind: type = float) -> list[Any] | None:
    """A comma-separated option value as numbers, or None if the option was not given."""
    import numpy as np

    if value is None:
        return None
    try:
        numbers = [kind(x) for x in value.split(",")]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise HwloopError(f"{option} must be comma-separated {what}, got {value!r}") from None
    if not all(np.isfinite(numbers)):
        raise HwloopError(f"{option} must be finite numbers, got {value!r}")
    return numbers


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise HwloopError(f"campaign config: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


def _load_config(path: Path | None, rows: str | None, cols: str | None) -> CampaignConfig:
    from calibration.campaign import CampaignConfig

    data = _read_config_file(path)
    for key, value in (("rows", rows), ("cols", cols)):
        if (numbers := _numbers(f"--{key}", value, int)) is not None:
            data[key] = numbers
    config: CampaignConfig = _validated(CampaignConfig, data)
    return config


def _load_smu_config(path: Path | None, overrides: dict[str, Any]) -> SmuCampaignConfig:
    from calibration.smu_campaign import SmuCampaignConfig

    data = _read_config_file(path)
    protocol = dict(data.get("bias_decay") or {})
    protocol.update({k: v for k, v in overrides.items() if v is not None})
    config: SmuCampaignConfig = _validated(SmuCampaignConfig, {**data, "bias_decay": protocol})
    return config


def _campaign(
    inst: Smu | ArrayController,
    store: CampaignFile,
    config: CampaignConfig | SmuCampaignConfig,
    resource: str,
) -> Campaign | SmuCampaign:
    from calibration.campaign import Campaign, CampaignConfig
    from calibration.smu_campaign import SmuCampaign, SmuCampaignConfig
    from drivers import ArrayController, Smu

    if isinstance(inst, Smu) and isinstance(config, SmuCampaignConfig):
        return SmuCampaign(inst, store, config)
    if isinstance(inst, ArrayController) and isinstance(config, CampaignConfig):
        return Campaign(inst, store, config)
    kind = "an SMU" if isinstance(inst, Smu) else "a crossbar controller"
    raise HwloopError(f"{resource} is {kind}, which this campaign configuration does not fit")


@app.command("run")
def run_cmd(
    out: Annotated[Path, typer.Option("--out", help="Campaign file to write (HDF5).")],
    resource: Annotated[
        str,
        typer.Option(
            "--resource",
            help="Crossbar controller (serial port or URL, e.g. xbarsim://ROWSxCOLS?seed=N) or an SMU "
            "VISA resource (e.g. TCPIP::k2450.sim::INSTR) for decay versus bias on one device.",
        ),
    ] = "xbarsim://8x8?seed=1",
    limits_file: Annotated[
        Path | None,
        typer.Option("--limits", help="Safety limits (TOML/JSON); required for real instruments."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="Campaign configuration (TOML/JSON).")
    ] = None,
    rows: Annotated[
        str | None, typer.Option("--rows", help="Rows to measure, e.g. 0,1,2 (default all).")
    ] = None,
    cols: Annotated[str | None, typer.Option("--cols", help="Columns to measure (default all).")] = None,
    biases: Annotated[
        str | None,
        typer.Option("--biases", help="SMU only: decay (= read) biases in V, e.g. 0.1,0.2,0.3."),
    ] = None,
    amplitudes: Annotated[
        str | None, typer.Option("--amplitudes", help="SMU only: potentiating pulse amplitudes, V.")
    ] = None,
    widths: Annotated[
        str | None, typer.Option("--widths", help="SMU only: potentiating pulse widths, s.")
    ] = None,
    cycles: Annotated[
        int | None, typer.Option("--cycles", help="SMU only: repeats of every condition.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted campaign in --out.")
    ] = False,
    allow_v1_pulses: Annotated[
        bool,
        typer.Option(
            "--allow-v1-pulses",
            help="Pulse a crossbar controller that speaks only protocol v1 (no CRC, no echo).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {out, units_measured, limits} as JSON.")
    ] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Run a campaign: decay + pulse response over an array (crossbar controller), or decay versus
    bias on one device (SMU). Every measurement is flushed as it is taken."""
    from calibration.campaign import check_limits
    from calibration.smu_campaign import SMU_SHAPE, SmuCampaignConfig, check_smu_limits
    from calibration.storage import CampaignFile
    from drivers import InstrumentError, SafetyLimits, Smu, open_instrument
    from drivers.factory import is_serial, is_simulated

    smu_options = {"--biases": biases, "--amplitudes": amplitudes, "--widths": widths, "--cycles": cycles}
    if is_serial(resource):
        given = [name for name, value in smu_options.items() if value is not None]
        if given:
            raise HwloopError(
                f"{', '.join(given)} need an SMU resource: a crossbar controller holds its idle lines at 0 V "
                "(set the array protocols with --config)"
            )
        config: CampaignConfig | SmuCampaignConfig = _load_config(config_file, rows, cols)
    else:
        if rows is not None or cols is not None:
            raise HwloopError("--rows/--cols select devices of an array; an SMU measures one device")
        config = _load_smu_config(
            config_file,
            {
                "biases_v": _numbers("--biases", biases),
                "amplitudes_v": _numbers("--amplitudes", amplitudes),
                "widths_s": _numbers("--widths", widths),
                "cycles": cycles,
            },
        )
    if limits_file is None:
        if not is_simulated(resource):
            raise HwloopError("real instruments need --limits FILE (your SafetyLimits); none are assumed")
        limits = SafetyLimits.conservative()
    else:
        limits = SafetyLimits.load(limits_file)
    if isinstance(config, SmuCampaignConfig):
        check_smu_limits(config, limits)
    else:
        check_limits(config, limits)
    kept: tuple[int, int] | None = None  # (units in the file, units planned) when Ctrl-C stops the run
    try:
        with open_instrument(resource, limits, allow_v1_pulses=allow_v1_pulses) as inst:
            shape = SMU_SHAPE if isinstance(inst, Smu) else (inst.rows, inst.cols)
            dump = config.model_dump(mode="json")
            if resume:
                store = CampaignFile.resume(out, config=dump)
            else:
                store = CampaignFile.create(
                    out, config=dump, shape=shape, safety_limits=limits.model_dump(mode="json")
                )
            with store, progress_bar() as bar:
                if store.shape != shape:
                    raise HwloopError(f"{out} holds a {store.shape} array but {resource} is {shape}")
                campaign = _campaign(inst, store, config, resource)
                task = bar.add_task("measuring", total=len(campaign.units()))
                try:
                    measured = campaign.run(lambda done, total: bar.update(task, completed=done))
                except InstrumentError as exc:
                    raise HwloopError(
                        f"campaign interrupted: {exc}; everything measured so far is saved in {out}; "
                        "continue with --resume"
                    ) from None
                except KeyboardInterrupt:
                    kept = (campaign.completed(), len(campaign.units()))
                    raise  # on through the instrument, which returns its outputs to 0 V / off
    except KeyboardInterrupt:
        if kept is None:
            raise
        again = [*sys.argv[1:], *([] if resume else ["--resume"])]
        console.print(
            f"interrupted: {kept[0]} of {kept[1]} units are saved in {out} (a unit cut short is measured "
            f"again); continue with: hwloop {shlex.join(again)}",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    console.print(f"measured {measured} units into {out} (limits: {limits.summary()})")
    summary = {"out": str(out), "units_measured": measured, "limits": limits.model_dump()}
    emit_result(summary, as_json, json_out)


@app.command("import")
def import_cmd(
    files: Annotated[list[Path], typer.Argument(help="Trace files: .csv (one or many traces), .npz, .h5.")],
    out: Annotated[Path, typer.Option("--out", help="Campaign file to write (HDF5), for fit/report/map.")],
    time: Annotated[
        str | None, typer.Option("--time", help="Time column (name or 0-based index) or array key.")
    ] = None,
    time_unit: Annotated[str, typer.Option("--time-unit", help="s, ms or us.")] = "s",
    conductance: Annotated[
        str | None, typer.Option("--conductance", help="Conductance column or key (default: 2nd column).")
    ] = None,
    conductance_unit: Annotated[str, typer.Option("--conductance-unit", help="S, mS, uS or nS.")] = "S",
    current: Annotated[
        str | None, typer.Option("--current", help="Current column or key, instead of a conductance.")
    ] = None,
    current_unit: Annotated[str, typer.Option("--current-unit", help="A, mA, uA or nA.")] = "A",
    read_voltage: Annotated[
        float | None, typer.Option("--read-voltage", help="Read voltage of --current, V (g = i / V).")
    ] = None,
    current_sign: Annotated[
        str,
        typer.Option(
            "--current-sign", help="as-measured, or flip for SMUs that report inflowing current < 0."
        ),
    ] = "as-measured",
    device: Annotated[str | None, typer.Option("--device", help="Column or key with device ids.")] = None,
    condition: Annotated[
        str | None, typer.Option("--condition", help="Column or key with conditions.")
    ] = None,
    cycle: Annotated[str | None, typer.Option("--cycle", help="Column or key with cycle numbers.")] = None,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            help="Regex over file names with groups device, row, col, condition, cycle, e.g. "
            "'r(?P<row>\\d+)c(?P<col>\\d+)_(?P<condition>.+)'.",
        ),
    ] = None,
    shape: Annotated[
        str | None, typer.Option("--shape", help="Array ROWSxCOLS the devices belong to (default: inferred).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Import relaxation traces measured elsewhere (CSV, NPZ, HDF5) into a campaign file."""
    from calibration.importer import ImportSpec, import_files

    dims = None
    if shape is not None:
        rows_text, _, cols_text = shape.lower().partition("x")
        if not (rows_text.isdigit() and cols_text.isdigit()):
            raise HwloopError(f"--shape must be ROWSxCOLS, e.g. 16x16, got {shape!r}")
        dims = (int(rows_text), int(cols_text))
    spec = ImportSpec(
        time=time,
        conductance=conductance,
        current=current,
        read_v=read_voltage,
        time_unit=time_unit,
        conductance_unit=conductance_unit,
        current_unit=current_unit,
        current_sign=current_sign,
        device=device,
        condition=condition,
        cycle=cycle,
        pattern=pattern,
        shape=dims,
    )
    summary = import_files(files, out, spec)
    if "relaxations" in summary:
        console.print(
            f"imported {summary['relaxations']} relaxations of {summary['devices']} devices "
            f"({len(summary['conditions'])} condition(s)) from {summary['files']} file(s) into {out}"
        )
    else:
        console.print(f"converted {files[0]} (campaign format version 1) into {out}")
    console.print(f"next: hwloop calibrate fit {out} --out record.json")
    emit_result(summary, as_json, json_out)


@app.command("fit")
def fit_cmd(
    data: Annotated[Path, typer.Argument(help="Campaign file (HDF5): `calibrate run` or `import`.")],
    out: Annotated[Path, typer.Option("--out", help="Calibration record to write (JSON).")],
    model: Annotated[str, typer.Option("--model", help=f"Decay law: {', '.join(MODELS)}.")] = "auto",
    dt: Annotated[
        float, typer.Option("--dt", help="STPN time step the summary's lambda is shown at, s.")
    ] = 0.1,
    horizon: Annotated[
        int, typer.Option("--horizon", min=1, help="Steps over which non-exp laws are matched.")
    ] = 100,
    bias: Annotated[
        float | None,
        typer.Option("--bias", help="SMU campaigns: measured bias (V) the record's tau/lambda hold at."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print a JSON summary (devices, laws, tau, lambda).")
    ] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Fit every relaxation and pulse response of a campaign into a per-device calibration record."""
    from calibration.analysis import build_record
    from calibration.fit import MODELS
    from calibration.report import summary_text
    from calibration.storage import CampaignFile

    if model not in MODELS:
        raise HwloopError(f"unknown decay model {model!r}; choose one of {', '.join(MODELS)}")
    if not (dt > 0 and math.isfinite(dt)):
        raise HwloopError(f"--dt must be a positive number of seconds, got {dt}")
    CampaignFile(data).close()  # a missing or foreign file fails here, before any progress output
    with progress_bar() as bar:
        task = bar.add_task("fitting", total=None)
        record, _ = build_record(
            data,
            model=model,
            horizon_steps=horizon,
            bias_v=bias,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    record.save(out)
    console.print(summary_text(record, dt))
    console.print(f"wrote {out}")
    if as_json or json_out is not None:
        emit_result(_fit_summary(record, out, dt), as_json, json_out)


def _fit_summary(record: CalibrationRecord, out: Path, dt_s: float) -> dict[str, Any]:
    """Devices, usable count, laws and the median / range of tau (s) and of lambda at dt_s."""
    import numpy as np

    good = record.good()
    tau, lam = record.array("tau_s")[good], record.lam_at(dt_s)[good]
    laws: dict[str, int] = {}
    for law, ok in zip(record.law, good, strict=True):
        if ok:
            laws[str(law)] = laws.get(str(law), 0) + 1

    def spread(values: Any) -> dict[str, float] | None:
        return (
            None
            if values.size == 0
            else {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}
        )

    return {
        "record": str(out),
        "devices": record.n_devices,
        "usable": int(good.sum()),
        "dt_s": dt_s,
        "laws": laws,
        "tau_s": spread(tau),
        "lam": spread(lam),
    }


@app.command("report")
def report_cmd(
    record_path: Annotated[Path, typer.Argument(help="Calibration record (JSON).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs and summary.txt.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Campaign file for trace plots (default: the record's source)."),
    ] = None,
) -> None:
    """Plot decay fits, the fits that failed (with residuals, verdict and tests), tau/lambda histograms and
    pulse responses, and write a text summary."""
    from calibration.report import write_report
    from device_models.record import CalibrationError, CalibrationRecord

    record = CalibrationRecord.load(record_path)
    if data is None and record.provenance.source_file and Path(record.provenance.source_file).exists():
        data = Path(record.provenance.source_file)
    if data is not None and not data.exists():
        raise CalibrationError(f"campaign file {data} does not exist")
    written = write_report(record, out, data)
    console.print((out / "summary.txt").read_text().rstrip(), markup=False, highlight=False)
    for path in written:
        console.print(f"wrote {path}")


@app.command("map")
def map_cmd(
    record_path: Annotated[Path, typer.Argument(help="Calibration record (JSON).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for mapping.json, mapping.safetensors, PNG.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Trained STPN (ART checkpoint; default: the shipped one)."),
    ] = None,
    dt: Annotated[float, typer.Option("--dt", help="Time step of the run on the array, s.")] = 0.1,
    amplitude: Annotated[
        str | None,
        typer.Option(
            "--amplitude",
            help="Write-pulse amplitude range MIN,MAX in V [default: the card's threshold..v_max].",
        ),
    ] = None,
    width: Annotated[
        str, typer.Option("--width", help="Write-pulse width range MIN,MAX in s.")
    ] = "1e-6,1e-3",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synapse -> device draw.")] = 0,
    card: Annotated[
        Path | None, typer.Option("--card", help="Device card: the bias window (default: the shipped one).")
    ] = None,
    bias: Annotated[
        str, typer.Option("--bias", help="How decay biases are held: lines, rows, device or none.")
    ] = "lines",
    as_json: Annotated[bool, typer.Option("--json", help="Print the mapping summary as JSON.")] = False,
    json_out: JsonOutOpt = None,
) -> None:
    """How far a trained STPN's lambda and gamma are from what the calibrated array realises, per synapse.

    The same realisation as every backend (``device_models.realisation``): the devices are biased for
    the trained lambdas inside the card's bias window, by line voltages (default) or as --bias says."""
    import numpy as np
    from safetensors.numpy import save_file

    from calibration.mapping import PulseWindow, map_stpn
    from calibration.report import mapping_plot
    from device_models.bias_lines import check_topology
    from device_models.card import load_card
    from device_models.record import CalibrationRecord
    from experiments.art import DEFAULT_CHECKPOINT, load_model

    record = CalibrationRecord.load(record_path)
    device_card = load_card(card)
    try:
        (w_lo, w_hi) = (float(x) for x in width.split(","))
        window = PulseWindow.of_card(device_card, w_lo, w_hi)
        if amplitude is not None:
            (a_lo, a_hi) = (float(x) for x in amplitude.split(","))
            window = PulseWindow(a_lo, a_hi, w_lo, w_hi)
    except ValueError:
        raise HwloopError("--amplitude and --width take two numbers MIN,MAX") from None
    layer = load_model(checkpoint or DEFAULT_CHECKPOINT).stpn
    mapping = map_stpn(layer, record, dt, window, seed=seed, card=device_card, bias=check_topology(bias))
    out.mkdir(parents=True, exist_ok=True)
    summary = mapping.summary()
    known = {key: (value if np.isfinite(value) else None) for key, value in summary.items()}  # JSON: null
    (out / "mapping.json").write_text(json.dumps(known, indent=2) + "\n")
    arrays = {
        k: getattr(mapping, k).astype(np.float64)
        for k in ("lam_trained", "lam_hardware", "gamma_trained", "gamma_hardware", "decay_bias_v")
    }
    save_file(
        {**arrays, "gamma_in_range": mapping.gamma_in_range.astype(np.uint8)},
        str(out / "mapping.safetensors"),
    )
    mapping_plot(mapping, out / "mapping.png")
    for key, value in known.items():
        console.print(f"{key:<28} {'not measured (no pulse response)' if value is None else f'{value:.4g}'}")
    console.print(f"wrote {out / 'mapping.json'}, {out / 'mapping.safetensors'}, {out / 'mapping.png'}")
    emit_result(known, as_json, json_out)
