"""STPN inference speed: the ideal backend's fused step vs a naive per-step torch formulation.

Shape of the Pong agent's recurrent layer: H = 64 hidden units fed by I = 2592 inputs, float32.
Reports microseconds per sample-step (one time step of one sample) at batch 1 and 16 for

    fused     ``STPN.step`` on the ideal crossbar under ``torch.no_grad`` (the hand-fused kernels)
    naive     the same equations as one would first write them in torch: materialise G = W + F,
              its row norms, a bmm, then the update (``naive_step`` below)
    compiled  ``torch.compile(naive_step)``, when it compiles here (reported, not required)

The machine is shared, so implementations are interleaved: every round times each of them for a
few consecutive steps in a rotating order, and the medians over rounds are compared. Before
timing, every implementation runs the same steps from the same state and must agree with the
naive one to float tolerance, or the benchmark stops with an error.

    python benchmarks/bench_stpn_step.py [--threads 1] [--rounds 21] [--no-compile]

Prints a table and writes benchmarks/results/stpn_step.json.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin: a spinning pool from one implementation (aihwkit, numba)
# would be charged to the CPU time of the next one timed. Set before torch / numba load libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import torch
from torch import Tensor

from hwloop.stpn import STPN

INPUT_SIZE, HIDDEN_SIZE = 2592, 64
GOAL_SPEEDUP = {1: 2.0, 16: 5.0}  # fused vs naive, from the issue
RESULT_PATH = Path(__file__).resolve().parent / "results" / "stpn_step.json"

State = tuple[Tensor, Tensor]
Step = Callable[[Tensor, State], State]


def naive_step(x: Tensor, h: Tensor, F: Tensor, W: Tensor, lam: Tensor, gamma: Tensor, b: Tensor) -> State:
    """One STPN step written plainly: x (B, I), h (B, H), F (B, H, K); returns (h, F)."""
    z = torch.cat([x, h], dim=1)
    G = W + F
    n = torch.linalg.vector_norm(G, dim=2) + 1e-16
    y = torch.bmm(G, z.unsqueeze(2)).squeeze(2) / n
    h = torch.tanh(y + b)
    F = lam * F / n.unsqueeze(2) + gamma * h.unsqueeze(2) * z.unsqueeze(1)
    return h, F


def implementations(layer: STPN, compile_naive: bool) -> tuple[dict[str, Step], dict[str, object]]:
    """The step functions to time, and notes (compile time or why compiling failed)."""
    params = (layer.weight, layer.weight_lambda, layer.weight_gamma, layer.bias)
    steps: dict[str, Step] = {
        "fused": layer.step,
        "naive": lambda x, s: naive_step(x, *s, *params),
    }
    notes: dict[str, object] = {}
    if compile_naive:
        compiled = torch.compile(naive_step, dynamic=False)
        steps["compiled"] = lambda x, s: compiled(x, *s, *params)
    return steps, notes


def check_agreement(steps: dict[str, Step], x: Tensor, state: State, n_steps: int, notes: dict) -> None:
    """Run every implementation n_steps from ``state``; exit with an error unless all match naive."""
    finals: dict[str, State] = {}
    for name, step in list(steps.items()):
        s = state
        started = time.perf_counter()
        try:
            for _ in range(n_steps):
                s = step(x, s)
        except Exception as exc:  # torch.compile failing here is reported, not fatal
            if name != "compiled":
                raise
            notes["compiled"] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            del steps[name]
            continue
        if name == "compiled":
            notes["compiled_first_call_s"] = round(time.perf_counter() - started, 1)
        finals[name] = s
    h_ref, F_ref = finals["naive"]
    for name, (h, F) in finals.items():
        h_err = (h - h_ref).abs().max().item()
        F_err = ((F - F_ref).abs().max() / F_ref.abs().max()).item()
        if not (h_err <= 1e-5 and F_err <= 1e-5):
            sys.exit(
                f"error: {name} disagrees with naive after {n_steps} steps: max|dh| {h_err:.3g}, "
                f"max|dF|/max|F| {F_err:.3g}"
            )
        notes[f"{name}_max_abs_dh"] = h_err
        notes[f"{name}_max_rel_dF"] = F_err


def time_interleaved(steps: dict[str, Step], x: Tensor, state: State, rounds: int, per_round: int) -> dict:
    """Microseconds per sample-step of each implementation over interleaved rounds.

    Both wall-clock time and the process's CPU time are recorded: on a shared machine CPU time
    leaves out the time the process sat descheduled behind other jobs.
    """
    batch = x.shape[0]
    names = list(steps)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    states = dict.fromkeys(names, state)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            s = states[name]
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                s = steps[name](x, s)
            cpu[name].append((time.process_time() - cpu_start) / (per_round * batch) * 1e6)
            wall[name].append((time.perf_counter() - wall_start) / (per_round * batch) * 1e6)
            states[name] = s
    return {
        name: {
            "median_us": statistics.median(wall[name]),
            "min_us": min(wall[name]),
            "max_us": max(wall[name]),
            "cpu_median_us": statistics.median(cpu[name]),
            "rounds_us": [round(v, 2) for v in wall[name]],
            "rounds_cpu_us": [round(v, 2) for v in cpu[name]],
        }
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch (and numba) threads; 1 is stable on a shared box"
    )
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = STPN(INPUT_SIZE, HIDDEN_SIZE).eval()
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    with torch.no_grad():
        for batch in args.batches:
            x = torch.rand(batch, INPUT_SIZE)  # pixel-like inputs in [0, 1)
            state = layer.initial_state(batch)
            for _ in range(5):  # a settled, non-zero plastic state
                state = layer.step(x, state)
            steps, notes = implementations(layer, compile_naive=not args.no_compile)
            check_agreement(steps, x, state, n_steps=20, notes=notes)
            per_round = max(2, 60 // batch)
            timings = time_interleaved(steps, x, state, args.rounds, per_round)
            for t in timings.values():
                t["speedup_vs_naive"] = timings["naive"]["median_us"] / t["median_us"]
                t["cpu_speedup_vs_naive"] = timings["naive"]["cpu_median_us"] / t["cpu_median_us"]
            results[str(batch)] = {"steps_per_round": per_round, "timings": timings, "notes": notes}

    goals = {}
    for b, r in results.items():
        if int(b) in GOAL_SPEEDUP:
            fused = r["timings"]["fused"]
            goal = GOAL_SPEEDUP[int(b)]
            goals[b] = {
                "goal": goal,
                "wall": fused["speedup_vs_naive"],
                "cpu": fused["cpu_speedup_vs_naive"],
                "met_wall": fused["speedup_vs_naive"] >= goal,
                "met_cpu": fused["cpu_speedup_vs_naive"] >= goal,
            }
    report = {
        "benchmark": "stpn_step",
        "shape": {"input_size": INPUT_SIZE, "hidden_size": HIDDEN_SIZE, "dtype": "float32"},
        "unit": "microseconds per sample-step (wall-clock and process CPU time), medians over rounds",
        "threads": args.threads,
        "rounds": args.rounds,
        **machine_and_versions(load_before[0]),
        "results": results,
        "goals_fused_vs_naive": goals,
        "headline": [  # the figures benchmarks/summary.py puts in the README table
            {
                "name": f"STPN step, fused vs naive torch, batch {b} (CPU time)",
                "value": g["cpu"],
                "unit": "x",
                "goal": f">= {g['goal']}",
                "default_configuration": True,
            }
            for b, g in goals.items()
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


def machine_and_versions(load_before: float) -> dict[str, dict]:
    """The report's "machine" (with the 1-min load average before and now) and "versions" entries."""
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        },
        "versions": {
            "torch": torch.__version__,
            "numba": numba.__version__,
            "python": platform.python_version(),
        },
    }


def print_table(report: dict) -> None:
    load = ", ".join(f"{v:.1f}" for v in report["machine"]["loadavg_1min_before_after"])
    print(
        f"STPN step, H={HIDDEN_SIZE} I={INPUT_SIZE} float32, {report['threads']} thread(s), "
        f"{report['rounds']} interleaved rounds, load average before/after: {load}"
    )
    print("microseconds per sample-step (medians); wall = elapsed time, cpu = process CPU time")
    print(f"{'batch':>5}  {'impl':<9}{'wall us':>10}{'min':>9}{'max':>9}{'x naive':>9}", end="")
    print(f"{'cpu us':>10}{'x naive':>9}")
    for batch, r in report["results"].items():
        for name, t in r["timings"].items():
            print(
                f"{batch:>5}  {name:<9}{t['median_us']:>10.1f}{t['min_us']:>9.1f}{t['max_us']:>9.1f}"
                f"{t['speedup_vs_naive']:>8.2f}x{t['cpu_median_us']:>10.1f}{t['cpu_speedup_vs_naive']:>8.2f}x"
            )
        for key, value in r["notes"].items():
            if key.startswith("compiled") and not key.startswith("compiled_max"):
                print(f"{'':>5}  {key}: {value}")
    for batch, g in report["goals_fused_vs_naive"].items():
        verdicts = ", ".join(
            f"{k} {g[k]:.2f}x ({'met' if g['met_' + k] else 'NOT MET'})" for k in ("wall", "cpu")
        )
        print(f"goal batch {batch}: fused >= {g['goal']}x naive -> {verdicts}")


if __name__ == "__main__":
    main()
