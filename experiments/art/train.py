"""Training an ART model by BPTT: batch 128, Adam lr 1e-3, cross-entropy at the last step (as the paper).

The training set is fixed (100,000 sequences by default, as Ba et al. 2016) and reshuffled every
epoch; a 10,000-sequence validation set is scored after every epoch. Everything random (data,
initialisation, shuffling) follows from one seed.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch
from pydantic import BaseModel

from experiments.art.data import make_split
from experiments.art.evaluate import TEST_SEED, TEST_SIZE, accuracy, fresh_accuracy
from experiments.art.model import Arch, ARTModel
from hwloop.crossbar import Crossbar
from hwloop.errors import HwloopError

BATCH_SIZE = 128
LEARNING_RATE = 1e-3
TRAIN_SIZE = 100_000  # as Ba et al. 2016
VAL_SIZE = 10_000
EPOCHS = 40  # what the shipped STPN-11 and LSTM-9 were trained for


class EpochLog(BaseModel):
    """One epoch: mean training cross-entropy (nats), validation accuracy, wall time (s)."""

    epoch: int
    train_loss: float
    val_accuracy: float
    seconds: float


class TrainingRecord(BaseModel):
    """What a training run was and reached; stored as JSON beside its checkpoint."""

    model: str
    arch: Arch
    hidden_size: int
    reproduce: str
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    train_size: int
    val_size: int
    test_size: int
    test_seed: int
    final_train_loss: float
    val_accuracy: float
    test_accuracy: float
    wall_time_s: float
    torch_threads: int
    torch_version: str
    python_version: str
    history: list[EpochLog]
    hardware_aware: dict[str, object] | None = None  # training backend, its options and lambda range


def train(
    arch: Arch,
    epochs: int,
    seed: int,
    *,
    hidden_size: int | None = None,
    train_size: int = TRAIN_SIZE,
    val_size: int = VAL_SIZE,
    on_step: Callable[[], None] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    backend: Crossbar | None = None,
    lambda_range: tuple[float, float] | None = None,
    init: ARTModel | None = None,
    learning_rate: float = LEARNING_RATE,
    keep: Callable[[ARTModel], None] | None = None,
) -> tuple[ARTModel, list[EpochLog], float]:
    """Train a fresh ``arch`` model for ``epochs`` epochs; returns it, the epoch logs and wall time (s).

    Hardware-aware training: ``lambda_range`` bounds lambda (``hwloop.stpn.STPN``) and ``backend``
    (e.g. ``hwloop.backends.aware.AwareCrossbar``) holds the STPN's synapses during training and
    validation; the returned model is back on the ideal backend. ``init``: a model to start from
    (its parameters are copied; a free lambda is clipped into ``lambda_range``). ``keep(model)`` is
    called after every epoch (e.g. to save a checkpoint while a long run goes on).
    """
    torch.manual_seed(seed)
    model = ARTModel(arch, hidden_size, lambda_range=lambda_range)
    if init is not None:
        copy_parameters(init, model)
    if backend is not None:
        model.set_backend(backend)
    data, val = make_split(train_size, seed, "train"), make_split(val_size, seed, "val")
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history: list[EpochLog] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        t0, total = time.perf_counter(), 0.0
        order = torch.randperm(train_size, generator=shuffle)
        for i in range(0, train_size, BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            loss = torch.nn.functional.cross_entropy(model(data.xs[idx]), data.ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            if on_step is not None:
                on_step()
        log = EpochLog(
            epoch=epoch,
            train_loss=total / train_size,
            val_accuracy=accuracy(model, val),
            seconds=time.perf_counter() - t0,
        )
        history.append(log)
        if on_epoch is not None:
            on_epoch(log)
        if keep is not None:
            keep(model)
    if backend is not None:
        model.set_backend("ideal")
    return model.eval(), history, time.perf_counter() - start


def copy_parameters(src: ARTModel, dst: ARTModel) -> None:
    """Copy ``src``'s parameters into ``dst`` (same architecture and size).

    Into a bounded-lambda STPN a free lambda is clipped into its range (``STPN.bounded_copy``).
    """
    if (src.arch, src.hidden_size) != (dst.arch, dst.hidden_size):
        raise HwloopError(f"cannot start a {dst.label} from a {src.label} model")
    with torch.no_grad():
        if dst.arch == "stpn" and dst.stpn.bounded and not src.stpn.bounded:
            range_ = dst.stpn.lambda_range
            assert range_ is not None
            bounded = src.stpn.bounded_copy(range_)
            dst.recurrent.load_state_dict(bounded.state_dict())
            dst.readout.load_state_dict(src.readout.state_dict())
        else:
            dst.load_state_dict(src.state_dict())


def make_record(
    model: ARTModel,
    history: list[EpochLog],
    wall_time_s: float,
    *,
    seed: int,
    train_size: int,
    reproduce: str,
    learning_rate: float = LEARNING_RATE,
) -> TrainingRecord:
    """The record of a finished run, scored on ``TEST_SIZE`` fresh test sequences (stream ``TEST_SEED``)."""
    return TrainingRecord(
        model=model.label,
        arch=model.arch,
        hidden_size=model.hidden_size,
        reproduce=reproduce,
        seed=seed,
        epochs=len(history),
        batch_size=BATCH_SIZE,
        learning_rate=learning_rate,
        train_size=train_size,
        val_size=VAL_SIZE,
        test_size=TEST_SIZE,
        test_seed=TEST_SEED,
        final_train_loss=history[-1].train_loss,
        val_accuracy=history[-1].val_accuracy,
        test_accuracy=fresh_accuracy(model, TEST_SIZE, TEST_SEED),
        wall_time_s=wall_time_s,
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        history=history,
    )
