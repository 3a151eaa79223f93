"""`hwloop calibrate fit` and `report` on a campaign whose devices include ones no law describes: their
verdicts reach the record (with no numbers, so mapping never uses them) and the report shows each failed
fit with its residuals and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_calibration_verdict import ag_diffusive, vo2_long_step  # tests/ is on sys.path (rootdir, prepend)

from calibration.storage import CampaignFile
from device_models.record import CalibrationRecord

N = 2000
EXPECTED = {  # device index (row-major in a 2 x 4 array) -> status under --model auto
    0: "ok",  # exponential
    1: "ok",  # two time constants
    2: "threshold_collapse",  # VO2 after a long heating step
    3: "non_monotonic",  # diffusive Ag: holds, rises, ruptures
    4: "ok",  # an exponential on a falling baseline ramp: a stretched law follows it (--model exp: poor_fit)
    5: "ok",
    6: "poor_fit",  # 50 Hz pickup on the read line at 3.5% of the relaxation
    7: "ok",  # stretched exponential
}


def traces(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(t (N,) s, g (N,) S) per device of a 2 x 4 array, in row-major order."""
    t_slow = np.arange(1, N + 1) * 1e-3
    t_fast = np.arange(1, N + 1) * 1e-5
    noise = 1e-7 * rng.standard_normal((8, N))
    return [
        (t_slow, 2e-6 + 5e-6 * np.exp(-t_slow / 0.3) + noise[0]),
        (t_slow, 2e-6 + 3e-6 * np.exp(-t_slow / 0.05) + 2e-6 * np.exp(-t_slow / 0.6) + noise[1]),
        (t_slow, vo2_long_step(t_slow, 0.35, rng)),
        (t_fast, ag_diffusive(t_fast, 6e-3, 0.25, rng)),
        (t_slow, 5e-6 + 5e-6 * np.exp(-t_slow / 0.3) - 1e-6 * t_slow + noise[4]),
        (t_slow, 2e-6 + 4e-6 * np.exp(-t_slow / 0.5) + noise[5]),
        (t_slow, 2e-6 + 5e-6 * (np.exp(-t_slow / 0.3) + 0.035 * np.sin(2 * np.pi * 50 * t_slow)) + noise[6]),
        (t_slow, 2e-6 + 5e-6 * np.exp(-((t_slow / 0.4) ** 0.5)) + noise[7]),
    ]


def _append_decay(store: CampaignFile, device: int, cycle: int, t: np.ndarray, g: np.ndarray) -> None:
    """One relaxation (read at 0.1 V, times from the end of the train) as a row of the decay table."""
    columns = {"device": device, "condition": 0, "cycle": cycle, "amplitude_v": 1.5, "width_s": 1e-4}
    columns |= {"n_pulses": 10, "read_v": 0.1, "every_s": t[1] - t[0], "delay_s": t[0]}
    columns |= {"pulse_energy_j": 0.0, "baseline_g_siemens": g[-1]}
    store.append("decay", columns, {"t_s": (t - t[0])[None, :], "g_siemens": g[None, :]})


def write_campaign(path: Path, seed: int = 0) -> Path:
    """A 2 x 4 campaign file (one relaxation per device, read at 0.1 V) in the campaign format."""
    rng = np.random.default_rng(seed)
    with CampaignFile.create(path, config={"demo": "failed fits"}, shape=(2, 4), safety_limits={}) as store:
        for d, (t, g) in enumerate(traces(rng)):
            r, c = divmod(d, 4)
            _append_decay(store, r * 4 + c, 0, t, g)
        store.flush()
    return path


def test_failed_fits_reach_the_record_without_numbers_and_the_report_shows_why(tmp_path, hwloop_run):
    data = write_campaign(tmp_path / "campaign.h5")
    statuses = {}
    for model in ("auto", "exp"):
        out = tmp_path / f"record_{model}.json"
        res = hwloop_run("calibrate", "fit", str(data), "--out", str(out), "--model", model)
        assert res.code == 0, res.err
        record = CalibrationRecord.load(out)
        statuses[model] = list(record.status)
        bad = ~record.good()
        assert np.isnan(record.array("tau_s")[bad]).all() and np.isnan(record.lam_at(0.1)[bad]).all()
    assert statuses["auto"] == [EXPECTED[d] for d in range(8)]
    assert statuses["exp"][4] == "poor_fit" and statuses["exp"][3] == "non_monotonic"
    assert statuses["exp"][1] == "poor_fit"  # two time constants are not one

    report = tmp_path / "report"
    res = hwloop_run("calibrate", "report", str(tmp_path / "record_auto.json"), "--out", str(report))
    assert res.code == 0, res.err
    png = report / "failed_fits.png"
    assert png.exists() and png.stat().st_size > 20_000
    summary = (report / "summary.txt").read_text()
    assert "device (0, 2): threshold_collapse (compressed law): holds then collapses" in summary
    assert "device (0, 3): non_monotonic" in summary and "moves against its relaxation by" in summary
    assert "device (1, 2): poor_fit (exp law): structured residuals (runs z" in summary
    assert "failed fits" in res.err  # the command prints the summary (rich console: stderr), failures too
    assert json.loads((tmp_path / "record_auto.json").read_text())["status"] == statuses["auto"]


def test_a_device_whose_relaxations_are_mostly_undescribed_gets_no_numbers(tmp_path):
    """Two of three cycles rise before they rupture (non_monotonic), one happens to be clean: the median
    over that one clean cycle would be cherry-picked, so the device is non_monotonic, with no tau."""
    from calibration.analysis import build_record

    rng = np.random.default_rng(3)
    t = np.arange(1, N + 1) * 1e-5
    clean = 1e-6 + 49e-6 * np.exp(-t / 4e-3) + 5e-7 * rng.standard_normal(N)
    cycles = {
        (0, 0): [ag_diffusive(t, 6e-3, 0.25, rng), ag_diffusive(t, 9e-3, 0.25, rng), clean],
        (0, 1): [
            1e-6 + 49e-6 * np.exp(-t / tau) + 5e-7 * rng.standard_normal(N) for tau in (3e-3, 4e-3, 5e-3)
        ],
    }
    path = tmp_path / "cycles.h5"
    with CampaignFile.create(path, config={}, shape=(1, 2), safety_limits={}) as store:
        for (r, c), traces_rc in cycles.items():
            for k, g in enumerate(traces_rc):
                _append_decay(store, r * 2 + c, k, t, g)
    record, fit = build_record(path, model="auto")
    assert list(fit.status) == ["non_monotonic", "non_monotonic", "ok", "ok", "ok", "ok"]
    assert record.status == ["non_monotonic", "ok"]
    assert np.isnan(record.array("tau_s")[0]) and np.isnan(record.lam_at(1e-3)[0])
    assert record.array("tau_s")[1] == pytest.approx(4e-3, rel=0.05)
