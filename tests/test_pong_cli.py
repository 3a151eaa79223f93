"""``hwloop pong`` through the real entry point: a short evaluation, and user mistakes as one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from experiments.pong.agent import PongAgent, save_agent

pytest.importorskip("ale_py")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pong")
    torch.manual_seed(0)
    paths = {"stpn": root / "stpn.safetensors", "lstm": root / "lstm.safetensors"}
    save_agent(PongAgent("stpn", 64), paths["stpn"])
    save_agent(PongAgent("lstm", 48), paths["lstm"])
    return paths


def test_one_game_writes_json_gif_and_plot(hwloop_run, checkpoints, tmp_path: Path) -> None:
    out, gif, png = tmp_path / "r.json", tmp_path / "g.gif", tmp_path / "p.png"
    args = ["--checkpoint", str(checkpoints["stpn"]), "--episodes", "1", "--seed", "4"]
    code, _, err = hwloop_run("pong", *args, "--json-out", str(out), "--record", str(gif), "--plot", str(png))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["seeds"] == [4] and len(result["scores"]) == 1
    assert result["mean_score"] == result["scores"][0]
    assert -21 <= result["scores"][0] <= 21 and result["scores"][0] == int(result["scores"][0])
    assert result["steps"] == result["steps_per_episode"][0] >= 21  # a game is at least 21 points long
    assert result["steps_per_second"] > 0
    assert result["anomalous_rewards"] == [[]]  # every reward of this game was a single point
    assert result["earned_scores"] == result["scores"] and result["mean_earned_score"] == result["mean_score"]
    energy = result["energy"]
    assert energy["per_episode"][0] == pytest.approx(energy["per_step_mean"] * result["steps"], rel=1e-9)
    assert energy["per_step_mean"] > 0  # |G/n| z^2 summed over synapses cannot vanish with a lit screen
    with Image.open(gif) as im:
        assert getattr(im, "n_frames", 1) > 1 and im.size == (160, 210)
    assert png.stat().st_size > 0
    assert "game 1 (seed 4)" in err


def test_lstm_checkpoint_reports_no_synaptic_energy(hwloop_run, checkpoints, tmp_path: Path) -> None:
    code, out, err = hwloop_run("pong", "--checkpoint", str(checkpoints["lstm"]), "--episodes", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["energy"] is None


def test_without_json_flags_stdout_stays_empty(hwloop_run, checkpoints) -> None:
    # the convention: JSON only with --json (stdout) or --json-out PATH; the summary goes to stderr
    code, out, err = hwloop_run("pong", "--checkpoint", str(checkpoints["lstm"]), "--episodes", "1")
    assert code == 0 and out == "" and "mean score" in err


def test_backend_options_reach_the_pong_backend(hwloop_run, checkpoints) -> None:
    args = ["--checkpoint", str(checkpoints["stpn"]), "--backend", "emulated", "--backend-option", "bogus=1"]
    code, out, err = hwloop_run("pong", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: backend 'emulated' does not take option(s) bogus") and err.count("\n") == 1


def test_unknown_backend_is_one_error_line(hwloop_run, checkpoints) -> None:
    code, out, err = hwloop_run("pong", "--checkpoint", str(checkpoints["stpn"]), "--backend", "nope")
    assert code == 2 and out == ""
    assert err.startswith("error: unknown backend 'nope'") and err.count("\n") == 1


def test_lstm_on_an_analog_backend_is_refused(hwloop_run, checkpoints) -> None:
    code, _, err = hwloop_run("pong", "--checkpoint", str(checkpoints["lstm"]), "--backend", "emulated")
    assert code == 2 and "runs only digitally" in err and err.count("\n") == 1


def test_checkpoint_of_another_architecture_is_one_error_line(hwloop_run, tmp_path: Path) -> None:
    foreign = tmp_path / "art.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"arch": "art-stpn"})
    code, _, err = hwloop_run("pong", "--checkpoint", str(foreign))
    assert code == 2 and err.startswith("error: ") and "not a Pong agent checkpoint" in err
    assert err.count("\n") == 1


def test_train_refuses_a_non_safetensors_output(hwloop_run, tmp_path: Path) -> None:
    code, _, err = hwloop_run("pong", "train", "--out", str(tmp_path / "a.pt"))
    assert code == 2 and "--out must end in .safetensors" in err


@pytest.fixture()
def plastic_init(tmp_path: Path) -> Path:
    """A small plastic STPN-8 agent (gamma != 0) with a record beside it, as a fine-tuning start point."""
    torch.manual_seed(1)
    agent = PongAgent("stpn", 8)
    with torch.no_grad():
        agent.core.weight_gamma.uniform_(-1e-3, 1e-3)  # type: ignore[operator]
    path = tmp_path / "init.safetensors"
    save_agent(agent, path)
    path.with_suffix(".json").write_text(json.dumps({"made_by": "fixture"}))
    return path


def test_fine_tuning_starts_from_the_init_checkpoint(hwloop_run, plastic_init, tmp_path) -> None:
    out = tmp_path / "ft.safetensors"
    args = ["--init", str(plastic_init), "--hidden", "8", "--bc-segments", "8", "--bc-epochs", "0"]
    args += ["--dagger-rounds", "0", "--plastic-epochs", "0", "--plastic-dagger-rounds", "1"]
    args += ["--plastic-dagger-segments", "8", "--plastic-replay-segments", "0", "--plastic-lr", "0"]
    code, _, err = hwloop_run("pong", "train", "--out", str(out), *args)
    assert code == 0, err
    start, tuned = PongAgent("stpn", 8), PongAgent("stpn", 8)
    start.load_state_dict(load_file(str(plastic_init)))
    tuned.load_state_dict(load_file(str(out)))
    for name, value in start.state_dict().items():  # a zero step size leaves the start point as it was
        assert torch.equal(value, tuned.state_dict()[name]), name
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["init_record"] == {"made_by": "fixture"}
    assert record["data_steps"] == 2 * 8 * 128  # expert data plus one round of agent-driven segments
    assert 0.0 <= record["plastic_dagger_1"]["accuracy"] <= 1.0


def test_an_lstm_runs_the_on_policy_rounds_too(hwloop_run, tmp_path) -> None:
    # trained "the same way" as the STPN: the closing DAgger rounds are not STPN-only
    out = tmp_path / "lstm.safetensors"
    args = [
        "--core",
        "lstm",
        "--hidden",
        "8",
        "--bc-segments",
        "8",
        "--bc-epochs",
        "1",
        "--dagger-rounds",
        "0",
    ]
    args += [
        "--plastic-dagger-rounds",
        "1",
        "--plastic-dagger-segments",
        "8",
        "--plastic-replay-segments",
        "8",
    ]
    code, _, err = hwloop_run("pong", "train", "--out", str(out), *args, "--hit-weight", "4")
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["hit_weight"] == 4.0
    assert record["data_steps"] == 2 * 8 * 128 and "plastic_dagger_1" in record


def test_a_plastic_init_refuses_the_static_phases(hwloop_run, plastic_init, tmp_path) -> None:
    args = ["--out", str(tmp_path / "x.safetensors"), "--init", str(plastic_init), "--hidden", "8"]
    code, _, err = hwloop_run("pong", "train", *args)
    assert code == 2 and "is already plastic" in err and err.count("\n") == 1


def test_an_init_of_another_size_is_one_error_line(hwloop_run, plastic_init, tmp_path) -> None:
    args = ["--out", str(tmp_path / "x.safetensors"), "--init", str(plastic_init), "--bc-segments", "8"]
    code, _, err = hwloop_run("pong", "train", *args)
    assert code == 2 and "holds a stpn-8 agent, not the stpn-64" in err and err.count("\n") == 1


def test_fewer_segments_than_a_batch_is_one_error_line(hwloop_run, tmp_path) -> None:
    args = ["--out", str(tmp_path / "x.safetensors"), "--hidden", "8", "--bc-segments", "4"]
    code, _, err = hwloop_run("pong", "train", *args)
    assert code == 2 and "4 training segments are fewer than one batch of 8" in err


def test_a_game_on_the_emulated_array_reports_joules_per_game(hwloop_run, checkpoints) -> None:
    from device_models.card import load_card

    args = ["--checkpoint", str(checkpoints["stpn"]), "--backend", "emulated", "--episodes", "1", "--json"]
    code, out, err = hwloop_run("pong", *args)
    assert code == 0, err
    result = json.loads(out)
    dev, gpu = result["energy_joules"]["device"], result["energy_joules"]["gpu"]
    steps = result["steps"]
    assert result["backend_options"] == {"dt_s": pytest.approx(1 / 15)}  # Pong's step reached the backend
    assert dev["duration_s_per_game"] == [pytest.approx(steps / 15)]
    parts = dev["breakdown_per_game_j"]
    assert dev["per_game_j"][0] == pytest.approx(sum(v[0] for v in parts.values()), rel=1e-12)
    # physics bound: 2 devices per synapse, each at most (g_max + g_st_max) at the highest bias, held
    # for the game's duration
    card = load_card(None)
    devices = 2 * 64 * (2592 + 64)
    g_top = card.window.g_max_siemens + card.window.g_st_max_siemens
    assert 0 < parts["bias_j"][0] < devices * card.bias.bias_max_v**2 * g_top * steps / 15
    assert parts["program_j"][0] > 0 and parts["read_j"][0] > 0
    assert gpu["per_game_j"]["best_efficiency"] == [
        pytest.approx(gpu["per_step_j"]["best_efficiency"] * steps)
    ]
    assert "energy per game:" in err and " J on the emulated array" in err


@pytest.mark.slow
def test_a_whole_game_in_mixed_mode_with_an_8x8_block_on_the_simulated_controller(
    hwloop_run, tmp_path: Path
) -> None:
    import h5py

    log = tmp_path / "game.h5"
    opts = ["rows=0:8", "cols=2592:2600", f"log={log}"]
    args = [
        "--backend",
        "lab",
        *[a for o in opts for a in ("--backend-option", o)],
        "--episodes",
        "1",
        "--json",
    ]
    code, out, err = hwloop_run("pong", *args)
    assert code == 0, err
    result = json.loads(out)
    steps, stats = result["steps"], result["backend_stats"]
    assert -21 <= result["scores"][0] <= 21 and stats["pacing"]["steps"] == steps
    with h5py.File(log) as f:
        run = f["runs/0000"]
        assert run["step"].shape == (steps,) and (run["pulse_width_s"][:] > 0).any()  # writes were sent
        t = run["t_read_s"][:, 0]
        on_time = run["lateness_s"][:] == 0
        assert on_time.all() == (stats["pacing"]["overruns"] == 0)
        assert abs(t[2] - t[1] - 1 / 15) < 2e-6 or not on_time[1]  # a step apart (timestamps to 1 us)


@pytest.mark.slow
def test_make_demo_command_plays_one_game_and_prints_energy_and_speed(hwloop_run) -> None:
    code, _, err = hwloop_run("pong", "demo")
    assert code == 0, err
    assert "game 1 (seed 0):" in err and "steps/s" in err
    assert "energy per game:" in err and "NVIDIA A100" in err
    assert "hardware-aware" in err  # either the aware agent, or the fallback saying it is not aware


def test_finetune_with_zero_rounds_only_bounds_lambda_to_the_card_range(
    hwloop_run, checkpoints, tmp_path: Path
) -> None:
    """``--rounds 0``: lambda clipped into the card's realisable range at Pong's step (by hand from the
    card's bias window), every other parameter unchanged."""
    import math

    from device_models.card import load_card
    from experiments.pong.agent import load_agent

    out = tmp_path / "bounded.safetensors"
    code, _, err = hwloop_run(
        "pong", "finetune", "--init", str(checkpoints["stpn"]), "--rounds", "0", "--out", str(out)
    )
    assert code == 0, err
    b, dt = load_card().bias, 1 / 15
    tau = [load_card().decay.tau_s * math.exp(-(v - b.bias_ref_v) / b.bias_efold_v) for v in (1.2, 0.0)]
    lo, hi = (math.exp(-dt / t) for t in tau)
    before, after = load_agent(checkpoints["stpn"]).core, load_agent(out).core
    lam = after.weight_lambda.detach()
    assert lo <= float(lam.min()) and float(lam.max()) <= hi
    torch.testing.assert_close(after.weight, before.weight)
    torch.testing.assert_close(after.weight_gamma, before.weight_gamma)
    inside = (before.weight_lambda > lo + 0.01 * (hi - lo)) & (before.weight_lambda < hi - 0.01 * (hi - lo))
    torch.testing.assert_close(
        lam[inside], before.weight_lambda.detach()[inside]
    )  # untouched where realisable
    assert json.loads(out.with_suffix(".json").read_text())["reproduce"].startswith("hwloop pong finetune")


def test_finetune_backend_options_are_checked_before_any_work(
    hwloop_run, checkpoints, tmp_path: Path
) -> None:
    """A value the aware backend refuses is one error line, before the expert plays (nothing is written);
    with --rounds 0 there is no aware backend to configure."""
    out = tmp_path / "ft.safetensors"
    base = ["pong", "finetune", "--init", str(checkpoints["stpn"]), "--out", str(out)]
    code, _, err = hwloop_run(*base, "--rounds", "1", "--backend-option", "periphery=hermes")
    bad = "periphery: Input should be 'none', 'aihwkit' or 'both' (got 'hermes')"
    assert code == 2 and err.startswith("error:") and bad in err
    assert err.count("\n") == 1 and not out.exists()
    code, _, err = hwloop_run(*base, "--rounds", "0", "--backend-option", "periphery=both")
    assert code == 2 and "use --rounds >= 1" in err and err.count("\n") == 1 and not out.exists()
    code, _, err = hwloop_run(*base, "--rounds", "1", "--collect-chip", "game")
    assert code == 2 and "--collect-chip must be 'round' or 'segment'" in err and err.count("\n") == 1
    assert not out.exists()
