"""Benchmark: ``hwloop calibrate report`` on the 169,984-device campaign of ``bench_calibration_e2e.py``.

The campaign file (169,984 single-exponential relaxations, 200 samples each, 1% read noise) and its record
are built first (not timed); then the report command runs in a fresh process, as a user runs it, and its
wall time (process start included) and peak resident memory (the child's own VmHWM; Linux) are
measured. The report reads only the
traces it draws and takes the usable devices' laws from the record (``calibration.report``).
Goals: < 30 s, < 1 GB.

Run: ``.venv/bin/python benchmarks/bench_calibration_report.py [KEEP_DIR]`` (writes
benchmarks/results/calibration_report.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_calibration_e2e import SHAPE, synthetic, write_campaign

from calibration.analysis import build_record

ROOT = Path(__file__).resolve().parents[1]
# the report command as a user runs it, then its own peak resident memory (MB) on the last stderr line
CHILD = """
import runpy, sys
sys.argv = ["hwloop", *sys.argv[1:]]
try:
    runpy.run_module("hwloop.cli", run_name="__main__")
except SystemExit as exc:
    if exc.code:
        raise
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print("peak_mb", int(hwm.split()[1]) / 1024, file=sys.stderr)
"""


def main() -> None:
    load_before = os.getloadavg()[0]
    keep = sys.argv[1] if len(sys.argv) > 1 else None  # a directory to keep the campaign and record in
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t, g, _ = synthetic()
        g[::997] += 0.3 * (g[::997, :1] - 5e-9) * (t > 2.5)  # a few stepwise devices to show as failed
        path = work / "layer.h5"
        write_campaign(path, t, g)
        del g
        record, _ = build_record(path, model="exp")
        record_path = record.save(work / "layer.json")
        del record
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        args = ["calibrate", "report", str(record_path), "--out", str(work / "report"), "--data", str(path)]
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, *args], check=True, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        # the child's own peak (VmHWM of its address space): ru_maxrss would count the pages it shared
        # with this big parent before exec
        peak_mb = float(done.stderr.strip().splitlines()[-1].split()[-1])
    devices = SHAPE[0] * SHAPE[1]
    print(
        f"calibrate report, {devices} devices: {wall:.1f} s wall (goal < 30 s), "
        f"peak {peak_mb:.0f} MB (goal < 1024)"
    )
    result = {
        "headline": [
            {
                "name": "calibrate report, 169,984 devices",
                "value": round(wall, 2),
                "unit": "s",
                "goal": "< 30",
                "default_configuration": True,  # the command as a user runs it, no option changed
            },
            {
                "name": "calibrate report peak memory",
                "value": round(peak_mb),
                "unit": "MB",
                "goal": "< 1024",
                "default_configuration": True,
            },
        ],
        "devices": devices,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],
    }
    out = ROOT / "benchmarks" / "results" / "calibration_report.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
