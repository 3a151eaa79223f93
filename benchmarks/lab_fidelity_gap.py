"""Where the lab block's fidelity gap comes from: read noise, delivery, or the model it is compared with.

For a lab step log (``hwloop pong --backend lab ... --backend-option log=LOG``) the measured F of step k
differs from the model's F (``f_diff = f_measured - f_model``) by three parts, each computed here from
the log alone:

* **read noise**: the F noise one read of each device pair carries, sigma_F = s sqrt(var(G+) + var(G-)) /
  g_per_weight with var(G) the card's read-noise law at the conductance read (``read_noise_var_siemens2``)
  and s the row's digital scale when it was read (expected, not measured: a prediction of the gap);
* **delivery**: ``f_measured[k] - f_target[k-1]``, what the devices hold against what the write of step
  k-1 aimed for at this read (includes the read noise above and the pulse-to-pulse noise);
* **plan vs model**: ``f_target[k-1] - f_model[k]``, what the lab expects its pulses to leave at the
  read of step k against the model's own update (``LabCrossbar._model_update``, which the write aims
  at): changes below the noise floor not written, writes dropped (past the step's pulses), amplitude
  and width rounding.

Also the correlation the run would have with noiseless reads: cov / sqrt((var_meas - sigma_F^2) var_model).

    python benchmarks/lab_fidelity_gap.py LOG [LOG ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from device_models.card import load_card
from device_models.memristor import read_noise_var_siemens2


def gap(path: Path, run: str | None = None) -> dict[str, Any]:
    """The fidelity gap decomposition of one run of a lab log (weight units of F)."""
    card = load_card(None)
    with h5py.File(path, "r", swmr=True) as f:
        runs = f["runs"]
        g = runs[run or sorted(runs)[-1]]
        digital = g.attrs["digital_synapses"][:]
        ok = ~digital
        meas, model, target = g["f_measured"][:], g["f_model"][:], g["f_target"][:]
        scale = g["row_scale"][:]
        current = g["current_a"][:]
        read_v, gpw = float(g.attrs["read_v"]), float(g.attrs["g_per_weight"])
        reads = int(g.attrs["reads_per_device"])
        dev_row, dev_col = g.attrs["device_row"][:], g.attrs["device_col"][:]
        episode = g["episode"][:]
    pair = np.isfinite(model) & ok[None]  # steps with a model F (not a game's first), analog synapses
    same_game = np.zeros(len(episode), dtype=bool)
    same_game[1:] = episode[1:] == episode[:-1]
    k = np.flatnonzero(same_game)  # steps with a previous step in the same game
    g_read = current / read_v
    var = read_noise_var_siemens2(g_read, card.variability.read_noise_rel, card.window.g_max_siemens) / reads
    var_f = (var[:, dev_row[0], dev_col[0]] + var[:, dev_row[1], dev_col[1]]) / gpw**2
    var_f[k] *= scale[k - 1][:, :, None] ** 2  # the scale the read of step k was taken at
    sel = pair[k]
    m, mo, tgt_prev = meas[k][sel], model[k][sel], target[k - 1][sel]
    noise = float(np.sqrt(np.mean(var_f[k][sel])))
    cov = float(np.mean((m - m.mean()) * (mo - mo.mean())))
    var_m, var_mo = float(np.var(m)), float(np.var(mo))
    noiseless = cov / np.sqrt(max(var_m - noise**2, 1e-30) * var_mo)

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x**2)))

    return {
        "log": str(path),
        "pairs": int(sel.sum()),
        "rms_model_f": rms(mo),
        "rms_f_diff": rms(m - mo),
        "rms_read_noise_expected": noise,
        "rms_delivery": rms(m - tgt_prev),
        "rms_plan_vs_model": rms(tgt_prev - mo),
        "correlation": float(np.corrcoef(m, mo)[0, 1]),
        "correlation_plan_vs_model": float(np.corrcoef(tgt_prev, mo)[0, 1]),
        "correlation_measured_vs_plan": float(np.corrcoef(m, tgt_prev)[0, 1]),
        "correlation_noiseless_reads": float(noiseless),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [gap(p) for p in args.logs]
    for r in rows:
        print(json.dumps(r, indent=1))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
