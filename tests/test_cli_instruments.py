"""``hwloop instruments``: list, identify and pulse against the simulated lab, through ``hwloop.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drivers.sim.protocol_xbarsim import forget_arrays
from drivers.trace import read_trace


def test_list_includes_the_simulated_lab(hwloop_run) -> None:
    code, out, _ = hwloop_run("instruments", "list", "--json")
    assert code == 0
    found = json.loads(out)
    assert "TCPIP::k2450.sim::INSTR" in found["simulated"]
    assert any(name.startswith("xbarsim://") for name in found["simulated"])
    assert set(found) == {"visa", "serial", "simulated"}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("TCPIP::k2636b.sim::INSTR", "Model 2636B"),
        ("TCPIP::b2912a.sim::INSTR", "B2912A"),
        ("xbarsim://2x5", "2x5"),
    ],
)
def test_identify(hwloop_run, resource, expected) -> None:
    code, out, _ = hwloop_run("instruments", "identify", resource)
    assert code == 0
    assert expected in out


def test_pulse_writes_a_flushed_trace_and_a_plot(hwloop_run, tmp_path) -> None:
    out, png = tmp_path / "trace.h5", tmp_path / "trace.png"
    code, _, err = hwloop_run(
        "instruments", "pulse", "TCPIP::b2912a.sim::INSTR",
        "--amplitude", "1.5", "--width", "100e-6", "--read", "0.1", "--every", "1e-3", "--count", "500",
        "--nplc", "0.01",
        "--out", str(out), "--plot", str(png),
    )  # fmt: skip
    assert code == 0, err
    assert "safety limits (conservative defaults): |V| <= 2 V" in err
    t_s, i_a, attrs = read_trace(out)
    assert len(t_s) == len(i_a) == 500
    np.testing.assert_allclose(np.diff(t_s), 1e-3, rtol=1e-6)  # the B2900's timer spacing
    assert np.all((i_a > 0) & (i_a < 1e-6))  # nA-scale device current, far from compliance
    assert attrs["complete"] and attrs["driver"] == "KeysightB2900" and attrs["amplitude_v"] == 1.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pulse_on_a_crossbar_device(hwloop_run, tmp_path) -> None:
    forget_arrays()
    out = tmp_path / "xbar.h5"
    code, _, err = hwloop_run(
        "instruments", "pulse", "xbarsim://4x4?seed=3", "--row", "1", "--col", "2",
        "--every", "0.01", "--count", "20", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    t_s, _, attrs = read_trace(out)
    assert len(t_s) == 20 and attrs["driver"] == "CrossbarController"
    assert np.all(np.diff(t_s) >= 0.01)  # the wait plus the read's own time


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--amplitude", "2.5"], "error: pulse amplitude 2.5 V exceeds the safety limit of ±2 V"),
        (["--width", "5e-3"], "error: pulse width 0.005 s exceeds the safety limit of 0.001 s"),
        (["--compliance", "0.01"], "error: compliance 0.01 A exceeds the safety limit of 0.001 A"),
        (["--every", "0"], "error: --every must be a positive interval in seconds, got 0"),
        (["--count", "200000"], "error: --count must be at most 100000"),
        (  # the README's old example at the default NPLC 1: refused before the pulse, naming the bound
            ["--every", "1e-3"],
            "error: --every: TCPIP::k2450.sim::INSTR: read interval 0.001 s is shorter than one reading at "
            "NPLC 1 (50 Hz mains); the shortest possible interval is 0.0205 s (or lower the NPLC)",
        ),
        (["--nplc", "50"], "error: NPLC 50 is outside the Keithley 2450's range 0.01 .. 10"),
    ],
)
def test_pulse_beyond_limits_is_refused_before_anything(hwloop_run, tmp_path, args, message) -> None:
    out = tmp_path / "t.h5"
    code, _, err = hwloop_run("instruments", "pulse", "TCPIP::k2450.sim::INSTR", "--out", str(out), *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_limits_file_is_used_and_bad_ones_are_one_line(hwloop_run, tmp_path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(
        "max_abs_voltage_v = 3.0\nmax_pulse_width_s = 1e-2\nmax_compliance_a = 1e-3\nmax_pulses_per_s = 5\n"
    )
    code, _, err = hwloop_run(
        "instruments", "pulse", "TCPIP::k2450.sim::INSTR", "--amplitude", "2.5", "--count", "10",
        "--every", "0.03",
        "--limits", str(limits), "--out", str(tmp_path / "t.h5"),
    )  # fmt: skip
    assert code == 0, err
    assert "|V| <= 3 V" in err
    limits.write_text("max_abs_voltage_v = 3.0\n")
    code, _, err = hwloop_run(
        "instruments", "pulse", "TCPIP::k2450.sim::INSTR", "--limits", str(limits), "--out", "x.h5"
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: safety limits file")


def test_controller_without_address_and_unknown_resource(hwloop_run, tmp_path) -> None:
    code, _, err = hwloop_run("instruments", "pulse", "xbarsim://2x2", "--out", str(tmp_path / "t.h5"))
    assert code == 2 and "error: a crossbar controller needs --row and --col" in err
    code, _, err = hwloop_run("instruments", "identify", "TCPIP::nowhere.sim::INSTR")
    assert code == 2 and "error: TCPIP::nowhere.sim::INSTR: cannot open VISA resource" in err
