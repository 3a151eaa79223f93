"""Averaging reads on the lab block: F noise against step time (``reads_per_device``), to choose its default.

The shipped hardware-aware STPN-64 agent plays Pong (seed 0) on the simulated v3.1 controller, line biases
held, exact normalisation, for ``--steps`` steps per setting, on the 8 x 8 block (rows 0:8 of the recurrent
columns 2592:2600) and the 16-row block (rows 0:16, columns 2592:2624: 1,024 devices). Reported per
block and setting: the I/O time of a step on the controller's clock (t_end - t_start, reads + writes;
dt = 1/15 s: the budget), overruns, the read noise a step's averaged read carries in F (expected, from the
card's read-noise law at the conductances read: ``lab_fidelity_gap.gap``), the correlation and RMS ratio
of measured vs model F, the correlation noiseless reads would give, and the dropped writes per step.

    python benchmarks/bench_lab_reads.py [--steps 600] [--reads 1 2 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import h5py
import torch
from lab_fidelity_gap import gap  # the sibling script (python benchmarks/bench_lab_reads.py)

from experiments.pong.agent import load_agent
from experiments.pong.env import STEP_S, STICKY, PongEnv
from hwloop.crossbar import make_backend

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "experiments" / "pong" / "checkpoints" / "stpn64_aware.safetensors"
OUT = Path(__file__).resolve().parent / "results" / "lab_reads.json"
BLOCKS = {"8x8": ("0:8", "2592:2600"), "16x32": ("0:16", "2592:2624")}


def run(block: str, reads: int, steps: int, log: Path) -> dict[str, float]:
    agent = load_agent(CHECKPOINT)
    rows, cols = BLOCKS[block]
    lab = make_backend("lab", rows=rows, cols=cols, log=str(log), dt_s=STEP_S, reads_per_device=reads)
    agent.core.set_backend(lab)  # type: ignore[operator]
    env = PongEnv(sticky=STICKY, seed=0)
    frame, state = env.reset(seed=0), None
    with torch.no_grad():
        for _ in range(steps):
            out = agent(torch.from_numpy(frame)[None, None], state)
            state = out.state
            step = env.step(int(out.logits[0, -1].argmax()))
            frame = step.obs
            if step.done:
                frame, state = env.reset(seed=1), None
    stats = lab.stats()  # type: ignore[attr-defined]
    lab.close()  # type: ignore[attr-defined]
    with h5py.File(log, "r") as f:
        g = f["runs/0000"]
        io_s = g["t_end_s"][:] - g["t_start_s"][:]
    split = gap(log)
    return {
        "block": block,
        "reads_per_device": reads,
        "io_ms_per_step": float(io_s.mean() * 1e3),
        "io_ms_worst": float(io_s.max() * 1e3),
        "overruns": stats["pacing"]["overruns"],
        "read_noise_f_rms": split["rms_read_noise_expected"],
        "correlation": stats["fidelity"]["correlation"],
        "rms_ratio": stats["fidelity"]["rms_ratio"],
        "correlation_noiseless_reads": split["correlation_noiseless_reads"],
        "rms_f_diff": split["rms_f_diff"],
        "rms_f_model": split["rms_model_f"],
        "dropped_per_step": stats["dropped_writes"] / stats["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--reads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_lab_reads_"))
    rows = [run(b, n, args.steps, tmp / f"{b}_reads{n}.h5") for b in BLOCKS for n in args.reads]
    print(f"lab blocks, {args.steps} Pong steps per setting, dt {STEP_S * 1e3:.1f} ms")
    head = ("block", "reads", "I/O ms", "worst", "overruns", "noise F", "r", "RMS ratio", "r noiseless")
    print("{:>6s} {:>5s} {:>7s} {:>6s} {:>8s} {:>8s} {:>6s} {:>9s} {:>11s}".format(*head))
    for r in rows:
        print(
            f"{r['block']:>6s} {r['reads_per_device']:5d} {r['io_ms_per_step']:7.1f} {r['io_ms_worst']:6.1f} "
            f"{r['overruns']:8d} {r['read_noise_f_rms']:8.4f} {r['correlation']:6.3f} {r['rms_ratio']:9.3f} "
            f"{r['correlation_noiseless_reads']:11.3f}"
        )
    args.out.write_text(json.dumps({"steps": args.steps, "seed": 0, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
