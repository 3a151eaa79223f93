"""Cost of hardware-aware training: one ART training batch on the 'aware' backend vs the ideal fused BPTT.

ART shape (STPN-11, 37 inputs, batch 128, 9 steps, float32). One timed "batch" is forward, cross-entropy
at the last step, ``.backward()``:

    ideal     the ideal backend (fused numba step with its hand-derived backward)
    aware     ``hwloop.backends.aware.AwareCrossbar``, every non-ideality on: a fresh chip drawn and
              programmed by the emulated backend per batch, then plain torch autograd per step

Implementations are interleaved (rotating order per round); medians of wall and process CPU time.

    python benchmarks/bench_aware_training.py [--threads 1] [--rounds 15]

Prints a table and writes benchmarks/results/aware_training.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from experiments.art.data import make_split
from experiments.art.model import ARTModel
from hwloop.backends.aware import AwareCrossbar, trainable_lambda_range

RESULT_PATH = Path(__file__).resolve().parent / "results" / "aware_training.json"
BATCH = 128


def make_batch_runner(backend: str) -> Callable[[], None]:
    """A closure running one forward + backward of a training batch on ``backend``."""
    torch.manual_seed(0)
    model = ARTModel("stpn", 11, lambda_range=trainable_lambda_range(None, 0.1, (11, 48)))
    if backend == "aware":
        model.set_backend(AwareCrossbar(seed=10_000))
    data = make_split(BATCH, 0, "train")

    def run() -> None:
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(data.xs), data.ys)
        loss.backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runners = {name: make_batch_runner(name) for name in ("ideal", "aware")}
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for name in names:  # untimed warm-up (numba compile, page faults)
        runners[name]()
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            runners[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    result = {
        name: {"wall_ms": 1e3 * statistics.median(wall[name]), "cpu_ms": 1e3 * statistics.median(cpu[name])}
        for name in names
    }
    result["ratio_cpu_aware_over_ideal"] = result["aware"]["cpu_ms"] / result["ideal"]["cpu_ms"]  # type: ignore[assignment]
    print(f"{'backend':8s} {'wall ms/batch':>14s} {'cpu ms/batch':>13s}")
    for name in names:
        print(f"{name:8s} {result[name]['wall_ms']:14.1f} {result[name]['cpu_ms']:13.1f}")
    print(f"aware / ideal (CPU time): {result['ratio_cpu_aware_over_ideal']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"threads": args.threads, "rounds": args.rounds, **result}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
