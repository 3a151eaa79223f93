"""``hwloop calibrate`` through the real entry point against the simulated lab."""

from __future__ import annotations

import json
import shlex

import h5py
import numpy as np
import pytest

from device_models.record import CalibrationRecord
from drivers.sim.protocol_xbarsim import forget_arrays, sim_array

CONFIG = {"decay": {"count": 60, "every_s": 0.75, "cycles": 1, "n_pulses": 10}, "pulse": {"reads": 4}}


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    yield
    forget_arrays()


def test_run_fit_report(tmp_path, hwloop_run):
    cfg = tmp_path / "campaign.json"
    cfg.write_text(json.dumps(CONFIG))
    data, calib, report = tmp_path / "data.h5", tmp_path / "calib.json", tmp_path / "report"
    url = "xbarsim://2x3?seed=11"
    code, _, err = hwloop_run("calibrate", "run", "--resource", url, "--out", str(data), "--config", str(cfg))
    assert code == 0, err
    assert "measured 62 units" in err  # 2 rows x (1 decay + 2 polarities x 15 pulse settings)
    code, _, err = hwloop_run("calibrate", "fit", str(data), "--out", str(calib), "--model", "exp")
    assert code == 0, err
    record = CalibrationRecord.load(calib)
    truth = sim_array(2, 3, 11).tau_s(0.0).reshape(-1)
    assert record.good().sum() >= 5
    assert np.median(np.abs(record.array("tau_s") / truth - 1)[record.good()]) < 0.05
    code, _, err = hwloop_run("calibrate", "report", str(calib), "--out", str(report))
    assert code == 0, err
    for name in ("decay_fits.png", "tau_lambda_hist.png", "pulse_response.png", "summary.txt"):
        assert (report / name).stat().st_size > 1000 or name == "summary.txt"
    assert "devices usable" in (report / "summary.txt").read_text()


def test_interrupted_run_says_how_to_resume_and_resumes(tmp_path, hwloop_run):
    cfg = tmp_path / "campaign.json"
    cfg.write_text(json.dumps({**CONFIG, "pulse": None}))
    data = tmp_path / "data.h5"
    args = ["calibrate", "run", "--out", str(data), "--config", str(cfg)]
    code, _, err = hwloop_run(*args, "--resource", "xbarsim://2x2?seed=12&drop_after=200")
    assert code == 2
    last = err.strip().splitlines()[-1]  # above it: the progress bar
    assert last.startswith("error: campaign interrupted") and "--resume" in last and "Traceback" not in err
    with h5py.File(data) as f:
        before = int(f["decay"].attrs["rows"]) if "decay" in f else 0  # one row per device and unit
    assert 0 < before < 4
    code, _, err = hwloop_run(*args, "--resource", "xbarsim://2x2?seed=12", "--resume")
    assert code == 0, err
    assert f"measured {2 - before // 2} units" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--out", "{tmp}/d.h5", "--resource", "/dev/ttyUSB9"], "real instruments need --limits"),
        (["run", "--out", "{tmp}/d.h5", "--rows", "a,b"], "--rows must be comma-separated integers"),
        (["run", "--out", "{tmp}/d.h5", "--rows", "9"], "outside the 8x8 array"),
        (["run", "--out", "{tmp}/d.h5", "--config", "{tmp}/none.toml"], "does not exist"),
        (["run", "--out", "{tmp}/d.h5", "--config", "{tmp}/bad.json"], "decay.count"),
        (["fit", "{tmp}/none.h5", "--out", "{tmp}/c.json"], "campaign file"),
        (["fit", "{tmp}/bad.json", "--out", "{tmp}/c.json"], "cannot open campaign file"),
        (["fit", "{tmp}/d.h5", "--out", "{tmp}/c.json", "--model", "linear"], None),
        (["report", "{tmp}/bad.json", "--out", "{tmp}/r"], "calibration record"),
    ],
)
def test_user_mistakes_are_one_error_line(tmp_path, hwloop_run, args, message):
    (tmp_path / "bad.json").write_text(json.dumps({"decay": {"count": 2}}))
    code, _, err = hwloop_run("calibrate", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if message is not None:
        assert message in lines[0]


def test_map_reports_trained_against_hardware_per_synapse(tmp_path, hwloop_run):
    from safetensors.numpy import load_file

    from device_models.record import ReferencePulse
    from experiments.art import DEFAULT_CHECKPOINT, load_model

    tau = np.linspace(0.5, 5.0, 12)
    record = CalibrationRecord.from_arrays(
        (3, 4), tau, reference_pulse=ReferencePulse(amplitude_v=1.5, width_s=1e-4),
        dg_up_siemens=2e-10, dg_down_siemens=-3e-10, amp_exponent=2.0, width_exponent=1.0,
        g_min_siemens=1e-9, g_max_siemens=2e-8,
    )  # fmt: skip
    record.save(tmp_path / "calib.json")
    code, _, err = hwloop_run(
        "calibrate", "map", str(tmp_path / "calib.json"), "--out", str(tmp_path / "m"), "--bias", "device"
    )
    assert code == 0, err
    arrays = load_file(str(tmp_path / "m" / "mapping.safetensors"))
    trained = load_model(DEFAULT_CHECKPOINT).stpn.weight_lambda.detach().double().numpy()
    np.testing.assert_allclose(arrays["lam_trained"], trained)
    # each device is biased for the trained lambda (card window 0..1.2 V, tau moved by exp(-dV / 0.25)):
    # inside the window the hardware lambda is the trained one, at an end the device's own there
    bias = arrays["decay_bias_v"]
    inside = ((bias > 0.0) & (bias < 1.2)).all(0)
    np.testing.assert_allclose(arrays["lam_hardware"][inside], trained[inside], rtol=1e-9)
    assert np.all((np.isclose(bias, 0.0) | np.isclose(bias, 1.2)).any(0)[~inside])
    summary = json.loads((tmp_path / "m" / "mapping.json").read_text())
    expected = np.median(np.abs(arrays["lam_hardware"] - trained))
    assert summary["lambda_abs_err_median"] == pytest.approx(expected)
    # pulses below the card's 1.3 V write threshold write nothing: refused in one line, nothing written
    code, _, err = hwloop_run(
        "calibrate",
        "map",
        str(tmp_path / "calib.json"),
        "--out",
        str(tmp_path / "m2"),
        "--amplitude",
        "0.5,2",
    )
    assert code != 0 and "write threshold 1.3 V" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m2").exists()
    assert (tmp_path / "m" / "mapping.png").stat().st_size > 1000


def test_smu_bias_campaign_run_fit_report(tmp_path, hwloop_run):
    """Decay versus bias on the simulated 2450's device; truth: its tau(V) on the process-wide lab."""
    from drivers.factory import default_lab

    data, calib, report = tmp_path / "bias.h5", tmp_path / "calib.json", tmp_path / "report"
    smu = "TCPIP::k2450.sim::INSTR"
    args = ["calibrate", "run", "--resource", smu, "--out", str(data), "--biases", "0.1,0.3", "--cycles", "1"]
    code, _, err = hwloop_run(*args)
    assert code == 0, err
    assert "measured 2 units" in err
    code, _, err = hwloop_run("calibrate", "fit", str(data), "--out", str(calib), "--model", "exp")
    assert code == 0, err
    law = CalibrationRecord.load(calib).bias_law
    assert law is not None
    truth = [float(default_lab().device("k2450.sim").tau_s(v)) for v in (0.1, 0.3)]
    np.testing.assert_allclose(law.array("tau_measured_s")[:, 0], truth, rtol=0.05)
    assert "median tau per bias: 0.1 V" in err
    code, _, err = hwloop_run("calibrate", "report", str(calib), "--out", str(report))
    assert code == 0, err
    assert (report / "bias_law.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--biases", "0.1,2.5", "--amplitudes", "3"], "decay bias 2.5 V exceeds the safety limit of ±2 V"),
        (["--amplitudes", "3"], "pulse amplitude 3 V exceeds the safety limit"),
        (["--biases", "0.1,x"], "--biases must be comma-separated numbers"),
        (["--biases", "0.1,nan"], "--biases must be finite numbers"),
        (["--biases", "0,0.2"], "0 V reads no current"),
        (["--biases", "1.6"], "must be below the pulse amplitudes"),
        (
            ["--biases", "-2.5", "--amplitudes", "3", "--limits", "{tmp}/wide.toml"],
            "decay bias -2.5 V exceeds",
        ),
        (["--widths", "0.5"], "pulse width 0.5 s exceeds the safety limit"),
        (["--cycles", "0"], "bias_decay.cycles"),
        (["--rows", "1"], "an SMU measures one device"),
    ],
)
def test_smu_campaign_mistakes_are_refused_before_anything_is_sent(
    tmp_path, monkeypatch, hwloop_run, extra, message
):
    import drivers  # the command imports open_instrument from drivers when it runs

    def never(*args, **kwargs):
        raise AssertionError("the instrument must not be opened")

    monkeypatch.setattr(drivers, "open_instrument", never)
    (tmp_path / "wide.toml").write_text(
        "max_abs_voltage_v = 2.4\nmax_pulse_width_s = 1e-3\nmax_compliance_a = 1e-3\nmax_pulses_per_s = 10\n"
    )
    out = tmp_path / "d.h5"
    args = ["calibrate", "run", "--resource", "TCPIP::k2450.sim::INSTR", "--out", str(out)]
    code, _, err = hwloop_run(*args, *[a.format(tmp=tmp_path) for a in extra])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not out.exists()


def test_biases_need_an_smu_and_fit_bias_must_be_measured(tmp_path, hwloop_run):
    code, _, err = hwloop_run("calibrate", "run", "--out", str(tmp_path / "d.h5"), "--biases", "0.2")
    assert code == 2 and err.strip().startswith("error: --biases need an SMU resource")
    data = tmp_path / "bias.h5"
    args = ["calibrate", "run", "--resource", "TCPIP::b2912a.sim::INSTR", "--out", str(data)]
    code, _, err = hwloop_run(*args, "--biases", "0.1,0.3", "--cycles", "1")
    assert code == 0, err
    code, _, err = hwloop_run(
        "calibrate", "fit", str(data), "--out", str(tmp_path / "c.json"), "--bias", "0.2"
    )
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert "no relaxation at 0.2 V (measured: 0.1, 0.3 V)" in err


def test_interrupted_smu_campaign_resumes_from_the_cli(tmp_path, hwloop_run):
    from drivers.factory import default_lab
    from drivers.sim import Faults

    data = tmp_path / "bias.h5"
    args = ["calibrate", "run", "--resource", "TCPIP::k2636b.sim::INSTR", "--out", str(data)]
    args += ["--biases", "0.1,0.3", "--cycles", "2"]
    default_lab().inject("k2636b.sim", Faults(drop_after=340))  # during the second relaxation
    try:
        code, _, err = hwloop_run(*args)
    finally:
        default_lab().inject("k2636b.sim", Faults())
    assert code == 2 and "error: campaign interrupted" in err and "--resume" in err
    with h5py.File(data) as f:
        before = int(f["bias_decay"].attrs["rows"])
    assert 0 < before < 4
    code, _, err = hwloop_run(*args, "--resume")
    assert code == 0, err
    assert f"measured {4 - before} units" in err


def test_ctrl_c_says_what_was_kept_and_the_printed_command_resumes(tmp_path, monkeypatch, hwloop_run):
    from calibration.storage import CampaignFile

    cfg = tmp_path / "campaign.json"
    cfg.write_text(json.dumps({"decay": {"count": 20, "cycles": 2, "n_pulses": 3}, "pulse": None}))
    data = tmp_path / "data.h5"
    args = [
        "calibrate",
        "run",
        "--resource",
        "xbarsim://3x2?seed=13",
        "--out",
        str(data),
        "--config",
        str(cfg),
    ]
    real_flush = CampaignFile.flush
    flushes = {"n": 0}

    def ctrl_c_after_three_units(self):
        real_flush(self)
        flushes["n"] += 1
        if flushes["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(CampaignFile, "flush", ctrl_c_after_three_units)
    code, _, err = hwloop_run(*args)
    monkeypatch.undo()
    assert code == 130 and "Traceback" not in err
    message = " ".join(err.split())  # rich may wrap the line
    assert f"interrupted: 3 of 6 units are saved in {data}" in message
    resume = shlex.split(message.split("continue with: hwloop ")[1])
    assert resume == [*args, "--resume"]
    code, _, err = hwloop_run(*resume)
    assert code == 0, err
    assert "measured 3 units" in err
    with h5py.File(data) as f:
        keys = list(
            zip(f["decay"]["device"][:], f["decay"]["condition"][:], f["decay"]["cycle"][:], strict=True)
        )
    assert len(keys) == len(set(keys)) == 6 * 2  # 6 devices x 2 cycles, each exactly once
