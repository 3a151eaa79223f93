"""``hwloop calibrate import``: traces measured elsewhere (CSV, NPZ, HDF5) reach fit, report and map.

Synthetic files carry a known truth (tau per device, written out here with numpy); the real VO2 traces
check that import keeps every sample as it was in the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from device_models.record import CalibrationRecord

T_S = np.linspace(0.0, 6.0, 200)  # seconds since the pulse


def relaxation(tau_s: float, amp_s: float, g_inf_s: float, seed: int) -> np.ndarray:
    """g(t) = g_inf + amp exp(-t / tau) with 0.5% read noise of the amplitude, siemens."""
    rng = np.random.default_rng(seed)
    return g_inf_s + amp_s * np.exp(-T_S / tau_s) + 0.005 * amp_s * rng.standard_normal(T_S.size)


def fit(hwloop_run, data: Path, tmp_path: Path) -> CalibrationRecord:
    code, _, err = hwloop_run(
        "calibrate", "fit", str(data), "--out", str(tmp_path / "r.json"), "--model", "exp"
    )
    assert code == 0, err
    return CalibrationRecord.load(tmp_path / "r.json")


def test_a_vo2_csv_export_runs_through_import_fit_report_and_map(vo2_dir, tmp_path, hwloop_run):
    files = sorted(vo2_dir.glob("*.csv"))
    data, record, report, mapping = (tmp_path / n for n in ("vo2.h5", "vo2.json", "report", "map"))
    code, _, err = hwloop_run("calibrate", "import", *map(str, files), "--out", str(data))
    assert code == 0, err
    assert f"imported {len(files)} relaxations of {len(files)} devices" in " ".join(err.split())
    with h5py.File(data) as f:  # every sample as in the file, each file its own device, in name order
        decay = f["decay"]
        for k, path in enumerate(files):
            raw = np.loadtxt(path, delimiter=",", skiprows=1)
            u = int(np.flatnonzero(decay["device"][:] == k)[0])
            n = int(decay["n_samples"][u])
            assert n == len(raw)
            np.testing.assert_array_equal(decay["t_s"][u, :n], raw[:, 0])
            np.testing.assert_array_equal(decay["g_siemens"][u, :n], raw[:, 1])
            assert np.isnan(decay["g_siemens"][u, n:]).all() and decay["delay_s"][u] == raw[0, 0]
    code, _, err = hwloop_run("calibrate", "fit", str(data), "--out", str(record))
    assert code == 0, err
    assert CalibrationRecord.load(record).n_devices == len(files)
    code, _, err = hwloop_run("calibrate", "report", str(record), "--out", str(report))
    assert code == 0, err
    assert (report / "decay_fits.png").stat().st_size > 1000
    assert "devices usable" in (report / "summary.txt").read_text()
    code, _, err = hwloop_run("calibrate", "map", str(record), "--out", str(mapping))
    assert code == 0, err
    summary = json.loads((mapping / "mapping.json").read_text())
    assert summary["gamma_in_range_fraction"] is None  # decays only: no pulse response to map gamma onto
    assert 0 <= summary["lambda_within_0.05_fraction"] <= 1
    assert "not measured (no pulse response)" in err


def test_long_csv_of_currents_in_microamps_with_the_other_sign_convention(tmp_path, hwloop_run):
    """Three devices x two conditions in one file; time in ms, current in uA flowing into the SMU (< 0)."""
    tau = {"A7": 0.8, "B2": 1.6, "C5": 0.4}
    read_v = 0.2
    lines = ["sample_ms;dev;pulse;I_uA"]
    for d, (name, tau_s) in enumerate(tau.items()):
        for cond, amp in (("1.5V", 2e-6), ("2V", 4e-6)):
            g = relaxation(tau_s, amp, 1e-6, seed=10 * d + len(cond))
            lines += [
                f"{t * 1e3:.6g};{name};{cond};{-gi * read_v * 1e6:.9g}" for t, gi in zip(T_S, g, strict=True)
            ]
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines) + "\n")
    data = tmp_path / "c.h5"
    args = ["calibrate", "import", str(path), "--out", str(data), "--time", "sample_ms", "--time-unit", "ms"]
    args += ["--current", "I_uA", "--current-unit", "uA", "--read-voltage", "0.2", "--device", "dev"]
    args += ["--condition", "pulse"]
    code, _, err = hwloop_run(*args)
    assert code == 2 and "--current-sign flip" in err.strip().splitlines()[-1]  # negative as measured
    code, _, err = hwloop_run(*args, "--current-sign", "flip")
    assert code == 0, err
    record = fit(hwloop_run, data, tmp_path)
    assert record.shape == (1, 3)  # device names in sorted order: A7, B2, C5
    np.testing.assert_allclose(record.array("tau_s"), list(tau.values()), rtol=0.02)
    with h5py.File(data) as f:
        assert sorted(zip(f["decay"]["device"][:], f["decay"]["condition"][:], strict=True)) == [
            (d, c) for d in range(3) for c in range(2)
        ]
        assert json.loads(f.attrs["config"])["import"]["conditions"] == ["1.5V", "2V"]


def test_npz_and_foreign_hdf5_arrays(tmp_path, hwloop_run):
    taus = np.array([0.5, 1.0, 2.0, 3.0])
    g = np.stack([relaxation(tau, 3e-9, 2e-9, seed=k) for k, tau in enumerate(taus)])
    np.savez(tmp_path / "traces.npz", time=T_S, cond_nS=g * 1e9, dev=np.array([3, 2, 1, 0]))
    code, _, err = hwloop_run(
        "calibrate", "import", str(tmp_path / "traces.npz"), "--out", str(tmp_path / "n.h5"),
        "--conductance", "cond_nS", "--conductance-unit", "nS", "--device", "dev", "--shape", "2x2",
    )  # fmt: skip
    assert code == 0, err
    record = fit(hwloop_run, tmp_path / "n.h5", tmp_path)
    assert record.shape == (2, 2)
    np.testing.assert_allclose(record.array("tau_s"), taus[::-1], rtol=0.02)

    with h5py.File(tmp_path / "other.h5", "w") as f:  # another tool's layout: times in us, one row per device
        f["run1/t_us"] = T_S * 1e6
        f["run1/G"] = g
    code, _, err = hwloop_run(
        "calibrate", "import", str(tmp_path / "other.h5"), "--out", str(tmp_path / "h.h5"),
        "--time", "/run1/t_us", "--time-unit", "us", "--conductance", "run1/G",
    )  # fmt: skip
    assert code == 0, err
    np.testing.assert_allclose(fit(hwloop_run, tmp_path / "h.h5", tmp_path).array("tau_s"), taus, rtol=0.02)


def test_device_and_condition_from_file_names(tmp_path, hwloop_run):
    truth = np.full((2, 3), np.nan)
    for r, c, cond, tau in (
        (0, 1, "fast", 0.7),
        (1, 2, "fast", 1.3),
        (1, 2, "slow", 1.3),
        (0, 0, "slow", 2.2),
    ):
        g = relaxation(tau, 1e-6, 5e-7, seed=r * 10 + c + len(cond))
        np.savetxt(tmp_path / f"r{r}c{c}_{cond}.csv", np.stack([T_S, g], axis=1), delimiter=",")
        truth[r, c] = tau
    code, _, err = hwloop_run(
        "calibrate", "import", *map(str, sorted(tmp_path.glob("r*.csv"))), "--out", str(tmp_path / "p.h5"),
        "--pattern", r"r(?P<row>\d+)c(?P<col>\d+)_(?P<condition>\w+)", "--shape", "2x3",
    )  # fmt: skip
    assert code == 0, err
    record = fit(hwloop_run, tmp_path / "p.h5", tmp_path)
    assert list(record.status) == ["ok", "ok", "not_measured", "not_measured", "not_measured", "ok"]
    got = record.array("tau_s").reshape(2, 3)
    np.testing.assert_allclose(got[np.isfinite(truth)], truth[np.isfinite(truth)], rtol=0.02)


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("t,g\n0,1e-6\n0.1,oops\n0.2,8e-7\n", [], "bad.csv: line 3, column 'g': 'oops' is not a number"),
        ("t,g\n0,1e-6\n0.1,9e-7\n0.1,8e-7\n", [], "bad.csv: line 4, column 't': time 0.1 does not increase"),
        ("t,g\n0,1e-6\n0.1,9e-7\n", ["--conductance", "G"], "bad.csv: no column 'G'; columns: 't', 'g'"),
        ("t,g\n0,1e-6\n0.1,nan\n", [], "bad.csv: line 3, column 'g': 'nan' is not finite"),
        ("t,i\n0,-1e-6\n0.1,-9e-7\n", ["--current", "i"], "needs the (non-zero) read voltage"),
        ("t,g\n0,1e-6\n0.1\n", [], "bad.csv: line 3 has 1 columns, no column 'g'"),
        ("t,g\n0,1e-6\n0.1,9e-7\n", ["--time-unit", "min"], "unknown time unit 'min'"),
        ("t,g\n0,1e-6\n0.1,9e-7\n", ["--pattern", "(?P<row>x)"], "does not match the pattern"),
        ("t,g\n-1,1e-6\n0.1,9e-7\n", [], "times must be since the end of the pulse"),
    ],
)
def test_bad_files_are_one_error_line_naming_file_line_and_column(
    tmp_path, hwloop_run, content, options, message
):
    (tmp_path / "bad.csv").write_text(content)
    out = tmp_path / "c.h5"
    code, _, err = hwloop_run("calibrate", "import", str(tmp_path / "bad.csv"), "--out", str(out), *options)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()


def test_a_version_1_campaign_file_is_converted(tmp_path, hwloop_run):
    """The layout before format version 2 (one group per measurement), written by hand."""
    taus = np.array([[0.6, 1.2], [2.4, 0.9]])
    old = tmp_path / "v1.h5"
    with h5py.File(old, "w") as f:
        f.attrs["config"] = json.dumps({"decay": {}, "pulse": None})
        f.attrs["shape"] = np.array([2, 2])
        f.attrs["instruments"] = json.dumps(["HWLOOP,XBAR-SIM,2x2,1.0.0"])
        f.attrs["safety_limits"] = json.dumps({})
        for r in range(2):
            for c in range(2):
                for cyc in range(2):
                    g = relaxation(taus[r, c], 2e-9, 1e-9, seed=4 * r + 2 * c + cyc)
                    unit = f.create_group(f"devices/r{r:03d}_c{c:03d}/decay/cond00_cyc{cyc:02d}")
                    unit["t_s"] = 100.0 + 10 * cyc + T_S  # controller timestamps
                    unit["i_a"] = g * 0.2
                    unit["g_siemens"] = g
                    unit["baseline_g_siemens"] = np.array([1e-9])
                    attrs = {"amplitude_v": 1.5, "width_s": 1e-3, "n_pulses": 20, "read_v": 0.2}
                    attrs |= {"every_s": T_S[1], "delay_s": 0.0, "pulse_energy_j": 1e-12, "complete": True}
                    unit.attrs.update(attrs)
    code, _, err = hwloop_run("calibrate", "fit", str(old), "--out", str(tmp_path / "r.json"))
    assert code == 2 and f"hwloop calibrate import {old} --out NEW.h5" in err
    code, _, err = hwloop_run("calibrate", "import", str(old), "--out", str(tmp_path / "v2.h5"))
    assert code == 0, err
    record = fit(hwloop_run, tmp_path / "v2.h5", tmp_path)
    np.testing.assert_allclose(record.array("tau_s"), taus.reshape(-1), rtol=0.02)
    assert "XBAR-SIM" in record.provenance.instruments[0]
