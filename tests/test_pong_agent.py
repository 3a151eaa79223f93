"""The Pong agent: shapes, memory carried between steps, the static training path, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from experiments.pong.agent import FEATURES, PongAgent, load_agent, save_agent
from experiments.pong.evaluate import earned_score
from experiments.pong.train import TrainConfig, imitation_loss, set_plasticity, static_stpn, step_weights
from hwloop.errors import CheckpointError
from hwloop.stpn import STPN

CHECKPOINTS = Path(__file__).resolve().parents[1] / "experiments" / "pong" / "checkpoints"


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def stpn_core(agent: PongAgent) -> STPN:
    assert isinstance(agent.core, STPN)
    return agent.core


def frames(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 84, 84), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def stpn_agent() -> PongAgent:
    torch.manual_seed(0)
    agent = PongAgent("stpn", 64)
    with torch.no_grad():  # visible plasticity, so the state carries real information
        stpn_core(agent).weight_gamma.uniform_(-0.05, 0.05)
    return agent


def test_paper_architecture_sizes(stpn_agent: PongAgent) -> None:
    side = conv_out(conv_out(84, 8, 4), 4, 2)
    assert FEATURES == 32 * side * side == 2592
    assert stpn_core(stpn_agent).weight.shape == (64, 2592 + 64)
    assert stpn_core(stpn_agent).weight.numel() == 169_984  # the paper's plastic synapse count


@pytest.mark.parametrize("core,hidden", [("stpn", 64), ("lstm", 48)])
def test_forward_shapes(core: str, hidden: int) -> None:
    agent = PongAgent(core, hidden)
    out = agent(frames(3, 5))
    assert out.logits.shape == (3, 5, 6)
    assert out.values.shape == (3, 5)
    if core == "stpn":
        assert out.state[0].shape == (3, 64) and out.state[1].shape == (3, 64, 2656)
    else:
        assert out.state[0].shape == (1, 3, 48) and out.state[1].shape == (1, 3, 48)


@pytest.mark.parametrize("core", ["stpn", "lstm"])
def test_stepping_with_carried_state_equals_one_sequence(core: str, stpn_agent: PongAgent) -> None:
    agent = stpn_agent if core == "stpn" else PongAgent("lstm", 48)
    xs = frames(2, 6, seed=1)
    with torch.no_grad():
        whole = agent(xs).logits
        state, stepped = None, []
        for t in range(xs.shape[1]):
            out = agent(xs[:, t : t + 1], state)
            state = out.state
            stepped.append(out.logits)
        from_rest = agent(xs[:, 3:4]).logits
    torch.testing.assert_close(torch.cat(stepped, dim=1), whole, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(from_rest, whole[:, 3:4], atol=1e-6)  # the memory changes the decision


def test_energy_from_rest_is_the_papers_metric(stpn_agent: PongAgent) -> None:
    x = frames(2, 1, seed=2)
    with torch.no_grad():
        out = stpn_agent(x, energy=True)
        z = torch.cat([stpn_agent.encode(x)[:, 0], torch.zeros(2, 64)], dim=1)  # h_0 = 0
        w = stpn_core(stpn_agent).weight  # F_0 = 0, so G = W
        n = w.norm(dim=1) + 1e-16
        expected = ((w.abs() / n[:, None]) @ (z * z).T).sum(dim=0)
    assert out.energy is not None and out.energy.shape == (2, 1)
    torch.testing.assert_close(out.energy[:, 0], expected, rtol=1e-5, atol=0)


def test_static_path_equals_the_stpn_without_plasticity() -> None:
    torch.manual_seed(3)
    agent = PongAgent("stpn", 64)
    set_plasticity(stpn_core(agent), False, seed=0)
    xs = frames(2, 4, seed=3)
    with torch.no_grad():
        feats = agent.encode(xs)
        hs, _ = static_stpn(stpn_core(agent), feats, torch.zeros(2, 64))
        full = stpn_core(agent).run(feats).hs
    torch.testing.assert_close(hs, full, rtol=1e-5, atol=1e-6)


def test_checkpoint_round_trip(tmp_path: Path, stpn_agent: PongAgent) -> None:
    path = tmp_path / "a.safetensors"
    save_agent(stpn_agent, path)
    loaded = load_agent(path)
    xs = frames(1, 3, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(xs).logits, stpn_agent(xs).logits)


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(foreign), metadata={"arch": "art"})
    with pytest.raises(CheckpointError, match="not a Pong agent checkpoint"):
        load_agent(foreign)
    resized = tmp_path / "resized.safetensors"
    agent = PongAgent("lstm", 48)
    tensors = {k: v.contiguous() for k, v in agent.state_dict().items()}
    tensors["policy.weight"] = torch.zeros(4, 48)
    save_file(tensors, str(resized), metadata={"arch": "pong-agent-v1", "core": "lstm", "hidden": "48"})
    with pytest.raises(CheckpointError, match="does not match"):
        load_agent(resized)
    with pytest.raises(CheckpointError, match="not found"):
        load_agent(tmp_path / "missing.safetensors")


def test_earned_score_leaves_out_scoreboard_glitches() -> None:
    # ALE turns a scoreboard reset of the CPU from 18 to 1 into one +17 reward; it is not a point won
    assert earned_score([1.0, -1.0, 0.0, 17.0, 1.0]) == 1.0
    assert earned_score([]) == 0.0


def test_imitation_loss_weights_classes_and_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 5, 6, generator=gen), torch.randint(0, 6, (2, 5), generator=gen)
    class_w = torch.rand(6, generator=gen) + 0.5
    # all step weights 1: torch's own class-weighted cross-entropy
    plain = torch.nn.functional.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1), weight=class_w)
    assert imitation_loss(logits, labels, class_w, torch.ones(2, 5)).item() == pytest.approx(plain.item())
    # weight 3 on one step: that step counts as three copies of itself
    step_w = torch.ones(2, 5)
    step_w[1, 2] = 3.0
    nll = -torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
    w = class_w[labels] * step_w
    expected = (w * nll).sum() / w.sum()
    assert imitation_loss(logits, labels, class_w, step_w).item() == pytest.approx(expected.item())


def test_step_weights_cover_the_window_before_a_hit() -> None:
    cfg = TrainConfig(hit_weight=4.0, hit_window=12.0)
    to_hit = np.array([99.0, 30.0, 12.5, 12.0, 3.0, 0.5])
    assert step_weights(to_hit, cfg).tolist() == [1.0, 1.0, 1.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(("name", "core", "hidden"), [("stpn64", "stpn", 64), ("lstm48", "lstm", 48)])
def test_shipped_checkpoints_load_with_their_records(name: str, core: str, hidden: int) -> None:
    import json

    agent = load_agent(CHECKPOINTS / f"{name}.safetensors")
    assert (agent.core_name, agent.hidden) == (core, hidden)
    record = json.loads((CHECKPOINTS / f"{name}.json").read_text())
    assert record["config"]["core"] == core and record["config"]["hidden"] == hidden
    # every stage of the chain is one command writing this checkpoint, the first from scratch
    assert record["reproduce"][0].count("--init") == 0
    assert all(f"--out experiments/pong/checkpoints/{name}.safetensors" in c for c in record["reproduce"])
    evaluation = json.loads((CHECKPOINTS / f"{name}.eval.json").read_text())
    assert evaluation["core"] == core and len(evaluation["scores"]) == 10
    if core == "stpn":  # the plasticity is trained: gamma is not the static phase's zero
        assert bool(agent.core.weight_gamma.any())  # type: ignore[union-attr]


def test_shipped_hardware_aware_agent_realises_every_lambda_and_has_its_evaluations() -> None:
    """stpn64_aware: the shipped STPN-64, lambda bounded inside the card's range at Pong's step (its
    record's range, checked against the realisation), then fine-tuned on the aware backend (per-device
    bias, then line bias, possibly continued on further fresh chips); its record holds the commands, its
    evaluation file the games per held-out chip on the emulated array and on a calibration record, on
    chips and seeds it was not trained on."""
    import json

    from device_models.card import load_card
    from device_models.realisation import Realisation

    agent, ideal = (
        load_agent(CHECKPOINTS / "stpn64_aware.safetensors"),
        load_agent(CHECKPOINTS / "stpn64.safetensors"),
    )
    record = json.loads((CHECKPOINTS / "stpn64_aware.json").read_text())
    lo, hi = Realisation.from_card(load_card(), dt_s=record["dt_s"]).trainable_lambda_range()
    assert record["lambda_range"] == pytest.approx([lo, hi])
    lam = agent.core.weight_lambda.detach()  # type: ignore[union-attr]
    assert lo <= float(lam.min()) and float(lam.max()) <= hi
    assert not torch.equal(agent.core.weight, ideal.core.weight)  # type: ignore[union-attr]  # fine-tuned
    bound, device, lines, *more = record["reproduce"]
    assert "--rounds 0" in bound and "--rounds 2" in device and "--rounds 2" in lines
    assert all("periphery=both" in c for c in (lines, *more)) and all(
        "--out experiments/pong/checkpoints/stpn64_aware.safetensors" in c
        for c in (bound, device, lines, *more)
    )
    evaluation = json.loads((CHECKPOINTS / "stpn64_aware.eval.json").read_text())
    # every line-bias fine-tune's first training chip: the held-out chips lie below all of them
    trained_on = min(
        run["config"]["backend_seed"] for run in (record["finetune_lines"], *record.get("finetune_more", []))
    )
    for array in ("emulated", "record"):
        runs = evaluation[array]["runs"]
        assert len(runs) >= 2
        for chip, run in runs.items():
            assert int(chip) < trained_on and len(run["earned_scores"]) == len(run["seeds"]) >= 3
            assert min(run["seeds"]) >= 7800  # the held-out game seeds (training games start at 100000)


@pytest.mark.parametrize(("collect_chip", "chips"), [("round", 1), ("segment", 3)])
def test_dagger_collection_draws_one_chip_per_round_or_per_segment(
    tmp_path: Path, collect_chip: str, chips: int
) -> None:
    """Hardware-aware DAgger collection of 3 segments: the agent drives one drawn chip for the round, or
    a fresh chip from every segment start (the chip seeds follow the backend seed, one per program)."""
    pytest.importorskip("ale_py")
    from experiments.pong.train import _agent_data, _initial_agent
    from hwloop.backends.aware import AwareCrossbar

    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    save_agent(PongAgent("stpn", 64), init)
    cfg = TrainConfig(
        init=str(init),
        hardware_aware=True,
        bc_epochs=0,
        dagger_rounds=0,
        backend_seed=500,
        segment_len=6,
        collect_chip=collect_chip,
    )
    agent = _initial_agent(cfg)
    backend = stpn_core(agent).crossbar
    assert isinstance(backend, AwareCrossbar) and backend.chips_drawn == 0
    seeds: list[int] = []  # the chip each agent step ran on
    step = backend.step

    def logged_step(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert backend.chip is not None
        seeds.append(backend.chip.config.seed)
        return step(*args, **kwargs)

    backend.step = logged_step  # type: ignore[method-assign]
    lines: list[str] = []
    data = _agent_data(agent, 3, 0.0, 7, cfg, lines.append)
    assert data.steps == 18 and len(seeds) == 18
    expected = [500 + (t // 6 if collect_chip == "segment" else 0) for t in range(18)]
    assert seeds == expected
    assert f"on {chips} chip(s)" in lines[0]


def test_record_aware_agent_was_trained_chosen_and_reported_on_three_different_records() -> None:
    """stpn64_record_aware: stpn64_aware fine-tuned on one simulated calibration record, chosen by its
    stated rule on a second record (and the card), reported on a third, with held-out chips and game
    seeds disjoint from the selection's and below every training chip."""
    import json
    import re

    agent = load_agent(CHECKPOINTS / "stpn64_record_aware.safetensors")
    start = load_agent(CHECKPOINTS / "stpn64_aware.safetensors")
    record = json.loads((CHECKPOINTS / "stpn64_record_aware.json").read_text())
    lo, hi = record["lambda_range"]
    lam = agent.core.weight_lambda.detach()  # type: ignore[union-attr]
    assert lo <= float(lam.min()) and float(lam.max()) <= hi
    assert not torch.equal(agent.core.weight, start.core.weight)  # type: ignore[union-attr]

    def xbarsim_seeds(commands: list[str]) -> set[int]:
        return {int(s) for c in commands for s in re.findall(r"calib64_s(\d+)\.json", c)}

    trained = xbarsim_seeds(record["reproduce"])
    train_chip = record["finetune_record"]["config"]["backend_seed"]
    selection = json.loads((CHECKPOINTS / "stpn64_record_aware.selection.json").read_text())
    scores = {
        name: min(c["record_xbarsim82"]["mean"], c["card"]["mean"])
        for name, c in selection["candidates"].items()
    }
    assert selection["chosen"] == max(scores, key=scores.__getitem__)  # the stated rule, recomputed
    chosen = selection["candidates"][selection["chosen"]]
    chosen_on = xbarsim_seeds(chosen["record_xbarsim82"]["commands"])
    evaluation = json.loads((CHECKPOINTS / "stpn64_record_aware.eval.json").read_text())
    reported_on = xbarsim_seeds([r["command"] for r in evaluation["record"]["runs"].values()])
    assert len(trained) == len(chosen_on) == len(reported_on) == 1
    assert not (trained & chosen_on) and not (trained & reported_on) and not (chosen_on & reported_on)
    selection_chips = set(chosen["record_xbarsim82"]["chip_means"])
    for array in ("record", "emulated"):
        runs = evaluation[array]["runs"]
        assert len(runs) == 5 and not selection_chips & set(runs)
        for chip, run in runs.items():
            assert int(chip) < train_chip and len(run["earned_scores"]) == len(run["seeds"]) == 10
            assert min(run["seeds"]) >= 8200 and max(run["seeds"]) < 8700  # not the selection's 8700-8709


def test_record_aware_agents_pooled_verdict_is_recomputed_from_its_games() -> None:
    """stpn64_record_aware's verdict pools every fresh measurement of it per array (stop 32): recomputed
    here from the games themselves, each measurement on held-out chips, seeds and records, its ideal on
    the same seeds."""
    import json
    import re

    evaluation = json.loads((CHECKPOINTS / "stpn64_record_aware.eval.json").read_text())
    selection = json.loads((CHECKPOINTS / "stpn64_record_aware.selection.json").read_text())
    record = json.loads((CHECKPOINTS / "stpn64_record_aware.json").read_text())
    train_chip = record["finetune_record"]["config"]["backend_seed"]
    chosen = selection["candidates"][selection["chosen"]]
    selection_chips = set(chosen["record_xbarsim82"]["chip_means"])
    seen_records = {  # trained on, chosen on
        int(seed)
        for c in record["reproduce"] + chosen["record_xbarsim82"]["commands"]
        for seed in re.findall(r"calib64_s(\d+)\.json", c)
    }
    assert len(seen_records) == 2
    for array, pool in evaluation["pooled"].items():
        games: list[float] = []
        ideal_games: list[float] = []
        reported_records: list[int] = []
        for key in pool["measurements"]:
            measured = evaluation[key]
            (ideal,) = evaluation[pool["ideal_of"][key]]["runs"].values()  # one run: the ideal agent
            assert not selection_chips & set(measured["runs"])
            for chip, run in measured["runs"].items():
                assert int(chip) < train_chip and run["seeds"] == ideal["seeds"]
                assert not set(run["seeds"]) & set(range(8700, 8710))  # not the selection's games
                games += run["earned_scores"]
                ideal_games += ideal["earned_scores"]
                reported_records += [int(s) for s in re.findall(r"calib64_s(\d+)\.json", run["command"])]
        assert not set(reported_records) & seen_records
        if array == "record":
            assert len(set(reported_records)) == len(pool["measurements"])  # one fresh record each
        else:
            assert not reported_records
        mean, ideal_mean = sum(games) / len(games), sum(ideal_games) / len(ideal_games)
        assert pool["games"] == len(games)
        assert pool["mean"] == pytest.approx(mean) and pool["ideal_mean_same_seeds"] == pytest.approx(
            ideal_mean
        )
        assert pool["line_holds"] == (mean >= 13 and ideal_mean - mean <= 2)
