"""Averaging reads on the lab block: F noise against step time (``reads_per_device`` = 1, 2, 4).

The shipped hardware-aware STPN-64 agent plays Pong with an 8 x 8 block (rows 0:8 of the recurrent
columns 2592:2600) on the simulated v3 controller, line biases held, exact normalisation, for
``--steps`` steps per setting. Reported per setting: the I/O time of a step on the controller's clock
(t_end - t_start, reads + writes; dt = 1/15 s), overruns, the correlation and RMS ratio of measured vs
model F, and the RMS of their difference (read noise plus the block's own deviation), in weight units.

    python benchmarks/bench_lab_reads.py [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from experiments.pong.agent import load_agent
from experiments.pong.env import STEP_S, STICKY, PongEnv
from hwloop.crossbar import make_backend

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "experiments" / "pong" / "checkpoints" / "stpn64_aware.safetensors"
OUT = Path(__file__).resolve().parent / "results" / "lab_reads.json"


def run(reads: int, steps: int, log: Path) -> dict[str, float]:
    agent = load_agent(CHECKPOINT)
    lab = make_backend("lab", rows="0:8", cols="2592:2600", log=str(log), dt_s=STEP_S, reads_per_device=reads)
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
        diff = g["f_diff"][:][:, ~g.attrs["digital_synapses"]]
    return {
        "reads_per_device": reads,
        "io_ms_per_step": float(io_s.mean() * 1e3),
        "io_ms_worst": float(io_s.max() * 1e3),
        "overruns": stats["pacing"]["overruns"],
        "correlation": stats["fidelity"]["correlation"],
        "rms_ratio": stats["fidelity"]["rms_ratio"],
        "rms_f_diff": float(np.sqrt(np.nanmean(diff**2))),
        "rms_f_model": stats["fidelity"]["rms_model"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_lab_reads_"))
    rows = [run(n, args.steps, tmp / f"reads{n}.h5") for n in (1, 2, 4)]
    print(f"lab 8x8 block, {args.steps} Pong steps per setting, dt {STEP_S * 1e3:.1f} ms")
    head = ("reads", "I/O ms/step", "worst", "overruns", "r", "RMS ratio", "RMS dF")
    print("{:>5s} {:>11s} {:>7s} {:>8s} {:>6s} {:>9s} {:>7s}".format(*head))
    for r in rows:
        print(
            f"{r['reads_per_device']:5d} {r['io_ms_per_step']:11.1f} {r['io_ms_worst']:7.1f} "
            f"{r['overruns']:8d} {r['correlation']:6.3f} {r['rms_ratio']:9.3f} {r['rms_f_diff']:7.4f}"
        )
    args.out.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
