"""--json on the instrument, device and calibration commands: machine-readable and equal to the data."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from device_models.card import DeviceCard, load_card


def test_identify_json_carries_the_instruments_idn(tmp_path: Path, hwloop_process) -> None:
    result = hwloop_process("instruments", "identify", "TCPIP::k2450.sim::INSTR", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["resource"] == "TCPIP::k2450.sim::INSTR"
    assert "MODEL 2450" in out["idn"]


def test_pulse_json_summarises_exactly_what_the_trace_file_holds(tmp_path: Path, hwloop_process) -> None:
    args = ("--amplitude", "2", "--width", "1e-3", "--every", "0.05", "--count", "40", "--out", "t.h5")
    result = hwloop_process("instruments", "pulse", "TCPIP::b2912a.sim::INSTR", *args, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        t_s, i_a = f["t_s"][:], f["i_a"][:]
    assert out["readings"] == len(t_s) == 40
    assert out["t_span_s"] == t_s[-1] - t_s[0]
    assert (out["i_first_a"], out["i_last_a"]) == (i_a[0], i_a[-1])
    assert out["amplitude_v"] == 2.0 and out["width_s"] == 1e-3


def test_devices_show_json_is_the_card_itself(hwloop_process) -> None:
    result = hwloop_process("devices", "show", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    out.pop("card")
    realisable = out.pop("realisable_lambda")
    assert DeviceCard.model_validate(out) == load_card(None)
    assert [row["bias"] for row in realisable["topologies"]] == ["lines", "rows", "device", "none"]


def test_calibrate_fit_json_summary_agrees_with_the_record_it_wrote(tmp_path: Path, hwloop_process) -> None:
    run = hwloop_process(
        "calibrate", "run", "--resource", "xbarsim://2x3?seed=4", "--out", "d.h5", "--json", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["out"] == "d.h5" and measured["units_measured"] > 0
    assert measured["limits"]["max_abs_voltage_v"] == 2.0  # the conservative defaults of a simulated run
    fit = hwloop_process("calibrate", "fit", "d.h5", "--out", "c.json", "--json", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    out = json.loads(fit.stdout)
    record = json.loads((tmp_path / "c.json").read_text())
    ok = [status == "ok" for status in record["status"]]
    tau = np.array([t for t, good in zip(record["tau_s"], ok, strict=True) if good], dtype=float)
    assert out["devices"] == len(record["status"]) == 6
    assert out["usable"] == sum(ok)
    assert out["tau_s"]["median"] == float(np.median(tau))
    assert sum(out["laws"].values()) == out["usable"]
