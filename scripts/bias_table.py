"""The bias-topology table: skill, energy and bias sources of one model per task on each topology.

    python scripts/bias_table.py RUNS_DIR experiments/bias_topologies.json [--strip-prefix DIR/]

RUNS_DIR holds `scripts/eval_held_out.py` outputs named `{art,pong}_*.json` (held-out chips, the same
seeds on every topology); each file is one row, its topology read from the run's `bias=` option (the
default, lines, when absent) and its model from the checkpoint name. Prints the markdown table
(docs/bias-topologies.md quotes it) and writes the numbers with the commands that produced them.
``--strip-prefix DIR/`` (repeatable): removed from those commands (the machine's own run directories).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from device_models.bias_lines import BIAS_TOPOLOGIES, dac_count

SHAPES = {"art": (16, 37 + 16), "pong": (64, 2656)}  # (H, K = I + H) of the shipped hardware-aware layers


def energy_per_unit_j(run: dict, task: str) -> float:
    """Device energy (J) per ART sequence or per Pong game, refreshes included."""
    if task == "art":
        return sum(run["energy_joules"].values()) / run["n"]
    per_game = run["energy_joules"]["device"]["per_game_j"]
    return sum(per_game) / len(per_game)


def calibration_of(run: dict) -> str | None:
    """The calibration record a run used (its file name without .json, from the backend options the run
    itself recorded), or None (the card)."""
    record = run.get("backend_options", {}).get("calibration")
    return Path(record).stem if record else None


def main() -> None:
    parser = argparse.ArgumentParser(description="the bias-topology table")
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--strip-prefix", action="append", default=[], help="removed from the commands' paths (repeatable)"
    )
    args = parser.parse_args()
    runs_dir, out = args.runs_dir, args.out

    def strip(command: str) -> str:
        for prefix in args.strip_prefix:
            command = command.replace(prefix, "")
        return command

    table: dict[str, dict[str, dict]] = {}
    for task in ("art", "pong"):
        for path in sorted(runs_dir.glob(f"{task}_*.json")):
            summary = json.loads(path.read_text())
            options = dict(o.split("=", 1) for o in summary["options"])
            bias = options.get("bias", "lines")
            if bias not in BIAS_TOPOLOGIES:
                raise SystemExit(f"{path}: unknown bias {bias!r}")
            runs = list(summary["runs"].values())
            table.setdefault(task, {})[path.stem.removeprefix(f"{task}_")] = {
                "bias": bias,
                "model": Path(summary["checkpoint"]).stem,
                "backend": summary["backend"],
                "calibration": calibration_of(runs[0]),
                "skill_mean": summary["mean"],
                "skill_min": summary["min"],
                "worst_chip": summary["worst_chip"],
                "chips": summary["chips"],
                "per_chip": runs[0]["n"] if task == "art" else len(runs[0]["earned_scores"]),
                "seed": summary["seed"],
                "energy_j": sum(energy_per_unit_j(r, task) for r in runs) / len(runs),
                "dac_count": dac_count(bias, SHAPES[task]),
                "checkpoint": summary["checkpoint"],
                "commands": [strip(r["command"]) for r in runs],
            }
    out.write_text(json.dumps(table, indent=1) + "\n")
    header = ("task", "bias", "bias sources", "model", "held-out chips", "skill: mean (worst chip)", "energy")
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|---|")
    order = {name: i for i, name in enumerate(BIAS_TOPOLOGIES)}
    for task, rows in table.items():
        unit = "per sequence" if task == "art" else "per game"
        for row in sorted(
            rows.values(), key=lambda r: (order[r["bias"]], r["model"], r["calibration"] or "", r["chips"][0])
        ):
            skill = (
                f"{row['skill_mean']:.4f} ({row['skill_min']:.4f})"
                if task == "art"
                else f"{row['skill_mean']:+.1f} ({row['skill_min']:+.1f})"
            )
            joules = row["energy_j"]
            energy = f"{joules * 1e6:.3g} uJ {unit}" if task == "art" else f"{joules:.3g} J {unit}"
            what = "sequences" if task == "art" else "games"
            chips = f"{len(row['chips'])} ({row['chips'][0]}-{row['chips'][-1]}) x {row['per_chip']:,} {what}"
            model = row["model"] + (
                f" on calibration record {row['calibration']}" if row["calibration"] else ""
            )
            cells = (task.upper(), row["bias"], f"{row['dac_count']:,}", model, chips, skill, energy)
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
