"""The bias-topology table: skill, energy and bias sources of one model per task on each topology.

    python scripts/bias_table.py RUNS_DIR experiments/bias_topologies.json

RUNS_DIR holds `scripts/eval_held_out.py` outputs named `{art,pong}_{device,rows,lines,none}.json`
(held-out chips, the same seeds on every topology). Prints the markdown table (docs/bias-topologies.md
quotes it) and writes the numbers with the commands that produced them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from device_models.bias_lines import BIAS_TOPOLOGIES, dac_count

SHAPES = {"art": (16, 37 + 16), "pong": (64, 2656)}  # (H, K = I + H) of the shipped hardware-aware layers


def energy_per_unit_j(run: dict, task: str) -> float:
    """Device energy (J) per ART sequence or per Pong game, refreshes included."""
    if task == "art":
        return sum(run["energy_joules"].values()) / run["n"]
    per_game = run["energy_joules"]["device"]["per_game_j"]
    return sum(per_game) / len(per_game)


def main() -> None:
    runs_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    table: dict[str, dict[str, dict]] = {}
    for task in ("art", "pong"):
        for bias in BIAS_TOPOLOGIES:
            path = runs_dir / f"{task}_{bias}.json"
            if not path.is_file():
                continue
            summary = json.loads(path.read_text())
            runs = list(summary["runs"].values())
            table.setdefault(task, {})[bias] = {
                "skill_mean": summary["mean"],
                "skill_min": summary["min"],
                "worst_chip": summary["worst_chip"],
                "chips": summary["chips"],
                "seed": summary["seed"],
                "energy_j": sum(energy_per_unit_j(r, task) for r in runs) / len(runs),
                "dac_count": dac_count(bias, SHAPES[task]),
                "checkpoint": summary["checkpoint"],
                "commands": [r["command"] for r in runs],
            }
    out.write_text(json.dumps(table, indent=1) + "\n")
    print("| task | bias | bias sources (DACs) | skill, mean over chips (worst chip) | device energy |")
    print("|---|---|---|---|---|")
    for task, rows in table.items():
        unit = "per sequence" if task == "art" else "per game"
        for bias, row in rows.items():
            skill = (
                f"{row['skill_mean']:.4f} ({row['skill_min']:.4f})"
                if task == "art"
                else f"{row['skill_mean']:+.1f} ({row['skill_min']:+.1f})"
            )
            energy = f"{row['energy_j'] * 1e6:.3g} uJ {unit}" if task == "art" else f"{row['energy_j']:.3g} J {unit}"
            print(f"| {task.upper()} | {bias} | {row['dac_count']:,} | {skill} | {energy} |")


if __name__ == "__main__":
    main()
