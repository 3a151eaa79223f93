"""ART models and checkpoints: API round trip, shipped accuracy, one clear error for bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from experiments.art import DEFAULT_CHECKPOINT, ARTModel, load_model, save_checkpoint
from experiments.art.data import make_split
from experiments.art.train import TrainingRecord, train
from hwloop.errors import CheckpointError, HwloopError, ShapeError
from hwloop.stpn import STPN

SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789?"


def _accuracy_by_hand(model: ARTModel, n: int, seed: int) -> float:
    """Predicted digit vs the digit paired with the query letter, read from the decoded text."""
    data = make_split(n, seed, "test")
    with torch.no_grad():
        predicted = model(data.xs).argmax(dim=1).tolist()
    right = 0
    for row, guess in zip(data.xs.argmax(dim=2).tolist(), predicted, strict=True):
        text = "".join(SYMBOLS[i] for i in row)
        right += SYMBOLS[guess] == dict(zip(text[0:6:2], text[1:6:2], strict=True))[text[8]]
    return right / n


def test_shipped_checkpoint_reaches_099_on_fresh_sequences() -> None:
    model = load_model(DEFAULT_CHECKPOINT)
    assert isinstance(model.stpn, STPN) and model.label == "STPN-11"
    assert _accuracy_by_hand(model, 5000, seed=12345) >= 0.99


def test_shipped_record_matches_checkpoint() -> None:
    record = TrainingRecord.model_validate_json(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert record.model == "STPN-11" and record.test_accuracy >= 0.99
    assert record.reproduce.startswith("hwloop art train --model stpn")
    model = load_model(DEFAULT_CHECKPOINT)
    assert _accuracy_by_hand(model, record.test_size, record.test_seed) == pytest.approx(record.test_accuracy)


@pytest.mark.parametrize("arch", ["stpn", "lstm"])
def test_round_trip_keeps_outputs(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ARTModel(arch).eval()  # type: ignore[arg-type]
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = load_model(path)
    xs = make_split(64, 0, "test").xs
    with torch.no_grad():
        assert torch.equal(model(xs), loaded(xs))
    assert loaded(xs).shape == (64, 37) and loaded.label == model.label


@pytest.mark.parametrize("shape", [(4, 9, 36), (4, 37), (4, 8, 37), (9, 37, 4)])
def test_wrong_shaped_input_is_one_shape_error(shape: tuple[int, ...]) -> None:
    model = load_model(DEFAULT_CHECKPOINT)
    with pytest.raises(ShapeError) as info:
        model(torch.zeros(shape))
    assert "(B, 9, 37)" in str(info.value) and str(shape) in str(info.value) and "\n" not in str(info.value)


def _write(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> Path:
    save_file(tensors, str(path), metadata=meta)
    return path


def _bad_checkpoints(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    stpn9 = {k: v.contiguous() for k, v in ARTModel("stpn", 9).state_dict().items()}
    lstm = {k: v.contiguous() for k, v in ARTModel("lstm").state_dict().items()}
    good = ARTModel("stpn").state_dict()
    nan = {k: v.clone() for k, v in good.items()}
    nan["readout.weight"][0, 0] = float("nan")
    truncated = tmp / "truncated.safetensors"
    truncated.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:500])
    (tmp / "junk.safetensors").write_bytes(b"\x00\x01 not a checkpoint" * 10)
    meta = {"format": "hwloop-art/1", "arch": "stpn", "hidden_size": "11"}
    return {
        "missing": (tmp / "nope.safetensors", "not found"),
        "truncated": (truncated, "not a readable safetensors"),
        "junk": (tmp / "junk.safetensors", "not a readable safetensors"),
        "smaller stpn": (_write(tmp / "s9.safetensors", stpn9, meta), "has shape (9, 46), expected (11, 48)"),
        "lstm tensors": (_write(tmp / "l.safetensors", lstm, meta), "missing tensors"),
        "no metadata": (_write(tmp / "nm.safetensors", stpn9, None), "not an hwloop ART checkpoint"),
        "unknown arch": (
            _write(tmp / "gru.safetensors", stpn9, {**meta, "arch": "gru"}),
            "unknown architecture",
        ),
        "non-finite": (_write(tmp / "nan.safetensors", nan, meta), "non-finite"),
    }


def test_bad_checkpoints_give_one_clear_line(tmp_path: Path) -> None:
    for name, (path, phrase) in _bad_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        message = str(info.value)
        assert phrase in message and str(path) in message and "\n" not in message, (name, message)


def test_lstm_has_no_crossbar() -> None:
    with pytest.raises(HwloopError, match="no STPN layer"):
        ARTModel("lstm").set_backend("ideal")
    with pytest.raises(HwloopError, match="unknown ART model"):
        ARTModel("gru")  # type: ignore[arg-type]


def test_training_is_reproducible_from_its_seed() -> None:
    runs = [train("stpn", 1, seed=3, train_size=256, val_size=200) for _ in range(2)]
    (a, log_a, _), (b, log_b, _) = runs
    assert log_a[0].train_loss == log_b[0].train_loss
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.slow
@pytest.mark.timeout(3600)  # about a minute alone; much longer on a shared machine
def test_training_learns_retrieval() -> None:
    """5 epochs on 100,000 sequences beat every model that ignores which letter each digit belongs to.

    Knowing only the three digits shown, the best guess is the most frequent one: right with
    probability 0.72 * 1/3 (all differ) + 0.27 * 2/3 (two equal) + 0.01 * 1 (all equal) = 0.43.
    """
    _, history, _ = train("stpn", 5, seed=1, val_size=2000)
    losses = [log.train_loss for log in history]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < math.log(10)  # below guessing uniformly among the digits
    assert history[-1].val_accuracy > 0.5
