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
    progress_bar,
)
from hwloop.errors import HwloopError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

# Option defaults, mirrored from experiments.art so that `--help` need not import torch (the commands
# import the owners' values); tests/test_cli_imports.py checks that they still match.
ARCHS = ("stpn", "lstm")
BATCH_SIZE, EPOCHS, TRAIN_SIZE = 128, 40, 100_000
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
) -> None:
    """Train an ART model (batch 128, Adam 1e-3) and write its checkpoint and training record."""
    import torch

    from experiments.art import save_checkpoint
    from experiments.art.evaluate import TEST_SIZE
    from experiments.art.model import ARCHS
    from experiments.art.train import BATCH_SIZE, EpochLog, make_record, train

    if model not in ARCHS:
        raise HwloopError(f"unknown ART model {model!r}; choose one of: {', '.join(ARCHS)}")
    if out.suffix != ".safetensors":
        raise HwloopError(f"--out must end in .safetensors, got {out}")
    torch.set_num_threads(threads)
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
        )
    save_checkpoint(net, out)
    command = ["hwloop", "art", "train", "--model", model, "--epochs", str(epochs), "--seed", str(seed)]
    command += ["--hidden", str(net.hidden_size), "--train-size", str(train_size), "--threads", str(threads)]
    reproduce = shlex.join([*command, "--out", str(out)])
    record = make_record(net, history, wall, seed=seed, train_size=train_size, reproduce=reproduce)
    record_path = out.with_suffix(".json")
    record_path.write_text(record.model_dump_json(indent=2) + "\n")
    console.print(
        f"{net.label}: test accuracy {record.test_accuracy:.4f} on {TEST_SIZE} sequences; wrote {out}"
    )
    emit_result(json.loads(record.model_dump_json()), as_json, json_out)


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
