"""Sweep throughput: points per second on Ray (a local ``ray.init()`` cluster) vs the local process pool,
side by side in one run, on the same spec and the same cores.

The spec: ART accuracy of the shipped STPN-11 on ``emulated`` (default card), 4 read-noise x 4 d2d-tau
values x 2 chip seeds = 32 points of 500 sequences each, one CPU per point, as many workers as cores.
Each executor runs the whole sweep into a fresh dataset, in alternating order over ``--rounds``.
Reported per executor (medians over rounds):

    end-to-end points/s   all points / wall time of ``run_sweep`` (includes starting the cluster or
                          pool and each worker's first imports: what a short sweep costs)
    steady points/s       (points - 1) / time from the first result to the last (the rate a long sweep
                          settles at)

Both executors must produce identical accuracies (checked; the benchmark stops otherwise).

    python benchmarks/bench_sweep.py [--rounds 2]      (writes benchmarks/results/sweep.json)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.sweeps.runner import run_sweep
from experiments.sweeps.spec import spec_from_mapping
from experiments.sweeps.store import read_results

OUT = Path(__file__).resolve().parent / "results" / "sweep.json"
SPEC = {
    "name": "bench-sweep",
    "task": {"kind": "art-eval", "n": 500},
    "backend": {"name": "emulated"},
    "grid": [
        {"param": "variability.read_noise_rel", "values": [0.0, 0.005, 0.01, 0.02]},
        {"param": "variability.d2d_tau_rel", "values": [0.0, 0.2, 0.4, 0.8]},
    ],
    "seeds": {"chip": [0, 1]},
    "execution": {"cpus_per_point": 1, "retries": 0},
}
GOAL_RAY_VS_POOL = 0.8  # Ray's steady rate at least 80% of the pool's on one machine


def one_run(executor: str, workers: int) -> tuple[dict[str, float], dict[str, float]]:
    """Run the sweep once on ``executor``; returns its timings and the accuracy per point id."""
    spec = spec_from_mapping(SPEC)
    arrivals: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        outcome = run_sweep(
            spec,
            Path(tmp) / "res",
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            on_row=lambda row: arrivals.append(time.perf_counter()),
        )
        wall = time.perf_counter() - start
        if outcome.failed:
            raise SystemExit(f"{executor}: {outcome.failed} points failed: {outcome.failures[:3]}")
        _, table = read_results(Path(tmp) / "res")
        accuracy = {row["point_id"]: row["accuracy"] for row in table.to_pylist()}
    points = len(arrivals)
    steady = (points - 1) / (arrivals[-1] - arrivals[0])
    return {"points": points, "wall_s": wall, "end_to_end_pps": points / wall, "steady_pps": steady}, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"ray": [], "pool": []}
    reference: dict[str, float] | None = None
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = ["ray", "pool"] if r % 2 == 0 else ["pool", "ray"]
        for executor in order:
            timing, accuracy = one_run(executor, args.workers)
            if reference is None:
                reference = accuracy
            elif accuracy != reference:
                raise SystemExit(f"{executor} gave different accuracies than the first run")
            runs[executor].append(timing)
            print(
                f"round {r + 1} {executor:4s}: {timing['points']:.0f} points in {timing['wall_s']:.1f} s, "
                f"end-to-end {timing['end_to_end_pps']:.2f}, steady {timing['steady_pps']:.2f} points/s"
            )
    med: dict[str, dict[str, float]] = {
        ex: {key: statistics.median(t[key] for t in ts) for key in ("wall_s", "end_to_end_pps", "steady_pps")}
        for ex, ts in runs.items()
    }
    ratio = med["ray"]["steady_pps"] / med["pool"]["steady_pps"]
    print(f"{'executor':8s} {'end-to-end pts/s':>17s} {'steady pts/s':>13s}")
    for ex, m in med.items():
        print(f"{ex:8s} {m['end_to_end_pps']:17.2f} {m['steady_pps']:13.2f}")
    print(
        f"goal: Ray steady rate >= {GOAL_RAY_VS_POOL}x the pool's -> "
        f"{'met' if ratio >= GOAL_RAY_VS_POOL else 'NOT met'} ({ratio:.2f}x)"
    )
    headline: list[dict[str, Any]] = [
        {
            "name": "sweep points/s on Ray, steady (ART, 500 seq/point)",
            "value": med["ray"]["steady_pps"],
            "unit": "points/s",
            "goal": None,
        },
        {
            "name": "sweep points/s on process pool, steady",
            "value": med["pool"]["steady_pps"],
            "unit": "points/s",
            "goal": None,
        },
        {
            "name": "sweep steady rate, Ray vs process pool",
            "value": ratio,
            "unit": "x",
            "goal": f">= {GOAL_RAY_VS_POOL}",
            "default_configuration": True,
        },
        {
            "name": "sweep of 32 points end to end on Ray (incl. cluster start)",
            "value": med["ray"]["wall_s"],
            "unit": "s",
            "goal": None,
        },
        {
            "name": "sweep of 32 points end to end on process pool",
            "value": med["pool"]["wall_s"],
            "unit": "s",
            "goal": None,
        },
    ]
    payload = {
        "benchmark": "sweep",
        "spec": SPEC,
        "workers": args.workers,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        "runs": runs,
        "medians": med,
        "ray_vs_pool_steady": ratio,
        "headline": headline,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
