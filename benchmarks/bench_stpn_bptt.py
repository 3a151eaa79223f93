"""STPN training speed: backprop through time with the fused step's hand-derived backward vs plain autograd.

Shape of the Pong agent's recurrent layer: H = 64 hidden units fed by I = 2592 inputs, float32, batch 8,
a BPTT window of T = 32 steps starting from a settled, non-zero plastic state F (gamma ~ U(-0.05, 0.05)
so that F matters). One timed "window" is forward over the 32 steps, a fixed loss, and ``.backward()``:

    fused     ``STPN.run`` on the ideal backend, which under autograd runs every step through
              ``FusedStpnStep`` (numba forward, hand-derived numba backward)
    naive     the same equations as plain torch autograd (``naive_step`` of bench_stpn_step.py)

The loss is sum(hs * R) + sum(F_T * V) with fixed random R (B, T, H) and V (B, H, K), so gradients
flow both through the outputs and through the final plastic state. Before timing, the gradients
of W, lambda, gamma, bias and xs of both implementations must agree (max error <= 1e-4 of max |grad|),
or the benchmark stops with an error. Implementations are interleaved: each round times every one
of them for one window, in a rotating order; medians over rounds are compared.

    python benchmarks/bench_stpn_bptt.py [--threads 1] [--rounds 9]

Reports frames per second (B * T sample-steps per second of a window) and microseconds per
sample-step, wall-clock and process CPU time. Prints a table and writes
benchmarks/results/stpn_bptt.json.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin: a spinning numba pool would be charged to the CPU time
# of the next implementation timed. Set before torch / numba load libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from hwloop.stpn import STPN

# The sibling benchmark's naive_step, so both benchmarks share one definition of "naive".
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stpn_step import machine_and_versions, naive_step

INPUT_SIZE, HIDDEN_SIZE = 2592, 64
BATCH, WINDOW = 8, 32
GAMMA_BOUND = 0.05  # realistic trained magnitude, so the plastic state F carries weight
SETTLE_STEPS = 8
GRAD_TOL = 1e-4  # max |g - g_naive| / max |g_naive|
RESULT_PATH = Path(__file__).resolve().parent / "results" / "stpn_bptt.json"

State = tuple[Tensor, Tensor]
Window = Callable[[], dict[str, Tensor]]


class Problem:
    """The layer, a settled initial state, an input window and the fixed loss weights."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.layer = STPN(INPUT_SIZE, HIDDEN_SIZE)
        with torch.no_grad():
            self.layer.weight_gamma.uniform_(-GAMMA_BOUND, GAMMA_BOUND)
            state = self.layer.initial_state(BATCH)
            for _ in range(SETTLE_STEPS):  # pixel-like inputs in [0, 1)
                state = self.layer.step(torch.rand(BATCH, INPUT_SIZE), state)
        self.state: State = (state[0].detach().clone(), state[1].detach().clone())
        self.xs = torch.rand(BATCH, WINDOW, INPUT_SIZE).requires_grad_(True)
        k = INPUT_SIZE + HIDDEN_SIZE
        self.r = torch.randn(BATCH, WINDOW, HIDDEN_SIZE)
        self.v = torch.randn(BATCH, HIDDEN_SIZE, k) / k**0.5

    def params(self) -> dict[str, Tensor]:
        layer = self.layer
        return {
            "W": layer.weight,
            "lambda": layer.weight_lambda,
            "gamma": layer.weight_gamma,
            "bias": layer.bias,
            "xs": self.xs,
        }

    def loss(self, hs: Tensor, F: Tensor) -> Tensor:
        return (hs * self.r).sum() + (F * self.v).sum()

    def grads(self) -> dict[str, Tensor]:
        return {name: p.grad for name, p in self.params().items()}

    def zero_grad(self) -> None:
        for p in self.params().values():
            p.grad = None

    def fused(self) -> dict[str, Tensor]:
        self.zero_grad()
        hs, (_, F), _ = self.layer.run(self.xs, self.state)
        self.loss(hs, F).backward()
        return self.grads()

    def naive(self) -> dict[str, Tensor]:
        self.zero_grad()
        layer = self.layer
        params = (layer.weight, layer.weight_lambda, layer.weight_gamma, layer.bias)
        h, F = self.state
        hs = []
        for t in range(self.xs.shape[1]):
            h, F = naive_step(self.xs[:, t], h, F, *params)
            hs.append(h)
        self.loss(torch.stack(hs, dim=1), F).backward()
        return self.grads()


def check_fused_path(problem: Problem) -> str:
    """The name of the autograd node behind the fused run's last output (must be the fused step)."""
    hs, _, _ = problem.layer.run(problem.xs[:, :1], problem.state)
    node = hs.grad_fn.next_functions[0][0] if hs.grad_fn is not None else None
    name = type(node).__name__ if node is not None else "None"
    if "FusedStpnStep" not in name:
        sys.exit(f"error: the ideal backend did not take the fused-gradient path (autograd node {name})")
    return name


def check_agreement(windows: dict[str, Window]) -> dict[str, float]:
    """Gradients of every implementation vs naive; exit with one error line if any disagree."""
    ref = {k: g.clone() for k, g in windows["naive"]().items()}
    errors: dict[str, float] = {}
    for impl, window in windows.items():
        if impl == "naive":
            continue
        got = window()
        for name, g_ref in ref.items():
            g = got[name]
            scale = g_ref.abs().max().item()
            err = (g - g_ref).abs().max().item() / scale if scale > 0 else (g - g_ref).abs().max().item()
            errors[f"{impl}_{name}"] = err
            if not err <= GRAD_TOL:
                sys.exit(
                    f"error: {impl} gradient of {name} disagrees with naive: "
                    f"max|dg|/max|g| {err:.3g} > {GRAD_TOL:g}"
                )
    errors["max_abs_grad"] = {name: g.abs().max().item() for name, g in ref.items()}  # type: ignore[assignment]
    return errors


def time_interleaved(windows: dict[str, Window], rounds: int) -> dict:
    """Seconds per window of each implementation over interleaved rounds, wall and process CPU time."""
    names = list(windows)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one untimed window each: the first after the check pays page faults
        windows[name]()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            windows[name]()
            cpu[name].append(time.process_time() - cpu_start)
            wall[name].append(time.perf_counter() - wall_start)
    steps = BATCH * WINDOW
    out = {}
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        out[name] = {
            "wall_s_per_window": w,
            "cpu_s_per_window": c,
            "wall_fps": steps / w,
            "cpu_fps": steps / c,
            "wall_us_per_sample_step": w / steps * 1e6,
            "cpu_us_per_sample_step": c / steps * 1e6,
            "min_wall_s": min(wall[name]),
            "max_wall_s": max(wall[name]),
            "rounds_wall_s": [round(v, 4) for v in wall[name]],
            "rounds_cpu_s": [round(v, 4) for v in cpu[name]],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch (and numba) threads; 1 is stable on a shared box"
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    problem = Problem()
    windows: dict[str, Window] = {"fused": problem.fused, "naive": problem.naive}
    notes: dict[str, object] = {"fused_autograd_node": check_fused_path(problem)}
    started = time.perf_counter()
    notes["grad_rel_errors"] = check_agreement(windows)  # also warms up (numba JIT / cache load)
    notes["check_and_warmup_s"] = round(time.perf_counter() - started, 2)
    timings = time_interleaved(windows, args.rounds)
    for t in timings.values():
        t["wall_speedup_vs_naive"] = timings["naive"]["wall_s_per_window"] / t["wall_s_per_window"]
        t["cpu_speedup_vs_naive"] = timings["naive"]["cpu_s_per_window"] / t["cpu_s_per_window"]

    report = {
        "benchmark": "stpn_bptt",
        "shape": {
            "input_size": INPUT_SIZE,
            "hidden_size": HIDDEN_SIZE,
            "batch": BATCH,
            "window": WINDOW,
            "dtype": "float32",
            "gamma_bound": GAMMA_BOUND,
            "settle_steps": SETTLE_STEPS,
        },
        "unit": (
            "one window = forward over T steps + loss + backward; frames/s = B*T / seconds per window; "
            "us per sample-step = seconds per window / (B*T); medians over rounds, wall and process CPU"
        ),
        "threads": args.threads,
        "rounds": args.rounds,
        **machine_and_versions(load_before[0]),
        "timings": timings,
        "notes": notes,
        "headline": [  # the figures benchmarks/summary.py puts in the README table
            {
                "name": "STPN BPTT window, fused backward vs autograd (CPU time)",
                "value": timings["fused"]["cpu_speedup_vs_naive"],
                "unit": "x",
                "goal": None,
            },
            {
                "name": "STPN BPTT training throughput, fused (CPU time)",
                "value": timings["fused"]["cpu_fps"],
                "unit": "frames/s",
                "goal": None,
            },
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


def print_table(report: dict) -> None:
    load = ", ".join(f"{v:.1f}" for v in report["machine"]["loadavg_1min_before_after"])
    print(
        f"STPN BPTT, H={HIDDEN_SIZE} I={INPUT_SIZE} float32, batch {BATCH}, window {WINDOW}, "
        f"{report['threads']} thread(s), {report['rounds']} interleaved rounds, "
        f"load average before/after: {load}"
    )
    print("forward + backward per window, medians; wall = elapsed time, cpu = process CPU time")
    print(
        f"{'impl':<7}{'wall fps':>10}{'wall us':>10}{'x naive':>9}"
        f"{'cpu fps':>10}{'cpu us':>10}{'x naive':>9}{'s/window':>10}"
    )
    for name, t in report["timings"].items():
        print(
            f"{name:<7}{t['wall_fps']:>10.1f}{t['wall_us_per_sample_step']:>10.1f}"
            f"{t['wall_speedup_vs_naive']:>8.2f}x{t['cpu_fps']:>10.1f}{t['cpu_us_per_sample_step']:>10.1f}"
            f"{t['cpu_speedup_vs_naive']:>8.2f}x{t['wall_s_per_window']:>10.3f}"
        )
    errs = {k: v for k, v in report["notes"]["grad_rel_errors"].items() if k != "max_abs_grad"}
    worst = max(errs, key=errs.get)
    print(f"gradients agree: worst max|dg|/max|g| = {errs[worst]:.2e} ({worst}), tolerance {GRAD_TOL:g}")


if __name__ == "__main__":
    main()
