"""STPN inference time per crossbar backend, side by side in one run.

Layer H = 64, I = 2592 (the STPN Pong layer), batch 16, 10 steps, one thread, torch.no_grad.
Rows: ideal; emulated with read noise, decay, d2d variability and energy counters on (the goal's
configuration: <= 1.5x the ideal's time); the same plus the conductance window, stuck devices and
quantisation; emulated with every non-ideality including per-write c2c noise (the backend's
default); the goal configuration in native normalisation; aihwkit when
``make_backend("aihwkit")`` works (otherwise the row says why). Rounds are interleaved (every
backend once per round); the median per-step time is reported both as wall-clock time and as the
process's CPU time. The ratio is judged on CPU time, which on a shared machine excludes the time the
process waits for a core (wall-clock figures are printed beside it).

    python benchmarks/bench_backends.py [--rounds 15] [--steps 10]
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin: a spinning pool from one implementation (aihwkit, numba)
# would be charged to the CPU time of the next one timed. Set before torch / numba load libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from hwloop.crossbar import make_backend
from hwloop.errors import HwloopError
from hwloop.stpn import STPN

H, I, B = 64, 2592, 16
GOAL_RATIO = 1.5
OUT = Path(__file__).resolve().parent / "results" / "backends.json"

GOAL = {"c2c": False, "saturation": False, "stuck": False, "quantise": False}  # noise, decay, d2d, energy on
GOAL_LABEL = "emulated: read noise, decay, d2d, energy"
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "ideal": ("ideal", {}),
    GOAL_LABEL: ("emulated", GOAL),
    "emulated: + window, stuck, quantisation": ("emulated", {"c2c": False}),
    "emulated: everything incl. c2c (default)": ("emulated", {}),
    "emulated native: read noise, decay, d2d, energy": ("emulated", {**GOAL, "normalisation": "native"}),
    "aihwkit": ("aihwkit", {}),
}


def _time_run(layer: STPN, xs: torch.Tensor) -> tuple[float, float]:
    """(wall, cpu) seconds of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    layer.run(xs)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xs = (torch.rand(B, args.steps, I) < 0.1).float()
    reference = STPN(I, H).state_dict()
    layers: dict[str, STPN] = {}
    skipped: dict[str, str] = {}
    for label, (name, opts) in CONFIGS.items():
        layer = STPN(I, H)
        layer.load_state_dict(reference)
        try:
            layer.set_backend(make_backend(name, **opts))
            with torch.no_grad():
                layer.run(xs[:, :2])  # program, compile kernels, warm caches
        except HwloopError as exc:
            skipped[label] = str(exc)
            continue
        layers[label] = layer
    walls: dict[str, list[float]] = {label: [] for label in layers}
    cpus: dict[str, list[float]] = {label: [] for label in layers}
    with torch.no_grad():
        for _ in range(args.rounds):
            for label, layer in layers.items():
                wall, cpu = _time_run(layer, xs)
                walls[label].append(wall / args.steps)
                cpus[label].append(cpu / args.steps)
    ideal_cpu, ideal_wall = statistics.median(cpus["ideal"]), statistics.median(walls["ideal"])
    rows = []
    print(f"STPN inference, H={H} I={I} batch={B}, {args.steps} steps, medians of {args.rounds} rounds")
    print(f"{'backend':48s} {'cpu ms/step':>11s} {'x ideal':>8s} {'wall ms/step':>12s} {'x ideal':>8s}")
    for label in layers:
        cpu, wall = statistics.median(cpus[label]), statistics.median(walls[label])
        rows.append(
            {
                "backend": label,
                "cpu_ms_per_step": cpu * 1e3,
                "cpu_ratio_to_ideal": cpu / ideal_cpu,
                "wall_ms_per_step": wall * 1e3,
                "wall_ratio_to_ideal": wall / ideal_wall,
            }
        )
        ratios = f"{cpu / ideal_cpu:8.2f} {wall * 1e3:12.2f} {wall / ideal_wall:8.2f}"
        print(f"{label:48s} {cpu * 1e3:11.2f} {ratios}")
    for label, why in skipped.items():
        rows.append({"backend": label, "skipped": why})
        print(f"{label:48s} skipped: {why}")
    goal_label = GOAL_LABEL
    ratio = statistics.median(cpus[goal_label]) / ideal_cpu
    print(
        f"goal: {goal_label} <= {GOAL_RATIO}x ideal (CPU time): "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'} ({ratio:.2f}x)"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "shape": {"hidden": H, "input": I, "batch": B, "steps": args.steps},
        "threads": 1,
        "rounds": args.rounds,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
        "goal_measured_on": "median CPU time per step",
        "rows": rows,
        "headline": [  # the figures benchmarks/summary.py puts in the README table
            {
                "name": f"STPN inference, {row['backend']}, vs ideal (CPU time)",
                "value": row["cpu_ratio_to_ideal"],
                "unit": "x",
                "goal": f"<= {GOAL_RATIO}" if row["backend"] == GOAL_LABEL else None,
            }
            for row in rows
            if "cpu_ratio_to_ideal" in row and row["backend"] != "ideal"
        ],
    }
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
