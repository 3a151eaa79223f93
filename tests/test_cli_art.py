"""``hwloop art`` through the real entry point: results on stdout, user mistakes as one ``error:`` line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from experiments.art import DEFAULT_CHECKPOINT, ARTModel, load_model, save_checkpoint
from experiments.art.data import make_split


def test_eval_json_reports_the_models_accuracy(hwloop_run) -> None:
    code, out, _ = hwloop_run("art", "eval", "--backend", "ideal", "--n", "3000", "--seed", "5", "--json")
    assert code == 0
    result = json.loads(out)
    data = make_split(3000, 5, "test")
    with torch.no_grad():
        expected = (load_model(DEFAULT_CHECKPOINT)(data.xs).argmax(dim=1) == data.ys).float().mean().item()
    assert result["accuracy"] == pytest.approx(expected) and result["accuracy"] >= 0.99
    assert result["n"] == 3000 and result["seed"] == 5 and result["backend"] == "ideal"
    assert result["checkpoint"] == str(DEFAULT_CHECKPOINT) and result["seconds"] > 0


def test_eval_summary_and_json_file(hwloop_run, tmp_path: Path) -> None:
    target = tmp_path / "res.json"
    code, out, _ = hwloop_run("art", "eval", "--n", "500", "--json-out", str(target))
    assert code == 0 and "STPN-11 on ideal: accuracy" in out
    assert json.loads(target.read_text())["n"] == 500


def _one_error_line(code: int, err: str, *phrases: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(p in lines[0] for p in phrases), err


def test_missing_checkpoint(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "absent.safetensors"
    code, _, err = hwloop_run("art", "eval", "--checkpoint", str(path))
    _one_error_line(code, err, "not found", str(path))


def test_corrupted_checkpoint(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:-100])
    code, _, err = hwloop_run("art", "eval", "--checkpoint", str(path))
    _one_error_line(code, err, "not a readable safetensors", str(path))


def test_wrong_architecture_checkpoint(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "lstm_as_stpn.safetensors"
    tensors = {k: v.contiguous() for k, v in ARTModel("lstm").state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "hwloop-art/1", "arch": "stpn", "hidden_size": "11"})
    code, _, err = hwloop_run("art", "eval", "--checkpoint", str(path))
    _one_error_line(code, err, "does not match a STPN-11", "missing tensors")


def test_unknown_backend(hwloop_run) -> None:
    code, _, err = hwloop_run("art", "eval", "--backend", "abacus")
    _one_error_line(code, err, "unknown backend 'abacus'", "ideal")


def test_option_the_backend_does_not_take(hwloop_run, tmp_path: Path) -> None:
    code, _, err = hwloop_run("art", "eval", "--backend-seed", "3")
    _one_error_line(code, err, "'ideal' does not take option(s) seed")


def test_lstm_checkpoint_on_a_crossbar_backend(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "lstm.safetensors"
    save_checkpoint(ARTModel("lstm"), path)
    code, _, err = hwloop_run("art", "eval", "--checkpoint", str(path), "--backend", "emulated")
    _one_error_line(code, err, "LSTM-9", "--backend ideal")
    code, out, _ = hwloop_run("art", "eval", "--checkpoint", str(path), "--n", "200", "--json")
    assert code == 0 and json.loads(out)["model"] == "LSTM-9"


def test_train_writes_checkpoint_and_record(hwloop_run, tmp_path: Path) -> None:
    out_path = tmp_path / "tiny.safetensors"
    args = ["art", "train", "--model", "lstm", "--epochs", "1", "--seed", "4", "--train-size", "256"]
    code, out, _ = hwloop_run(*args, "--out", str(out_path), "--json")
    assert code == 0
    record = json.loads(out)
    assert json.loads(out_path.with_suffix(".json").read_text()) == record
    assert record["model"] == "LSTM-9" and record["train_size"] == 256 and len(record["history"]) == 1
    # the recorded command, run again, rebuilds the same weights
    again = tmp_path / "again.safetensors"
    command = shlex.split(record["reproduce"])
    assert command[:3] == ["hwloop", "art", "train"] and command[-2:] == ["--out", str(out_path)]
    code, _, _ = hwloop_run(*command[1:-1], str(again))
    first, second = load_model(out_path), load_model(again)
    assert code == 0 and first.label == "LSTM-9"
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_train_bad_model_name(hwloop_run, tmp_path: Path) -> None:
    code, _, err = hwloop_run("art", "train", "--model", "gru", "--out", str(tmp_path / "x.safetensors"))
    _one_error_line(code, err, "unknown ART model 'gru'")


def test_train_backend_options_reach_the_aware_backend(hwloop_run, tmp_path: Path) -> None:
    """--backend-option goes to the aware backend (recorded, and in the reproduce command); a value it
    refuses, or the option without --hardware-aware, is one error line."""
    out_path = tmp_path / "aware.safetensors"
    args = ["art", "train", "--epochs", "1", "--train-size", "128", "--hidden", "3", "--hardware-aware"]
    code, out, _ = hwloop_run(*args, "--backend-option", "periphery=both", "--out", str(out_path), "--json")
    assert code == 0
    record = json.loads(out)
    assert record["hardware_aware"]["backend_options"] == {"periphery": "both"}
    assert "--backend-option periphery=both" in record["reproduce"]
    code, _, err = hwloop_run(*args, "--backend-option", "periphery=hermes", "--out", str(out_path))
    _one_error_line(code, err, "periphery: Input should be 'none', 'aihwkit' or 'both' (got 'hermes')")
    code, _, err = hwloop_run(
        "art", "train", "--backend-option", "periphery=both", "--out", str(tmp_path / "x.safetensors")
    )
    _one_error_line(code, err, "apply only with --hardware-aware")
