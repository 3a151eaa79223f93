"""STPN inference time per crossbar backend, side by side in one run, at batch 16 and batch 1.

Layer H = 64, I = 2592 (the STPN Pong layer), 10 steps, torch.no_grad, every thread pool pinned to
one thread (``single_thread``). The headline and its goal are the DEFAULT configuration users get:
``make_backend("emulated")`` with no non-ideality switch passed, so the row follows whatever the
default becomes; goal <= 1.5x the ideal backend's time, in CPU time and in wall time, at both batch
sizes. Subsets (c2c off; read noise, decay, d2d and energy only; native normalisation) and aihwkit
are printed beside it without a goal. Rounds are interleaved (every row once per round); the median
per-step time is reported as CPU time and wall time, with the CPU/wall ratio of every row (a row
whose CPU time exceeds 1.2x its wall time is flagged: a second thread was charged to it).

    python benchmarks/bench_backends.py [--rounds 15] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import single_thread
import torch

from hwloop.crossbar import make_backend
from hwloop.errors import HwloopError
from hwloop.stpn import STPN

H, I = 64, 2592
BATCHES = (16, 1)
GOAL_RATIO = 1.5
OUT = Path(__file__).resolve().parent / "results" / "backends.json"

DEFAULT_LABEL = "emulated, default configuration"
# label -> (backend, options, is the default configuration)
CONFIGS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "ideal": ("ideal", {}, False),
    DEFAULT_LABEL: ("emulated", {}, True),
    "emulated subset: default without c2c": ("emulated", {"c2c": False}, False),
    "emulated subset: read noise, decay, d2d, energy": (
        "emulated",
        {"c2c": False, "saturation": False, "stuck": False, "quantise": False},
        False,
    ),
    "emulated subset: default, native normalisation": ("emulated", {"normalisation": "native"}, False),
    "aihwkit": ("aihwkit", {}, False),
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
    single_thread.pin()
    torch.manual_seed(0)
    xs_all = (torch.rand(max(BATCHES), args.steps, I) < 0.1).float()
    reference = STPN(I, H).state_dict()
    layers: dict[tuple[int, str], STPN] = {}
    skipped: dict[str, str] = {}
    for batch in BATCHES:
        for label, (name, opts, _) in CONFIGS.items():
            if label in skipped:
                continue
            layer = STPN(I, H)
            layer.load_state_dict(reference)
            try:
                layer.set_backend(make_backend(name, **opts))
                with torch.no_grad():
                    layer.run(xs_all[:batch, :2])  # program, compile kernels, warm caches
            except HwloopError as exc:
                skipped[label] = str(exc)
                continue
            layers[(batch, label)] = layer
    walls: dict[tuple[int, str], list[float]] = {key: [] for key in layers}
    cpus: dict[tuple[int, str], list[float]] = {key: [] for key in layers}
    with torch.no_grad():
        for _ in range(args.rounds):
            for (batch, label), layer in layers.items():
                wall, cpu = _time_run(layer, xs_all[:batch])
                walls[(batch, label)].append(wall / args.steps)
                cpus[(batch, label)].append(cpu / args.steps)
    load = os.getloadavg()
    rows: list[dict[str, Any]] = []
    goals: dict[str, bool] = {}
    print(f"STPN inference, H={H} I={I}, {args.steps} steps, medians of {args.rounds} rounds, 1 thread")
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for batch in BATCHES:
        ideal_cpu = statistics.median(cpus[(batch, "ideal")])
        ideal_wall = statistics.median(walls[(batch, "ideal")])
        print(f"\nbatch {batch}")
        print(f"{'backend':50s} {'cpu ms':>8s} {'x ideal':>8s} {'wall ms':>8s} {'x ideal':>8s} cpu/wall")
        for label, (_, _, is_default) in CONFIGS.items():
            if (batch, label) not in layers:
                continue
            cpu, wall = statistics.median(cpus[(batch, label)]), statistics.median(walls[(batch, label)])
            row = {
                "backend": label,
                "batch": batch,
                "default_configuration": is_default,
                "cpu_ms_per_step": cpu * 1e3,
                "cpu_ratio_to_ideal": cpu / ideal_cpu,
                "wall_ms_per_step": wall * 1e3,
                "wall_ratio_to_ideal": wall / ideal_wall,
                "cpu_over_wall": cpu / wall,
                "cpu_over_wall_flag": cpu > single_thread.CPU_OVER_WALL_LIMIT * wall,
            }
            rows.append(row)
            print(
                f"{label:50s} {cpu * 1e3:8.2f} {cpu / ideal_cpu:8.2f} {wall * 1e3:8.2f} "
                f"{wall / ideal_wall:8.2f} {cpu / wall:8.2f}{single_thread.cpu_wall_flag(cpu, wall)}"
            )
            if is_default:
                for kind in ("cpu", "wall"):
                    goals[f"batch {batch}, {kind}"] = row[f"{kind}_ratio_to_ideal"] <= GOAL_RATIO
    for label, why in skipped.items():
        rows.append({"backend": label, "skipped": why})
        print(f"{label:50s} skipped: {why}")
    print()
    for what, met in goals.items():
        print(f"goal: {DEFAULT_LABEL} <= {GOAL_RATIO}x ideal ({what}): {'met' if met else 'NOT met'}")
    flagged = [f"{r['backend']} (batch {r['batch']})" for r in rows if r.get("cpu_over_wall_flag")]
    if flagged:
        print(f"flagged, CPU > {single_thread.CPU_OVER_WALL_LIMIT}x wall: {', '.join(flagged)}")
    headline = []
    for row in rows:
        if "cpu_ratio_to_ideal" not in row or row["backend"] == "ideal":
            continue
        kinds = ("cpu", "wall") if row["default_configuration"] else ("cpu",)
        for kind in kinds:
            headline.append(
                {
                    "name": f"STPN inference, {row['backend']}, batch {row['batch']}, vs ideal "
                    f"({'CPU' if kind == 'cpu' else 'wall'} time)",
                    "value": row[f"{kind}_ratio_to_ideal"],
                    "unit": "x",
                    "goal": f"<= {GOAL_RATIO}" if row["default_configuration"] else None,
                    "default_configuration": row["default_configuration"],
                }
            )
    headline.sort(key=lambda item: not item["default_configuration"])  # the default first
    payload = {
        "shape": {"hidden": H, "input": I, "batches": list(BATCHES), "steps": args.steps},
        "threads": 1,
        "rounds": args.rounds,
        "load_average": load,
        "goal_ratio": GOAL_RATIO,
        "goal_configuration": DEFAULT_LABEL,
        "goals_met": goals,
        "goal_measured_on": "median CPU time and median wall time per step",
        "rows": rows,
        "headline": headline,  # the figures benchmarks/summary.py puts in the table
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
