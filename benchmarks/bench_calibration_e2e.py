"""Benchmark: calibration at array scale, on the user's path (campaign file in, record out).

1. End-to-end fit: 169,984 synthetic single-exponential devices (the Pong STPN layer's synapses,
   200 samples each) are written in the campaign format, then ``build_record`` streams them from the
   file, fits them and builds the ``CalibrationRecord``, which is saved as JSON: file to record. Beside it,
   in the same run, the kernel alone (``fit_decay`` on the same arrays in memory). Goal: under 60 s.
2. A simulated 64x64 campaign (the default protocol of ``hwloop calibrate run``: decay + pulse
   response, 2048 units) through the crossbar controller into a campaign file. Goal: under 60 s.

Both report the file size against the raw payload (every stored number at its stored width, without
NaN padding; goal: file <= 1.5x payload), wall and CPU seconds (CPU does not grow when other jobs share
the cores), and the machine's load.

Run: ``.venv/bin/python benchmarks/bench_calibration_e2e.py [--skip-campaign] [--campaign-size 64]``
(writes benchmarks/results/calibration_e2e.json).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from calibration.analysis import build_record
from calibration.campaign import Campaign, CampaignConfig
from calibration.fit import fit_decay
from calibration.storage import KINDS, CampaignFile
from drivers import SafetyLimits, open_instrument

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (64, 2656)  # 169,984 devices
SAMPLES = 200
NOISE_REL = 0.01
WRITE_CHUNK = 8192  # devices appended per call when writing the synthetic file


class Clock:
    """Wall and CPU seconds since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def payload_bytes(path: Path) -> int:
    """Bytes of every committed number in a campaign file at its stored width (no NaN padding)."""
    total = 0
    with h5py.File(path) as f:
        for kind, schema in KINDS.items():
            if kind not in f:
                continue
            n = int(f[kind].attrs["rows"])
            total += n * sum(np.dtype(dtype).itemsize for dtype in schema.columns.values())
            if schema.traces:
                total += int(f[kind]["n_samples"][:n].sum()) * 8 * len(schema.traces)
    return total


def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (N,) s, conductances (D, N) S, true tau (D,) s."""
    rng = np.random.default_rng(seed)
    devices = SHAPE[0] * SHAPE[1]
    t = np.linspace(0.0, 5.0, SAMPLES)
    tau = rng.lognormal(0.0, 0.3, devices)
    amp = rng.uniform(1e-9, 3e-9, devices)
    g = 5e-9 + amp[:, None] * np.exp(-t / tau[:, None])
    g += NOISE_REL * amp[:, None] * rng.standard_normal(g.shape)
    return t, g, tau


def write_campaign(path: Path, t: np.ndarray, g: np.ndarray) -> None:
    """Write relaxations g (D, N) S at times t (N,) s as a one-cycle decay campaign of shape ``SHAPE``."""
    devices = g.shape[0]
    with CampaignFile.create(path, config={"synthetic": True}, shape=SHAPE, safety_limits={}) as store:
        for start in range(0, devices, WRITE_CHUNK):
            d = np.arange(start, min(devices, start + WRITE_CHUNK))
            n = d.size
            store.append(
                "decay",
                {
                    "device": d,
                    "condition": np.zeros(n, dtype=np.int64),
                    "cycle": np.zeros(n, dtype=np.int64),
                    "amplitude_v": np.full(n, 1.5),
                    "width_s": np.full(n, 1e-3),
                    "n_pulses": np.full(n, 20),
                    "read_v": np.full(n, 0.2),
                    "every_s": np.full(n, t[1]),
                    "delay_s": np.zeros(n),
                    "pulse_energy_j": np.full(n, 1e-12),
                    "baseline_g_siemens": np.full(n, 5e-9),
                },
                {"t_s": np.broadcast_to(t, (n, SAMPLES)), "g_siemens": g[d]},
            )
            store.flush()


def end_to_end(workdir: Path) -> dict[str, object]:
    t, g, tau = synthetic()
    devices = g.shape[0]
    fit_decay(t, g[:64], model="exp")  # numba: load (or compile, first run only) the kernel
    clock = Clock()
    kernel = fit_decay(t, g, model="exp")
    kernel_wall, kernel_cpu = clock.read()

    path = workdir / "layer.h5"
    clock = Clock()
    write_campaign(path, t, g)
    write_wall, write_cpu = clock.read()
    del g

    clock = Clock()
    record, _ = build_record(path, model="exp")
    record_path = record.save(workdir / "layer.json")
    e2e_wall, e2e_cpu = clock.read()
    size, payload = path.stat().st_size, payload_bytes(path)
    ok = record.good()
    return {
        "devices": devices,
        "samples": SAMPLES,
        "kernel_fit_s": kernel_wall,
        "kernel_fit_cpu_s": kernel_cpu,
        "kernel_median_tau_rel_err": float(np.median(np.abs(kernel.tau / tau - 1))),
        "write_file_s": write_wall,
        "write_file_cpu_s": write_cpu,
        "file_to_record_s": e2e_wall,
        "file_to_record_cpu_s": e2e_cpu,
        "record_ok_fraction": float(ok.mean()),
        "record_median_tau_rel_err": float(np.median(np.abs(record.array("tau_s")[ok] / tau[ok] - 1))),
        "file_bytes": size,
        "payload_bytes": payload,
        "file_over_payload": size / payload,
        "record_bytes": Path(record_path).stat().st_size,
    }


def campaign(workdir: Path, size: int) -> dict[str, object]:
    limits = SafetyLimits.conservative()
    config = CampaignConfig()  # the default protocol of `hwloop calibrate run`
    path = workdir / f"campaign{size}.h5"
    clock = Clock()
    with open_instrument(f"xbarsim://{size}x{size}?seed=1", limits) as xbar:
        store = CampaignFile.create(
            path, config=config.model_dump(mode="json"), shape=(size, size), safety_limits=limits.model_dump()
        )
        with store:
            units = Campaign(xbar, store, config).run()
    wall, cpu = clock.read()
    file_size, payload = path.stat().st_size, payload_bytes(path)
    return {
        "array": f"{size}x{size}",
        "units": units,
        "campaign_s": wall,
        "campaign_cpu_s": cpu,
        "file_bytes": file_size,
        "payload_bytes": payload,
        "file_over_payload": file_size / payload,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-campaign", action="store_true")
    parser.add_argument("--campaign-size", type=int, default=64)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        e2e = end_to_end(Path(tmp))
        print(
            f"{e2e['devices']} devices x {SAMPLES} samples: kernel fit {e2e['kernel_fit_s']:.2f} s; "
            f"file -> record {e2e['file_to_record_s']:.1f} s wall, {e2e['file_to_record_cpu_s']:.1f} s CPU "
            f"(goal < 60 s); writing the file {e2e['write_file_s']:.1f} s; "
            f"file {e2e['file_bytes'] / 1e6:.0f} MB = {e2e['file_over_payload']:.2f}x payload; "
            f"median |tau err| {e2e['record_median_tau_rel_err']:.2%}"
        )
        camp = None if args.skip_campaign else campaign(Path(tmp), args.campaign_size)
        if camp is not None:
            print(
                f"{camp['array']} simulated campaign: {camp['units']} units in "
                f"{camp['campaign_s']:.1f} s wall, "
                f"{camp['campaign_cpu_s']:.1f} s CPU (goal < 60 s); file {camp['file_bytes'] / 1e6:.1f} MB "
                f"= {camp['file_over_payload']:.2f}x payload"
            )

    def entry(name: str, value: float, unit: str, goal: str | None) -> dict[str, object]:
        # every figure here runs the default configuration (a goal needs that mark: benchmarks/summary.py)
        return {"name": name, "value": value, "unit": unit, "goal": goal, "default_configuration": True}

    headline = [
        entry("fit 169,984 devices, file to record", round(e2e["file_to_record_s"], 2), "s", "< 60"),
        entry("fit kernel alone, 169,984 devices", round(e2e["kernel_fit_s"], 2), "s", None),
        entry("169,984-device campaign file / payload", round(e2e["file_over_payload"], 3), "x", "<= 1.5"),
    ]
    if camp is not None:
        name = f"{camp['array']} simulated campaign"
        headline += [
            entry(name, round(camp["campaign_s"], 1), "s", "< 60"),
            entry(f"{name}, CPU", round(camp["campaign_cpu_s"], 1), "s", "< 60"),
            entry(f"{name} file / payload", round(camp["file_over_payload"], 3), "x", "<= 1.5"),
        ]
    result = {
        "headline": headline,
        "end_to_end": e2e,
        "campaign": camp,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],
    }
    out = ROOT / "benchmarks" / "results" / "calibration_e2e.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
