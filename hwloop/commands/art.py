"""``hwloop art``: train and evaluate associative-retrieval models (Ba et al. 2016)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hwloop.commands.common import (
    AwareBackendOptionOpt,
    BackendOpt,
    BackendOptionOpt,
    BackendSeedOpt,
    CalibrationOpt,
    CardOpt,
    JsonOpt,
    JsonOutOpt,
    backend_from_options,
    console,
    emit_result,
    parse_backend_options,
    progress_bar,
)
from hwloop.errors import HwloopError

DEFAULT_CHIP_SEED = 10_000  # hardware-aware training chips: seeds 10000, 10001, ... (evaluation uses 0-4)

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

# Option defaults, mirrored from experiments.art so that `--help` need not import torch (the commands
# import the owners' values); tests/test_cli_imports.py checks that they still match.
ARCHS = ("stpn", "lstm")
BATCH_SIZE, EPOCHS, TRAIN_SIZE, LEARNING_RATE = 128, 40, 100_000, 1e-3
TEST_SEED, TEST_SIZE = 0, 20_000
DEFAULT_CHECKPOINT = (
    Path(__file__).resolve().parents[2] / "experiments" / "art" / "checkpoints" / "stpn11.safetensors"
)


@app.command("train")
def train_cmd(
    out: Annotated[
        Path,
        typer.Option("--out", help="Checkpoint to write (.safetensors); the record goes beside it as .json."),
    ],
    model: Annotated[str, typer.Option("--model", help=f"Architecture: {' or '.join(ARCHS)}.")] = "stpn",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training set.")] = EPOCHS,
    seed: Annotated[int, typer.Option("--seed", help="Seeds data, initialisation and shuffling.")] = 0,
    hidden: Annotated[
        int | None, typer.Option("--hidden", min=1, help="Hidden units (default: STPN 11, LSTM 9).")
    ] = None,
    train_size: Annotated[
        int, typer.Option("--train-size", min=BATCH_SIZE, help="Fixed training-set size.")
    ] = TRAIN_SIZE,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the training record as JSON on stdout.")
    ] = False,
    json_out: JsonOutOpt = None,
    hardware_aware: Annotated[
        bool,
        typer.Option(
            "--hardware-aware",
            help="Train through the device non-idealities (backend 'aware', lambda in the card's range).",
        ),
    ] = False,
    card: Annotated[
        Path | None, typer.Option("--card", help="Hardware-aware: device card (default: the shipped card).")
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="Hardware-aware: calibration record (JSON).")
    ] = None,
    backend_seed: Annotated[
        int | None,
        typer.Option(
            "--backend-seed", help="Hardware-aware: first chip seed (one chip per batch; default 10000)."
        ),
    ] = None,
    dt_s: Annotated[
        float, typer.Option("--dt-s", min=0.0, help="Hardware-aware: seconds per STPN step.")
    ] = 0.1,
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from this ART checkpoint instead of a fresh model.")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam step size.")] = LEARNING_RATE,
    lambda_range_text: Annotated[
        str | None,
        typer.Option(
            "--lambda-range",
            help="Hardware-aware: LO,HI bounds of lambda (default: the realisation's trainable range).",
        ),
    ] = None,
    backend_option: AwareBackendOptionOpt = None,
) -> None:
    """Train an ART model (batch 128, Adam 1e-3) and write its checkpoint and training record."""
    import torch

    from experiments.art import load_model, save_checkpoint
    from experiments.art.evaluate import TEST_SIZE
    from experiments.art.model import ARCHS
    from experiments.art.train import BATCH_SIZE, EpochLog, make_record, train

    if model not in ARCHS:
        raise HwloopError(f"unknown ART model {model!r}; choose one of: {', '.join(ARCHS)}")
    if out.suffix != ".safetensors":
        raise HwloopError(f"--out must end in .safetensors, got {out}")
    if not hardware_aware and (card, calibration, backend_seed, backend_option) != (None,) * 4:
        raise HwloopError(
            "--card, --calibration, --backend-seed and --backend-option apply only with --hardware-aware"
        )
    if hardware_aware and model != "stpn":
        raise HwloopError("--hardware-aware trains an STPN: use --model stpn")
    torch.set_num_threads(threads)
    aware_backend, lambda_range, aware_info = None, None, None
    if hardware_aware:
        from hwloop.backends.aware import AwareCrossbar, trainable_lambda_range

        built = backend_from_options(
            "aware",
            card=card,
            calibration=calibration,
            seed=backend_seed,
            extra=backend_option,
            defaults={"seed": DEFAULT_CHIP_SEED, "dt_s": dt_s},
        )
        assert isinstance(built, AwareCrossbar)
        aware_backend = built
        if lambda_range_text is None:
            h = hidden or 11
            shape = (h, 37 + h)
            lambda_range = trainable_lambda_range(aware_backend.card, aware_backend.dt_s, shape, calibration)
        else:
            lambda_range = _parse_range(lambda_range_text)
        aware_info = {
            "backend": "aware",
            "card": str(card) if card is not None else None,
            "calibration": str(calibration) if calibration is not None else None,
            "backend_seed": aware_backend.seed,
            "dt_s": aware_backend.dt_s,
            "lambda_range": list(lambda_range),
            "backend_options": parse_backend_options(backend_option or []),
            "chips_drawn": 0,
        }
    start_from = load_model(init) if init is not None else None
    steps_per_epoch = -(-train_size // BATCH_SIZE)

    def report(log: EpochLog) -> None:
        console.print(
            f"epoch {log.epoch:3d}  loss {log.train_loss:.4f}  "
            f"val acc {log.val_accuracy:.4f}  ({log.seconds:.0f} s)"
        )

    with progress_bar() as bar:
        task = bar.add_task(f"training {model}", total=epochs * steps_per_epoch)
        net, history, wall = train(
            model,  # type: ignore[arg-type]  # checked against ARCHS above
            epochs,
            seed,
            hidden_size=hidden,
            train_size=train_size,
            on_step=lambda: bar.advance(task),
            on_epoch=report,
            backend=aware_backend,
            lambda_range=lambda_range,
            init=start_from,
            learning_rate=lr,
            keep=lambda m: save_checkpoint(m, out),  # the latest epoch survives an interrupted run
        )
    save_checkpoint(net, out)
    command = ["hwloop", "art", "train", "--model", model, "--epochs", str(epochs), "--seed", str(seed)]
    command += ["--hidden", str(net.hidden_size), "--train-size", str(train_size), "--threads", str(threads)]
    if hardware_aware:
        assert aware_backend is not None and lambda_range is not None
        command += ["--hardware-aware", "--dt-s", repr(dt_s), "--backend-seed", str(aware_backend.seed)]
        command += ["--lambda-range", ",".join(repr(v) for v in lambda_range)]
        command += ["--card", str(card)] if card is not None else []
        command += ["--calibration", str(calibration)] if calibration is not None else []
        for option in backend_option or []:
            command += ["--backend-option", option]
    if init is not None:
        command += ["--init", str(init)]
    if lr != LEARNING_RATE:
        command += ["--lr", repr(lr)]
    reproduce = shlex.join([*command, "--out", str(out)])
    record = make_record(
        net, history, wall, seed=seed, train_size=train_size, reproduce=reproduce, learning_rate=lr
    )
    if aware_info is not None and aware_backend is not None:
        record.hardware_aware = {**aware_info, "chips_drawn": aware_backend.chips_drawn}
    record_path = out.with_suffix(".json")
    record_path.write_text(record.model_dump_json(indent=2) + "\n")
    console.print(
        f"{net.label}: test accuracy {record.test_accuracy:.4f} on {TEST_SIZE} sequences; wrote {out}"
    )
    emit_result(json.loads(record.model_dump_json()), as_json, json_out)


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise HwloopError(f"--lambda-range {text!r}: expected two numbers LO,HI, e.g. 0.4,0.98") from None
    if not 0.0 < lo < hi <= 1.0:
        raise HwloopError(f"--lambda-range {text!r}: need 0 < LO < HI <= 1")
    return lo, hi


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            help="ART checkpoint (.safetensors).",
            show_default="the shipped STPN-11, experiments/art/checkpoints/stpn11.safetensors",
        ),
    ] = DEFAULT_CHECKPOINT,
    backend: BackendOpt = "ideal",
    n: Annotated[int, typer.Option("--n", min=1, help="Fresh test sequences.")] = TEST_SIZE,
    seed: Annotated[int, typer.Option("--seed", help="Names the test-sequence stream.")] = TEST_SEED,
    card: CardOpt = None,
    calibration: CalibrationOpt = None,
    backend_seed: BackendSeedOpt = None,
    backend_option: BackendOptionOpt = None,
    as_json: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Accuracy of an ART checkpoint on fresh sequences, with its STPN layer on a crossbar backend."""
    from experiments.art import load_model
    from experiments.art.evaluate import fresh_accuracy

    net = load_model(checkpoint)
    options = {"card": card, "calibration": calibration, "seed": backend_seed, "extra": backend_option}
    if net.arch == "stpn":
        net.set_backend(
            backend_from_options(
                backend, card=card, calibration=calibration, seed=backend_seed, extra=backend_option
            )
        )
    elif backend != "ideal" or any(v is not None for v in options.values()):
        raise HwloopError(
            f"{checkpoint} holds an {net.label} model, which runs only digitally: use --backend ideal"
        )
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"evaluating {net.label} on {backend}", total=n)
        acc = fresh_accuracy(net, n, seed, on_chunk=lambda k: bar.advance(task, k))
    result = {
        "accuracy": acc,
        "n": n,
        "model": net.label,
        "checkpoint": str(checkpoint),
        "backend": backend,
        "backend_options": {key: value for key, value in options.items() if value is not None},
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "energy_joules": net.stpn.crossbar.energy() if net.arch == "stpn" else {},
    }
    emit_result(result, as_json, json_out)
    if not as_json:
        Console().print(
            f"{net.label} on [bold]{backend}[/]: accuracy [bold]{acc:.4f}[/] on {n} fresh sequences "
            f"(seed {seed}, {result['seconds']:.1f} s)"
        )
