"""Benchmark: does ``hwloop view`` slow the writer it follows? Writer speed with and without a viewer.

Two writers, each run alternately without and with a viewer attached (``ROUNDS`` pairs, interleaved,
medians reported):
- campaign: what ``hwloop calibrate run --resource xbarsim://16x16?seed=1`` runs (a real 16 x 16
  simulated campaign, 512 relaxations and 7680 pulse-response rows), timed inside the writer from its
  first unit to its last;
- lab log: a step-log writer appending ``LAB_STEPS`` steps of an 8 x 8 block
  (``hwloop.backends.lab_log``, flushed per step as the lab backend does) as fast as it can, timed
  inside the writer.
"With a viewer" is the real thing: ``hwloop view FILE`` (refresh every ``--period-ms``, default 1 s
as shipped) started as soon as the file exists, with a headless Chromium page connected to it
(without a browser session the server polls nothing). Each writer creates its file, waits
``WARMUP_S`` (the viewer starts and attaches meanwhile: its start-up is not the steady state being
measured), then writes, timed.
Goal: the writer's wall time with a viewer within 5 % of without.
Wall time includes contention for the 2 cores (the viewer and the browser are separate processes); the
writer's CPU time shows whether the writer itself does more work.

Run: ``.venv/bin/python benchmarks/bench_view.py [--rounds N]`` (writes benchmarks/results/view.json).
Needs chromium (Debian package) and websocket-client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chromium_cdp import Chromium  # noqa: E402

HWLOOP = [sys.executable, "-m", "hwloop.cli"]
LAB_STEPS = 3000
GOAL = 1.05

WARMUP_S = 6.0  # the writer waits this long after creating its file, so a viewer attaches first

# The campaign that `hwloop calibrate run --resource xbarsim://16x16?seed=1` runs, timed from its first
# unit to its last (the CLI's own startup is not the writer's speed).
CAMPAIGN_WRITER = f"""
import sys, time
from calibration.campaign import Campaign, CampaignConfig
from calibration.storage import CampaignFile
from drivers import SafetyLimits, open_instrument
cfg, limits = CampaignConfig(), SafetyLimits.conservative()
with open_instrument("xbarsim://16x16?seed=1", limits) as inst:
    store = CampaignFile.create(sys.argv[1], config=cfg.model_dump(mode="json"), shape=(inst.rows, inst.cols),
                                safety_limits=limits.model_dump(mode="json"))
    with store:
        campaign = Campaign(inst, store, cfg)
        time.sleep({WARMUP_S})
        start = time.perf_counter(); cpu0 = time.process_time()
        campaign.run()
        print(time.perf_counter() - start, time.process_time() - cpu0)
"""

LAB_WRITER = f"""
import sys, time
from pathlib import Path
import numpy as np
from hwloop.backends.lab_log import LabLog
log = LabLog(Path(sys.argv[1]), rows=8, cols=8, device_cols=16, pulses_per_row=2,
             attrs={{"resource": "bench"}})
rng = np.random.default_rng(0)
rows = [dict(step=k, episode=0, t_start_s=k / 15, t_end_s=k / 15 + 0.03, lateness_s=0.0, wall_s=0.0,
             t_read_s=np.zeros(8), current_a=rng.normal(size=(8, 16)), z=np.zeros(8), h=np.zeros(8),
             f_measured=rng.normal(size=(8, 8)), f_target=np.zeros((8, 8)), f_model=rng.normal(size=(8, 8)),
             f_diff=np.zeros((8, 8)), row_scale=np.ones(8), row_norm=np.ones(8),
             refreshed=np.zeros(8, np.int8), dropped=0, pulse_width_s=np.zeros((2, 8)),
             pulse_amplitude_v=np.zeros((2, 8, 16))) for k in range(64)]
time.sleep({WARMUP_S})  # lets a viewer attach before the timed appends
start = time.perf_counter(); cpu0 = time.process_time()
for k in range({LAB_STEPS}):
    log.append_step(**rows[k % 64])
print(time.perf_counter() - start, time.process_time() - cpu0)
log.close()
"""


class Viewer:
    """Waits for ``path`` to appear, then runs ``hwloop view`` on it with a Chromium page attached."""

    def __init__(self, path: Path, period_ms: int) -> None:
        self.path = path
        self.period_ms = period_ms
        self.stop = threading.Event()
        self.attached = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.path.exists() and not self.stop.is_set():
            time.sleep(0.05)
        if self.stop.is_set():
            return
        time.sleep(0.2)
        proc = subprocess.Popen(
            [*HWLOOP, "view", str(self.path), "--period-ms", str(self.period_ms)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            url = re.search(r"http://\S+/", proc.stdout.readline())
            if url is None:
                return
            with Chromium(timeout_s=60) as browser:
                browser.navigate(url.group(0))
                self.attached.set()
                self.stop.wait()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def close(self) -> bool:
        self.stop.set()
        self.thread.join(timeout=60)
        return self.attached.is_set()


def run_writer(script: str, work: Path, with_viewer: bool, period_ms: int) -> tuple[float, float, bool]:
    """(wall s, CPU s) of the writer's timed part, as it reports them, and whether a viewer attached."""
    out = work / f"file-{time.monotonic_ns()}.h5"
    viewer = Viewer(out, period_ms) if with_viewer else None
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    attached = viewer.close() if viewer else False
    out.unlink(missing_ok=True)
    wall, cpu = (float(x) for x in proc.stdout.split()[-2:])
    return wall, cpu, attached


def main() -> None:
    parser = argparse.ArgumentParser(description="writer speed with and without hwloop view attached")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--period-ms", type=int, default=1000, help="the viewer's refresh (its default: 1000)"
    )
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, script in (("campaign 16x16", CAMPAIGN_WRITER), ("lab log 8x8", LAB_WRITER)):
            runs: dict[str, list[float]] = {"off_wall": [], "off_cpu": [], "on_wall": [], "on_cpu": []}
            for r in range(args.rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for with_viewer in order:
                    wall, cpu, attached = run_writer(script, work, with_viewer, args.period_ms)
                    if with_viewer and not attached:
                        raise SystemExit(f"{name}: the viewer did not attach before the writer ended")
                    key = "on" if with_viewer else "off"
                    runs[f"{key}_wall"].append(wall)
                    runs[f"{key}_cpu"].append(cpu)
                    print(
                        f"{name} round {r} viewer {key:>3}: {wall:7.3f} s wall, {cpu:7.3f} s CPU", flush=True
                    )
            results[name] = runs
    headline = []
    default = args.period_ms == 1000
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        ratio = med["on_wall"] / med["off_wall"]
        summary[name] = {**med, "ratio_wall": ratio}
        print(
            f"{name}: median {med['off_wall']:.3f} s without a viewer, {med['on_wall']:.3f} s with: "
            f"{ratio:.3f}x (goal <= {GOAL})"
        )
        headline.append(
            {
                "name": f"{name} writer wall time, viewer attached vs not",
                "value": round(ratio, 3),
                "unit": "x",
                "goal": f"<= {GOAL}" if default else None,
                # the viewer as shipped (refresh every 1 s) is the default configuration
                "default_configuration": default,
            }
        )
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores")
    out = ROOT / "benchmarks" / "results" / "view.json"
    out.write_text(
        json.dumps(
            {
                "headline": headline,
                "rounds": args.rounds,
                "period_ms": args.period_ms,
                "lab_steps": LAB_STEPS,
                "medians": summary,
                "runs": results,
                "load_average": load,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
