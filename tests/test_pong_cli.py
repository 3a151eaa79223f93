"""``hwloop pong`` through the real entry point: a short evaluation, and user mistakes as one error line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from experiments.pong.agent import PongAgent, save_agent
from hwloop.cli import main

pytest.importorskip("ale_py")


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``hwloop ARGS`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["hwloop", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pong")
    torch.manual_seed(0)
    paths = {"stpn": root / "stpn.safetensors", "lstm": root / "lstm.safetensors"}
    save_agent(PongAgent("stpn", 64), paths["stpn"])
    save_agent(PongAgent("lstm", 48), paths["lstm"])
    return paths


def test_one_game_writes_json_gif_and_plot(monkeypatch, capsys, checkpoints, tmp_path: Path) -> None:
    out, gif, png = tmp_path / "r.json", tmp_path / "g.gif", tmp_path / "p.png"
    args = ["--checkpoint", str(checkpoints["stpn"]), "--episodes", "1", "--seed", "4"]
    code, _, err = run(
        monkeypatch, capsys, "pong", *args, "--json", str(out), "--record", str(gif), "--plot", str(png)
    )
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["seeds"] == [4] and len(result["scores"]) == 1
    assert result["mean_score"] == result["scores"][0]
    assert -21 <= result["scores"][0] <= 21 and result["scores"][0] == int(result["scores"][0])
    assert result["steps"] == result["steps_per_episode"][0] >= 21  # a game is at least 21 points long
    assert result["steps_per_second"] > 0
    assert result["anomalous_rewards"] == [[]]  # every reward of this game was a single point
    energy = result["energy"]
    assert energy["per_episode"][0] == pytest.approx(energy["per_step_mean"] * result["steps"], rel=1e-9)
    assert energy["per_step_mean"] > 0  # |G/n| z^2 summed over synapses cannot vanish with a lit screen
    with Image.open(gif) as im:
        assert getattr(im, "n_frames", 1) > 1 and im.size == (160, 210)
    assert png.stat().st_size > 0
    assert "game 1 (seed 4)" in err


def test_lstm_checkpoint_reports_no_synaptic_energy(monkeypatch, capsys, checkpoints, tmp_path: Path) -> None:
    code, out, err = run(
        monkeypatch, capsys, "pong", "--checkpoint", str(checkpoints["lstm"]), "--episodes", "1"
    )
    assert code == 0, err
    assert json.loads(out)["energy"] is None


def test_unknown_backend_is_one_error_line(monkeypatch, capsys, checkpoints) -> None:
    code, out, err = run(
        monkeypatch, capsys, "pong", "--checkpoint", str(checkpoints["stpn"]), "--backend", "nope"
    )
    assert code == 2 and out == ""
    assert err.startswith("error: unknown backend 'nope'") and err.count("\n") == 1


def test_lstm_on_an_analog_backend_is_refused(monkeypatch, capsys, checkpoints) -> None:
    code, _, err = run(
        monkeypatch, capsys, "pong", "--checkpoint", str(checkpoints["lstm"]), "--backend", "emulated"
    )
    assert code == 2 and "runs only digitally" in err and err.count("\n") == 1


def test_checkpoint_of_another_architecture_is_one_error_line(monkeypatch, capsys, tmp_path: Path) -> None:
    foreign = tmp_path / "art.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"arch": "art-stpn"})
    code, _, err = run(monkeypatch, capsys, "pong", "--checkpoint", str(foreign))
    assert code == 2 and err.startswith("error: ") and "not a Pong agent checkpoint" in err
    assert err.count("\n") == 1


def test_train_refuses_a_non_safetensors_output(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, err = run(monkeypatch, capsys, "pong", "train", "--out", str(tmp_path / "a.pt"))
    assert code == 2 and "--out must end in .safetensors" in err
