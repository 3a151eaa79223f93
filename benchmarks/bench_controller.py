"""Cost of the crossbar controller protocol v2 (CRC, sequence numbers, echo then GO) against v1, and of the
ArC TWO fake, side by side in one run, through the real drivers on the simulated lab.

Per board: 2000 row reads of an 8x8 array at 0.1 V (``read_row``), then 200 row pulses. Reported: wall
microseconds per operation, virtual (board) microseconds per operation, and the v2/v1 ratios. v2 sends
two lines per operation (the command, then ``GO`` after the echo is checked), so on a real link its
round-trip cost is about twice v1's; the wall cost here is the host's and the simulator's CPU time.

    python benchmarks/bench_controller.py          (writes benchmarks/results/controller.json)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from drivers import SafetyLimits, open_array
from drivers.sim.arc2_fake import forget_boards
from drivers.sim.protocol_xbarsim import forget_arrays

OUT = Path(__file__).resolve().parent / "results" / "controller.json"
LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e4
)
READS, PULSES = 2000, 200
BOARDS = {
    "xbarsim v1": "xbarsim://8x8?seed=0&protocol=1",
    "xbarsim v2": "xbarsim://8x8?seed=0",
    "arc2sim": "arc2sim://8x8?seed=0",
}


def run(url: str) -> dict[str, float]:
    """Wall and virtual microseconds per row read and per row pulse on the board at ``url``."""
    forget_arrays()
    forget_boards()
    with open_array(url, LIMITS, allow_v1_pulses=True) as board:
        board.set_compliance(1e-4)
        clock = board.clock
        wall, virtual = time.perf_counter(), clock.now_s()
        for _ in range(READS):
            board.read_row(3, 0.1)
        read_wall, read_virtual = time.perf_counter() - wall, clock.now_s() - virtual
        wall, virtual = time.perf_counter(), clock.now_s()
        for _ in range(PULSES):
            board.wait(1e-3)
            board.pulse_row(3, [1.5] * 8, 1e-5)
        pulse_wall, pulse_virtual = time.perf_counter() - wall, clock.now_s() - virtual - PULSES * 1e-3
    return {
        "read_wall_us": read_wall / READS * 1e6,
        "read_board_us": read_virtual / READS * 1e6,
        "pulse_wall_us": pulse_wall / PULSES * 1e6,
        "pulse_board_us": pulse_virtual / PULSES * 1e6,
    }


def main() -> None:
    run(BOARDS["xbarsim v2"])  # warm imports
    runs = {name: run(url) for name, url in BOARDS.items()}
    head = ("board", "read wall us", "read board us", "pulse wall us", "pulse board us")
    print(f"{head[0]:12s} {head[1]:>13s} {head[2]:>14s} {head[3]:>14s} {head[4]:>15s}")
    for name, r in runs.items():
        print(
            f"{name:12s} {r['read_wall_us']:13.0f} {r['read_board_us']:14.0f} "
            f"{r['pulse_wall_us']:14.0f} {r['pulse_board_us']:15.0f}"
        )
    v1, v2 = runs["xbarsim v1"], runs["xbarsim v2"]
    ratios = {key: v2[key] / v1[key] for key in v1}
    print("v2 / v1: " + ", ".join(f"{key} {value:.2f}x" for key, value in ratios.items()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"runs": runs, "v2_over_v1": ratios}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
