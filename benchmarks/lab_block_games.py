"""Record of full Pong games on the lab backend's block (issue 20): one JSON, commands and numbers.

Each game is played with the CLI (the command is stored with its numbers), its log summarised by
``hwloop lab report --json``, the I/O time per step taken from the log, and the fidelity gap split into
read noise, delivery and plan-vs-model (``benchmarks/lab_fidelity_gap.py``). The emulated backend's game
on the same seed with the same checkpoint is the score reference (``--emulated``, or per game a third
path: ``NAME=GAME.json:LOG.h5:EMU.json``).

    python benchmarks/lab_block_games.py --emulated EMU.json NAME=GAME.json:LOG.h5[:EMU.json] ... [--out F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from lab_fidelity_gap import gap  # the sibling script (python benchmarks/lab_block_games.py)

OUT = Path(__file__).resolve().parent / "results" / "lab_block_games.json"


def summary(game_json: Path, log: Path, emulated: dict[str, Any]) -> dict[str, Any]:
    """Score, fidelity, pacing and I/O time of one lab game against the emulated reference."""
    game = json.loads(game_json.read_text())
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "hwloop.cli", "lab", "report", str(log), "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    with h5py.File(log, "r", swmr=True) as f:
        g = f["runs/0000"]
        io_s = g["t_end_s"][:] - g["t_start_s"][:]
        attrs = {
            k: str(g.attrs[k]) for k in ("controller_version", "pulse_commands", "baudrate") if k in g.attrs
        }
        reads = int(g.attrs["reads_per_device"])
    score, reference = game["mean_earned_score"], emulated["mean_earned_score"]
    return {
        "command": game["command"],
        "checkpoint": game.get("checkpoint"),
        "emulated_command": emulated["command"],
        "backend_options": game["backend_options"],
        "score": score,
        "steps": game["steps"],
        "emulated_score": reference,
        "emulated_steps": emulated["steps"],
        "score_within_2_of_emulated": abs(score - reference) <= 2,
        "correlation": report["correlation"],
        "rms_ratio": report["rms_ratio"],
        "overruns": report["overruns"],
        "worst_lateness_s": report["worst_lateness_s"],
        "dropped_writes": report["dropped_writes"],
        "dropped_per_step": report["dropped_writes"] / report["steps"],
        "write_gain_percentiles_0_10_50": _gains(log),
        "io_ms_per_step_mean": float(io_s.mean() * 1e3),
        "io_ms_per_step_worst": float(io_s.max() * 1e3),
        "reads_per_device": reads,
        "bias": report["bias"],
        **attrs,
        "fidelity_gap": gap(log),
    }


def _gains(log: Path) -> list[float]:
    """0th, 10th and 50th percentile of the rows' write gain 1/s over the run (exact normalisation)."""
    with h5py.File(log, "r", swmr=True) as f:
        scale = f["runs/0000"]["row_scale"][:]
    return [float(x) for x in np.percentile(1.0 / scale, [0, 10, 50])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulated", type=Path, required=True, help="the emulated backend's game JSON")
    parser.add_argument("games", nargs="+", help="NAME=GAME.json:LOG.h5")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    emulated = json.loads(args.emulated.read_text())
    record: dict[str, Any] = {
        "what": "full Pong games (seed 0) on the lab backend's block, simulated v3.1 controller, dt 1/15 s",
        "emulated": {
            "command": emulated["command"],
            "checkpoint": emulated.get("checkpoint"),
            "score": emulated["mean_earned_score"],
            "steps": emulated["steps"],
        },
        "games": {},
    }
    for spec in args.games:
        name, _, paths = spec.partition("=")
        game_json, _, rest = paths.partition(":")
        log, _, own = rest.partition(":")
        reference = json.loads(Path(own).read_text()) if own else emulated
        record["games"][name] = summary(Path(game_json), Path(log), reference)
        r = record["games"][name]
        print(
            f"{name}: score {r['score']:+g} ({r['steps']} steps; emulated {r['emulated_score']:+g}), "
            f"r {r['correlation']:.3f}, RMS ratio {r['rms_ratio']:.3f}, {r['overruns']} overruns, "
            f"I/O {r['io_ms_per_step_mean']:.1f} ms (worst {r['io_ms_per_step_worst']:.1f})"
        )
    args.out.write_text(json.dumps(record, indent=1, default=lambda x: np.asarray(x).tolist()) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
