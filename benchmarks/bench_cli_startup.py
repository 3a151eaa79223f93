"""Benchmark: how long ``hwloop --help`` and ``hwloop <group> --help`` take, in fresh processes.

Each help runs ``REPEATS`` times (``python -m hwloop.cli ... --help``); the median wall time is reported
beside that of a bare interpreter (``python -c pass``) on the same machine in the same run. Goal: every
help under 0.5 s. tests/test_cli_imports.py checks (untimed) that no heavy module is imported.

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py`` (writes benchmarks/results/cli_startup.json).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5
HELPS = [[], ["art"], ["pong"], ["calibrate"], ["devices"], ["instruments"]]
GOAL_S = 0.5


def timed(argv: list[str]) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``argv`` in a fresh process over REPEATS runs. The CPU time (user +
    system of the child) does not grow when other jobs share the cores; the wall time does."""
    walls, cpus = [], []
    for _ in range(REPEATS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    bare = timed([sys.executable, "-c", "pass"])
    rows = {
        " ".join(["hwloop", *group, "--help"]): timed([sys.executable, "-m", "hwloop.cli", *group, "--help"])
        for group in HELPS
    }
    worst = max(wall for wall, _ in rows.values())
    worst_cpu = max(cpu for _, cpu in rows.values())
    print(f"{'command':<30}{'wall s':>10}{'CPU s':>10}")
    for name, (wall, cpu) in {"python -c pass": bare, **rows}.items():
        print(f"{name:<30}{wall:>10.3f}{cpu:>10.3f}")
    print(
        f"slowest help {worst:.3f} s wall, {worst_cpu:.3f} s CPU (goal < {GOAL_S} s); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    goal = f"< {GOAL_S}"
    result = {
        "headline": [
            {
                "name": "slowest `hwloop [group] --help`, wall",
                "value": round(worst, 3),
                "unit": "s",
                "goal": goal,
                "default_configuration": True,
            },
            {
                "name": "slowest `hwloop [group] --help`, CPU",
                "value": round(worst_cpu, 3),
                "unit": "s",
                "goal": goal,
                "default_configuration": True,
            },
        ],
        "repeats": REPEATS,
        "python_bare_wall_cpu_s": bare,
        "help_wall_cpu_s": rows,
        "goal_met": worst < GOAL_S,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    out = ROOT / "benchmarks" / "results" / "cli_startup.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
