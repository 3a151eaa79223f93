"""Where one emulated default step's time goes: the benchmark's layer and inputs with one part of the
default switched off at a time, timed side by side with the ideal backend in one run, one thread.

Layer H = 64, I = 2592 (the STPN Pong layer, K = 2656), inputs 10 % dense, 10 steps from rest (as
``bench_backends.py``), batch 16 and batch 1; median CPU time per step over interleaved rounds. The
difference between the default and a row is what that part costs. "no refreshes" raises
``max_write_gain`` so that no row is ever refreshed (a different normalisation cost: for the split
only). The last rows time a 2 x 4 layer: the per-step Python and dispatch cost, without the arrays.

    python benchmarks/profile_emulated_step.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import single_thread
import torch

from hwloop.crossbar import make_backend
from hwloop.stpn import STPN

H, I, STEPS = 64, 2592, 10
OFF_ALL = {
    "nonidealities": "ideal-devices",
    "energy_counters": False,
    "max_write_gain": 1e30,
    "bias_limits": True,
}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ideal": ("ideal", {}),
    "emulated default": ("emulated", {}),
    "default without c2c write noise": ("emulated", {"c2c": False}),
    "default without read noise": ("emulated", {"read_noise": False}),
    "default without energy counters": ("emulated", {"energy_counters": False}),
    "default without window saturation": ("emulated", {"saturation": False}),
    "default without stuck devices": ("emulated", {"stuck": False}),
    "default without refreshes": ("emulated", {"max_write_gain": 1e30}),
    "default, native normalisation": ("emulated", {"normalisation": "native"}),
    "emulated, every part off": ("emulated", OFF_ALL),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    single_thread.pin()
    torch.manual_seed(0)
    reference = STPN(I, H).state_dict()
    xs_all = (torch.rand(16, STEPS, I) < 0.1).float()
    tiny = STPN(4, 2)
    layers: dict[tuple[int, str], tuple[STPN, torch.Tensor]] = {}
    for batch in (16, 1):
        for label, (name, opts) in VARIANTS.items():
            layer = STPN(I, H)
            layer.load_state_dict(reference)
            layer.set_backend(make_backend(name, **opts))
            with torch.no_grad():
                layer.run(xs_all[:batch, :2])
            layers[(batch, label)] = (layer, xs_all[:batch])
    for name in ("ideal", "emulated"):
        small = STPN(4, 2)
        small.load_state_dict(tiny.state_dict())
        small.set_backend(make_backend(name))
        xs_tiny = torch.rand(1, STEPS, 4)
        with torch.no_grad():
            small.run(xs_tiny)
        layers[(1, f"{name}, 2 x 4 layer (dispatch only)")] = (small, xs_tiny)
    cpu: dict[tuple[int, str], list[float]] = {key: [] for key in layers}
    with torch.no_grad():
        for _ in range(args.rounds):
            for key, (layer, xs) in layers.items():
                start = time.process_time()
                layer.run(xs)
                cpu[key].append((time.process_time() - start) / STEPS)
    ideal = {batch: statistics.median(cpu[(batch, "ideal")]) for batch in (16, 1)}
    print(f"one emulated step, H={H} I={I}, {STEPS} steps from rest, median CPU ms/step, 1 thread")
    for batch in (16, 1):
        default = statistics.median(cpu[(batch, "emulated default")])
        print(f"\nbatch {batch}{'':32s} {'ms':>8s} {'x ideal':>8s} {'default - row':>14s}")
        for (b, label), times in cpu.items():
            if b != batch:
                continue
            t = statistics.median(times)
            saving = "" if "2 x 4" in label else f"{(default - t) * 1e3:14.3f}"
            print(f"{label:40s} {t * 1e3:8.3f} {t / ideal[batch]:8.2f} {saving}")


if __name__ == "__main__":
    main()
