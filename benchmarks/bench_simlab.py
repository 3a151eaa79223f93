"""Virtual-time speed-up of the simulated lab, measured through the real drivers, side by side in one run.

Per simulated instrument: one pulse, then a 10 s hardware-timed read train (10,000 readings, 1 ms apart)
driven through ``open_instrument`` exactly as a real measurement; for the 8x8 crossbar controller, a
row-decay campaign of 10 s (pulse a row, then 100 row reads 0.1 s apart, each a serial round trip).
Reported: virtual seconds measured, wall seconds spent, and their ratio. Goal: every 10 s measurement
costs well under a second of wall time (ratio > 10).

    python benchmarks/bench_simlab.py            (writes benchmarks/results/simlab.json)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from drivers import SafetyLimits, open_instrument
from drivers.sim import SimLab
from drivers.sim.protocol_xbarsim import forget_arrays

OUT = Path(__file__).resolve().parent / "results" / "simlab.json"
LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=100
)
GOAL_RATIO = 10.0


def smu_run(host: str) -> dict[str, float]:
    """One pulse and a 10 s read train on the simulated SMU at ``host``."""
    lab = SimLab(seed=0)
    wall = time.perf_counter()
    with open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
        start = lab.clock.now_s()
        smu.set_compliance(1e-4)
        smu.nplc = 0.01  # 0.2 ms integrations (50 Hz mains): a 1 ms interval is possible
        smu.pulse(1.5, 1e-4)
        smu.read_train(0.1, 1e-3, 10_000)
        virtual = lab.clock.now_s() - start
    return {"virtual_s": virtual, "wall_s": time.perf_counter() - wall}


def controller_run() -> dict[str, float]:
    """A 10 s row-decay campaign on the simulated 8x8 crossbar controller."""
    forget_arrays()
    wall = time.perf_counter()
    with open_instrument("xbarsim://8x8?seed=0", LIMITS) as xbar:
        clock = xbar.clock
        start = clock.now_s()
        xbar.set_compliance(1e-4)
        xbar.pulse_row(3, [1.5] * 8, 1e-4)
        for _ in range(100):
            xbar.read_row(3, 0.1)
            xbar.wait(0.1)
        virtual = clock.now_s() - start
    return {"virtual_s": virtual, "wall_s": time.perf_counter() - wall}


def main() -> None:
    open_instrument("TCPIP::k2450.sim::INSTR", LIMITS, sim=SimLab(seed=0)).close()  # warm imports
    runs = {f"{host} (10,000 readings)": smu_run(host) for host in ("k2450.sim", "k2636b.sim", "b2912a.sim")}
    runs["xbarsim 8x8 (100 row reads)"] = controller_run()
    for run in runs.values():
        run["speedup"] = run["virtual_s"] / run["wall_s"]
    print(f"{'measurement':32s} {'virtual s':>10s} {'wall s':>8s} {'speed-up':>9s}")
    for name, run in runs.items():
        print(f"{name:32s} {run['virtual_s']:10.2f} {run['wall_s']:8.3f} {run['speedup']:8.0f}x")
    worst = min(run["speedup"] for run in runs.values())
    print(f"goal: speed-up > {GOAL_RATIO:g}x for every run -> {'met' if worst > GOAL_RATIO else 'NOT met'}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    headline = [  # the figures benchmarks/summary.py puts in the README table
        {
            "name": "simulated lab, slowest instrument, virtual vs wall time",
            "value": worst,
            "unit": "x",
            "goal": f"> {GOAL_RATIO:g}",
            "default_configuration": True,
        }
    ]
    payload = {"goal_speedup": GOAL_RATIO, "worst_speedup": worst, "runs": runs, "headline": headline}
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
