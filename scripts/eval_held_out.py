"""Evaluate a checkpoint on held-out chips through the CLI, one `hwloop` run per chip, and collect the JSON.

    python scripts/eval_held_out.py art CHECKPOINT OUT.json --chips 910-914 --seed 78 --n 20000 \
        --backend emulated --option bias=lines
    python scripts/eval_held_out.py pong CHECKPOINT OUT.json --chips 910-914 --seed 7800 --episodes 10 \
        --backend emulated

Each chip is the backend seed (`--backend-seed`); the test sequences or games (`--seed`) are the same on
every chip. The output holds every run's own JSON result (with the command that produced it) and the
mean and range over chips of the score (ART accuracy, Pong mean earned score). Chips and seeds here must
be ones the checkpoint was neither trained nor chosen on.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path


def chips(text: str) -> list[int]:
    """'910-914' -> [910, ..., 914]; '3,5' -> [3, 5]."""
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["art", "pong"])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--chips", type=chips, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--n", type=int, default=20000, help="ART: test sequences per chip")
    parser.add_argument("--episodes", type=int, default=10, help="Pong: games per chip")
    parser.add_argument("--backend", default="emulated")
    parser.add_argument("--option", action="append", default=[], help="backend option KEY=VALUE")
    parser.add_argument("--calibration", default=None)
    args = parser.parse_args()

    runs: dict[str, dict] = {}
    for chip in args.chips:
        cmd = ["hwloop", args.task]
        cmd += ["eval"] if args.task == "art" else []
        cmd += ["--checkpoint", args.checkpoint, "--backend", args.backend, "--seed", str(args.seed)]
        cmd += ["--n", str(args.n)] if args.task == "art" else ["--episodes", str(args.episodes)]
        if args.backend != "ideal":
            cmd += ["--backend-seed", str(chip)]
        if args.calibration:
            cmd += ["--calibration", args.calibration]
        for option in args.option:
            cmd += ["--backend-option", option]
        cmd += ["--json"]
        done = subprocess.run(
            [sys.executable, "-m", "hwloop.cli", *cmd[1:]], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            sys.exit(f"{shlex.join(cmd)} failed: {done.stderr.strip().splitlines()[-1]}")
        result = json.loads(done.stdout)
        result["command"] = shlex.join(cmd)
        runs[str(chip)] = result
        write_summary(args, runs)  # after every chip: a long run keeps what it measured
        print(f"chip {chip}: {score_of(args.task, result):.4f}", file=sys.stderr, flush=True)
        if args.backend == "ideal":
            break
    summary = write_summary(args, runs)
    print(f"mean {summary['mean']:.4f} (min {summary['min']:.4f}, max {summary['max']:.4f})", file=sys.stderr)


def score_of(task: str, result: dict) -> float:
    """ART accuracy, or the mean earned Pong score of one run."""
    return float(result["accuracy"] if task == "art" else result["mean_earned_score"])


def write_summary(args: argparse.Namespace, runs: dict[str, dict]) -> dict:
    """Mean, range and worst chip over the runs so far, with every run's JSON, written to ``args.out``."""
    scores = {chip: score_of(args.task, r) for chip, r in runs.items()}
    summary = {
        "checkpoint": args.checkpoint,
        "backend": args.backend,
        "options": args.option,
        "seed": args.seed,
        "chips": list(runs),
        "mean": sum(scores.values()) / len(scores),
        "min": min(scores.values()),
        "max": max(scores.values()),
        "worst_chip": min(scores, key=lambda c: scores[c]),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
