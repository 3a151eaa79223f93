"""CalibrationRecord: JSON round trip, per-synapse fields, retention at other time steps, bad records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from device_models.record import CalibrationError, CalibrationRecord

TAU = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])


def make(**kw):
    return CalibrationRecord.from_arrays((2, 3), TAU, g_min_siemens=1e-9, g_max_siemens=2e-8, **kw)


def test_round_trip_and_missing_values(tmp_path):
    rec = make()
    path = rec.save(tmp_path / "calib.json")
    data = json.loads(path.read_text())
    assert data["tau_s"][2] is None  # strict JSON: missing as null, never NaN
    back = CalibrationRecord.load(path)
    np.testing.assert_array_equal(back.array("tau_s"), rec.array("tau_s"))
    assert list(back.status) == ["ok", "ok", "not_measured", "ok", "ok", "ok"]
    np.testing.assert_allclose(back.lam_at(0.1)[back.good()], np.exp(-0.1 / TAU[back.good()]))
    assert "lam" not in data and "dt_s" not in data and data["schema_version"] == 2  # laws only


def test_version_1_files_load_without_their_dt_derived_columns(tmp_path):
    """A version-1 record (dt_s, lam, lam_err, step_error columns) loads as version 2; a stretched
    device's tau_s (there -dt / ln lambda, dt-dependent) becomes its law's 1/e time, tau1."""
    data = json.loads(make().model_dump_json())
    n = 6
    data.update(schema_version=1, dt_s=0.1, lam=[0.5] * n, lam_err=[0.0] * n, step_error=[0.0] * n)
    data["law"][1] = "stretched"
    data["beta"][1], data["tau1_s"][1], data["tau_s"][1] = 0.5, 3.0, 7.7
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    rec = CalibrationRecord.load(path)
    assert rec.schema_version == 2 and "dt_s" not in rec.model_dump() and "lam" not in rec.model_dump()
    assert rec.array("tau_s")[1] == pytest.approx(3.0)
    np.testing.assert_allclose(rec.array("tau_s")[[0, 3]], TAU[[0, 3]])


def test_lam_at_other_time_steps():
    rec = make()
    np.testing.assert_allclose(rec.lam_at(0.5)[rec.good()], np.exp(-0.5 / TAU[rec.good()]))
    assert np.isnan(rec.lam_at(0.5)[2])
    # a stretched device: the least-squares lambda over the horizon, checked by brute force
    st = CalibrationRecord.from_arrays(
        (1, 1), [1.0], law=["stretched"], tau1_s=[0.8], beta=[0.5], horizon_steps=30
    )
    k = np.arange(1, 31)
    phi = np.exp(-((0.2 * k / 0.8) ** 0.5))
    grid = np.linspace(0.3, 1.0, 70001)
    best = grid[np.argmin(((grid[:, None] ** k - phi) ** 2).sum(1))]
    assert st.lam_at(0.2)[0] == pytest.approx(best, abs=2e-5)
    with pytest.raises(CalibrationError, match="dt_s"):
        rec.lam_at(0.0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("shape"), "shape: Field required"),
        (lambda d: d["tau_s"].append(1.0), "tau_s has 7 entries"),
        (lambda d: d["tau1_s"].__setitem__(0, 0.0), "tau1_s must be finite and > 0"),
        (lambda d: d["tau_s"].__setitem__(0, -1.0), "tau_s must be finite and > 0"),
        (lambda d: d.__setitem__("status", ["bad"] * 6), "no device has status 'ok'"),
        (lambda d: d["law"].__setitem__(0, "linear"), "law.0"),
        (lambda d: d["g_max_siemens"].__setitem__(0, 1e-10), "conductance window"),
    ],
)
def test_bad_records_fail_with_one_line_naming_the_problem(tmp_path, edit, message):
    data = json.loads(make().model_dump_json())
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=message) as err:
        CalibrationRecord.load(path)
    assert "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        CalibrationRecord.load(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not readable JSON"):
        CalibrationRecord.load(tmp_path / "x.json")
    with pytest.raises(CalibrationError, match="unknown calibration field"):
        make().array("tau")
