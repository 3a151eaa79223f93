"""``hwloop lab report``: the fidelity figures against a hand computation on a short logged run.

A three-step run with chosen values (every number below is worked out by hand), then a real short lab
run whose figures are recomputed from the raw logged arrays with plain loops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch
from typer.testing import CliRunner

from hwloop.backends.lab_log import LabLog
from hwloop.cli import app

runner = CliRunner()
NAN = float("nan")


def _step(k: int, f_measured, f_model, lateness: float, dropped: int) -> dict:
    f_measured, f_model = np.array(f_measured, float), np.array(f_model, float)
    return dict(
        step=k,
        episode=0,
        t_start_s=k * 0.1,
        t_end_s=k * 0.1 + 0.05,
        lateness_s=lateness,
        wall_s=0.0,
        t_read_s=np.zeros(1),
        current_a=np.zeros((1, 4)),
        z=np.zeros(2),
        h=np.zeros(1),
        f_measured=f_measured,
        f_model=f_model,
        f_diff=f_measured - f_model,
        f_target=f_measured,
        row_scale=np.ones(1),
        row_norm=np.ones(1),
        refreshed=np.zeros(1, np.int8),
        dropped=dropped,
        pulse_width_s=np.zeros((2, 1)),
        pulse_amplitude_v=np.zeros((2, 1, 4)),
    )


def test_report_figures_match_a_hand_computation(tmp_path: Path) -> None:
    path = tmp_path / "hand.h5"
    attrs = {
        "resource": "hand",
        "bias": "lines (protocol v3)",
        "normalisation": "exact",
        "dt_s": 0.1,
        "row_bias_prescribed_v": np.array([0.5]),
        "col_bias_prescribed_v": np.array([0.0, -0.1, 0.1, 0.2]),
        "row_bias_held_v": np.array([0.5005]),
        "col_bias_held_v": np.array([0.0, -0.1, 0.1, 0.198]),
        "digital_synapses": np.array([[False, True]]),  # synapse (0, 1) is digital: left out
    }
    log = LabLog(path, rows=1, cols=2, device_cols=4, pulses_per_row=2, attrs=attrs)
    log.append_step(**_step(0, [[1.0, 9.0]], [[NAN, NAN]], 0.0, 0))  # first step: no model F yet
    log.append_step(**_step(1, [[1.0, 9.0]], [[2.0, 9.0]], 0.0, 3))
    log.append_step(**_step(2, [[3.0, 9.0]], [[2.0, 9.0]], 0.004, 1))
    log.append_step(**_step(3, [[2.0, 9.0]], [[5.0, 9.0]], 0.030, 0))
    log.close()
    # by hand, pairs (measured, model) = (1, 2), (3, 2), (2, 5):
    #   mean a = 2, mean b = 3; deviations a: -1, 1, 0; b: -1, -1, 2
    #   cov = (1 - 1 + 0) = 0 -> correlation 0
    #   RMS a = sqrt((1 + 9 + 4) / 3) = sqrt(14 / 3); RMS b = sqrt((4 + 4 + 25) / 3) = sqrt(11)
    result = runner.invoke(app, ["lab", "report", str(path), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["pairs"] == 3 and got["steps"] == 4
    assert abs(got["correlation"]) < 1e-12
    assert math.isclose(got["rms_ratio"], math.sqrt(14 / 3) / math.sqrt(11), rel_tol=1e-12)
    assert got["overruns"] == 2 and math.isclose(got["worst_lateness_s"], 0.030)
    # bins 0-1, 1-5, 5-10, 10-20, 20-50, 50-100, 100+ ms: two on time, 4 ms, 30 ms
    assert got["lateness_counts"] == [2, 1, 0, 0, 1, 0, 0]
    assert got["dropped_writes"] == 4
    assert math.isclose(got["bias_max_error_v"], 0.002, rel_tol=1e-9)


def test_report_of_a_short_lab_run_against_its_raw_arrays(tmp_path: Path) -> None:
    from drivers.sim.protocol_xbarsim import forget_arrays
    from hwloop.backends.lab import LabCrossbar
    from hwloop.stpn import STPN

    forget_arrays()
    torch.manual_seed(1)
    net = STPN(3, 2)
    with torch.no_grad():
        net.weight_gamma.fill_(0.4)
        net.weight_lambda.fill_(0.8)
    lab = LabCrossbar(rows="all", cols="0:3", seed=2, dt_s=0.2, log=tmp_path / "run.h5", rest_s=0)
    net.set_backend(lab)
    with torch.no_grad():
        net.run(torch.rand(1, 12, 3))
    live = lab.stats()["fidelity"]
    lab.close()
    forget_arrays()
    with h5py.File(tmp_path / "run.h5", "r") as f:
        g = f["runs/0000"]
        meas, model = g["f_measured"][:], g["f_model"][:]
        digital = g.attrs["digital_synapses"]
    a, b = [], []
    for k in range(meas.shape[0]):
        for i in range(meas.shape[1]):
            for j in range(meas.shape[2]):
                if not digital[i, j] and not math.isnan(model[k, i, j]):
                    a.append(float(meas[k, i, j]))
                    b.append(float(model[k, i, j]))
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    corr = cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    ratio = math.sqrt(sum(x * x for x in a) / n) / math.sqrt(sum(y * y for y in b) / n)
    result = runner.invoke(app, ["lab", "report", str(tmp_path / "run.h5"), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["pairs"] == n == 11 * 6 - 6 * int(digital.sum())
    assert math.isclose(got["correlation"], corr, rel_tol=1e-9)
    assert math.isclose(got["rms_ratio"], ratio, rel_tol=1e-9)
    assert math.isclose(live["correlation"], corr, rel_tol=1e-9)  # the backend's live figure agrees
    assert got["correlation"] > 0.5  # the block follows its model on this small run


def test_report_of_a_missing_log_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lab", "report", str(tmp_path / "nope.h5")])
    assert result.exit_code != 0
