"""Energy in joules: the paper's decay-bias figure from its constants, the GPU model, the report command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwloop.energy import (
    WEILENMANN_2024,
    decay_bias_energy_j,
    duration_for_bias_energy_s,
    gpu_energy_per_step_j,
    stpn_step_work,
)

PONG_STEP_S = 4 / 60  # 4 emulator frames at 60 Hz


def test_the_papers_decay_bias_figure_follows_from_its_constants() -> None:
    """169,984 synapses x 4.3 nW = 0.731 mW; 35.6 mJ then implies a 48.7 s game (about 730 agent steps)."""
    synapses, power_w = 64 * (2592 + 64), 4.3e-9  # the STPN-64 Pong agent: 64 x (2592 inputs + 64 hidden)
    assert synapses == WEILENMANN_2024["synapses"] == 169_984
    duration = duration_for_bias_energy_s(35.6e-3, synapses, power_w)
    assert duration == pytest.approx(48.70, abs=0.01)
    assert duration / PONG_STEP_S == pytest.approx(730.5, abs=0.1)  # agent steps at 1/15 s
    # and forward: a game of 730 or 731 steps costs 35.6 mJ to the paper's 0.1 mJ rounding, 700 does not
    for steps in (730, 731):
        assert round(decay_bias_energy_j(synapses, power_w, steps * PONG_STEP_S) * 1e3, 1) == 35.6
    assert round(decay_bias_energy_j(synapses, power_w, 700 * PONG_STEP_S) * 1e3, 1) != 35.6
    # the paper's 4.3 nW at 0.6 V is a device of G = P / V^2 ~ 12 nS: inside the shipped card's window
    assert 1e-9 < power_w / 0.6**2 < 2e-8


def test_gpu_work_and_energy_of_one_stpn64_step_by_hand() -> None:
    work = stpn_step_work(64, 2656)
    assert work.flops == 10 * 169_984 and work.bytes == 5 * 4 * 169_984
    per_step = gpu_energy_per_step_j(work)
    # memory-bound on an A100: 3.4 MB at 1.555 TB/s is 2.19 us, at 400 W 0.874 mJ
    assert per_step["best_efficiency"] == pytest.approx(400 * 3_399_680 / 1.555e12, rel=1e-12)
    # launched kernel by kernel: 11 launches of 5 us at 400 W
    assert per_step["as_written"] == pytest.approx(400 * 11 * 5e-6, rel=1e-12)
    # the floor: 3.9 pJ/bit of DRAM traffic plus 2.3 pJ per FLOP
    assert per_step["floor"] == pytest.approx(3_399_680 * 8 * 3.9e-12 + 1_699_840 * 2.3e-12, rel=1e-12)


def _result(device_j: float, steps: int) -> dict[str, object]:
    """A minimal `hwloop pong --json-out` result, written here independently of the evaluator."""
    gpu = {"best_efficiency": 1e-3, "as_written": 2e-2, "floor": 1e-4}
    return {
        "energy": {"per_step_mean": 2.0, "per_episode": [2.0 * steps]},
        "energy_joules": {
            "device": {
                "backend": "emulated",
                "dt_s": PONG_STEP_S,
                "duration_s_per_game": [steps * PONG_STEP_S],
                "per_game_j": [device_j],
                "per_step_mean_j": device_j / steps,
                "breakdown_per_game_j": {"bias_j": [device_j * 0.9], "program_j": [device_j * 0.1]},
                "counted": {"bias_j": "bias", "program_j": "pulses"},
                "excluded": ["ADCs"],
            },
            "gpu": {
                "gpu": "NVIDIA A100",
                "synapses": 169_984,
                "flops_per_step": 1.0,
                "bytes_per_step": 2.0,
                "per_step_j": gpu,
                "per_game_j": {k: [v * steps] for k, v in gpu.items()},
                "constants": {"board_power_w": {"value": 400.0, "unit": "W", "source": "datasheet"}},
            },
        },
    }


def test_report_prints_device_gpu_and_paper_side_by_side(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result(device_j=0.02, steps=750)))
    code, out, err = hwloop_run("energy", "report", str(path))
    assert code == 0, err
    assert "20.0 mJ" in out and "36.0 mJ" in out  # device per game, this run vs the paper
    assert "750.0 mJ" in out and "3,463.9 mJ" in out  # GPU best efficiency: 1 mJ x 750 steps, and paper
    assert "15,000.0 mJ" in out and "34,780.5 mJ" in out  # GPU as written
    assert "best 38x, as written 750x" in out  # 750 / 20 and 15000 / 20
    assert "50.0 s of real time per game" in out  # 750 steps at 1/15 s
    assert "(datasheet)" in out and "excludes ADCs" in out and "48.7 s" in out
    code, out, _ = hwloop_run("energy", "report", str(path), "--json")
    rows = {row[0]: row[1:] for row in json.loads(out)["rows"]}
    assert rows["  decay bias"][:2] == [pytest.approx(0.018), 35.6e-3]


def test_report_of_a_result_without_joules_is_one_error_line(hwloop_run, tmp_path: Path) -> None:
    path = tmp_path / "lstm.json"
    path.write_text(json.dumps({"energy": None}))
    code, out, err = hwloop_run("energy", "report", str(path))
    assert code == 2 and out == "" and err.startswith("error: the result has no energy_joules")
    assert err.count("\n") == 1
