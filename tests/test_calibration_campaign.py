"""Campaigns against the simulated lab: recovery of the known per-device truth, storage, resume."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from calibration.analysis import build_record
from calibration.campaign import Campaign, CampaignConfig, DecayProtocol, PulseProtocol
from calibration.storage import CampaignFile
from device_models.record import CalibrationError
from drivers import ConnectionLost, CrossbarController, SafetyLimits, open_instrument
from drivers.sim.protocol_xbarsim import forget_arrays, sim_array

LIMITS = SafetyLimits.conservative()


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    yield
    forget_arrays()


def run(url: str, path, config: CampaignConfig, resume: bool = False) -> int:
    with open_instrument(url, LIMITS) as xbar:
        assert isinstance(xbar, CrossbarController)
        dump = config.model_dump(mode="json")
        store = (
            CampaignFile.resume(path, config=dump)
            if resume
            else CampaignFile.create(
                path, config=dump, shape=(xbar.rows, xbar.cols), safety_limits=LIMITS.model_dump()
            )
        )
        with store:
            return Campaign(xbar, store, config).run()


def test_decay_campaign_recovers_true_tau_within_2_percent(tmp_path):
    """Default decay protocol and default simulated noise; the truth is each simulated device's tau at 0 V."""
    path = tmp_path / "decay.h5"
    run("xbarsim://4x4?seed=3", path, CampaignConfig(pulse=None))
    record, _ = build_record(path, model="exp")
    truth = sim_array(4, 4, 3).tau_s(0.0).reshape(-1)
    ok = record.good()
    assert ok.sum() >= 15  # a stuck device may legitimately fail
    err = np.abs(record.array("tau_s") / truth - 1)[ok]
    assert np.median(err) < 0.02
    # the stated uncertainty is honest: errors within 4 sigma
    assert np.all(err * truth[ok] < 4 * record.array("tau_err_s")[ok] + 1e-3 * truth[ok])


def test_pulse_campaign_recovers_pulse_law(tmp_path):
    path = tmp_path / "pulse.h5"
    cfg = CampaignConfig(decay=DecayProtocol(count=40, every_s=1.0, cycles=1), pulse=PulseProtocol())
    # 32 devices: the amplitudes above the card's 1.3 V threshold span only ln(2 / 1.4), so the pooled
    # exponent needs more devices than the old 0.5 V threshold did (3 x 4 scatters by ~0.2)
    run("xbarsim://4x8?seed=4", path, cfg)
    record, _ = build_record(path, model="exp")
    array = sim_array(4, 8, 4)
    card = array.card.pulse
    truth_up = card.dg_up_ref_siemens * array.devices.pulse_scale.reshape(-1)
    assert record.array("amp_exponent")[0] == pytest.approx(card.amp_exponent, abs=0.2)
    assert record.array("width_exponent")[0] == pytest.approx(card.width_exponent, abs=0.15)
    assert np.median(np.abs(record.array("dg_up_siemens") / truth_up - 1)) < 0.1
    assert np.all(record.array("dg_down_siemens") < 0)


def test_campaign_file_holds_raw_data_settings_and_provenance(tmp_path):
    path = tmp_path / "c.h5"
    cfg = CampaignConfig(decay=DecayProtocol(count=10, cycles=1), pulse=None)
    run("xbarsim://2x2?seed=5", path, cfg)
    with h5py.File(path) as f:  # plain h5py: the format needs no hwloop to read
        assert f.attrs["format"] == "hwloop-campaign" and f.attrs["format_version"] == 2
        assert "XBAR-SIM" in f.attrs["instruments"]
        assert f.attrs["software_version"]
        assert "max_abs_voltage_v" in f.attrs["safety_limits"]
        decay = f["decay"]
        assert decay.attrs["rows"] == 4 and "devices" not in f
        assert sorted(decay["device"][:]) == [0, 1, 2, 3]
        k = int(np.flatnonzero(decay["device"][:] == 2)[0])  # device (1, 0)
        assert (decay["row"][k], decay["col"][k], decay["condition"][k], decay["cycle"][k]) == (1, 0, 0, 0)
        assert decay["amplitude_v"][k] == 1.5 and decay["n_samples"][k] == 10
        t = decay["t_s"][k]
        assert t.size == 10 and np.all(np.diff(t) > 0)  # controller timestamps
        g = decay["g_siemens"][:]  # (devices, samples), siemens
        assert np.median(g[:, 0] - decay["baseline_g_siemens"][:]) > 0  # potentiated above the baseline
        for name in ("t_s", "g_siemens", "device"):
            assert decay[name].chunks is not None and decay[name].compression == "gzip"
    with pytest.raises(CalibrationError, match="--resume"):
        run("xbarsim://2x2?seed=5", path, cfg)


def _units(path) -> dict[tuple[str, int, int, int], dict[str, np.ndarray]]:
    """Every committed unit of a campaign file: (kind, device, condition, cycle) -> its columns and traces."""
    out = {}
    with h5py.File(path) as f:
        for kind in ("decay", "pulse"):
            if kind not in f:
                continue
            table = f[kind]
            n = int(table.attrs["rows"])
            data = {name: table[name][:n] for name in table}
            for k in range(n):
                key = (kind, int(data["device"][k]), int(data["condition"][k]), int(data["cycle"][k]))
                assert key not in out, f"unit {key} stored twice"
                out[key] = {name: np.copy(values[k]) for name, values in data.items()}
    return out


def _check_resume_repeats_nothing(path, cfg, url, monkeypatch, done):
    """Resume; every pulse belongs to the next unit appended and never touches a device that already had
    that unit; data from before are untouched; the campaign ends complete."""
    pulses: list[tuple[int, list[float]]] = []
    appends: list[tuple[str, list[int], int, int, int]] = []
    real_pulse_row = CrossbarController.pulse_row
    real_append = CampaignFile.append

    def spy_pulse(self, row, amplitudes_v, width_s):
        pulses.append((row, list(amplitudes_v)))
        return real_pulse_row(self, row, amplitudes_v, width_s)

    def spy_append(self, kind, columns, traces=None):
        dev = np.atleast_1d(columns["device"]).tolist()
        cond, cyc = int(np.atleast_1d(columns["condition"])[0]), int(np.atleast_1d(columns["cycle"])[0])
        appends.append((kind, dev, cond, cyc, len(pulses)))
        return real_append(self, kind, columns, traces)

    monkeypatch.setattr(CrossbarController, "pulse_row", spy_pulse)
    monkeypatch.setattr(CampaignFile, "append", spy_append)
    run(url, path, cfg, resume=True)
    monkeypatch.undo()

    start = 0
    cols = 3
    for kind, devices, cond, cyc, n_pulses in appends:
        rows = {d // cols for d in devices}
        assert len(rows) == 1
        row = rows.pop()
        assert all((kind, d, cond, cyc) not in done for d in devices)
        for prow, amps in pulses[start:n_pulses]:
            assert prow == row
            for c, a in enumerate(amps):
                if a != 0:
                    assert (kind, row * cols + c, cond, cyc) not in done
        start = n_pulses
    assert start == len(pulses)

    after = _units(path)
    for key, data in done.items():  # earlier data untouched
        for name, values in data.items():
            np.testing.assert_array_equal(after[key][name], values)
    n_plan = 2 + 2 * 15  # per device: 2 decay cycles, 15 pulse settings x 2 polarities
    assert len(after) == 9 * n_plan
    return after


@pytest.mark.parametrize("drop_after", [150, 420])
def test_interrupted_campaign_resumes_without_repeating_or_corrupting(tmp_path, monkeypatch, drop_after):
    path = tmp_path / "resume.h5"
    cfg = CampaignConfig(decay=DecayProtocol(count=30, cycles=2, n_pulses=3), pulse=PulseProtocol(reads=2))
    with pytest.raises(ConnectionLost):
        run(f"xbarsim://3x3?seed=6&drop_after={drop_after}", path, cfg)
    done = _units(path)  # readable, and only committed units in it
    assert done, "the fault should hit after some units completed"
    _check_resume_repeats_nothing(path, cfg, "xbarsim://3x3?seed=6", monkeypatch, done)


# row 0 appends: 2 decay units (14 columns + 2 traces each), then 30 pulse units (12 columns each)
@pytest.mark.parametrize(
    ("interrupt_at_write", "committed"),
    [(16 + 7, {"decay": 3}), (2 * 16 + 2 * 12 + 5, {"decay": 6, "pulse": 6})],
)
def test_ctrl_c_in_the_middle_of_a_write_loses_and_repeats_nothing(
    tmp_path, monkeypatch, interrupt_at_write, committed
):
    """KeyboardInterrupt lands between two dataset writes of one unit (after some whole units): the
    half-written unit is not committed, resume drops its rows and measures it again, once."""
    path = tmp_path / "ctrl_c.h5"
    cfg = CampaignConfig(decay=DecayProtocol(count=30, cycles=2, n_pulses=3), pulse=PulseProtocol(reads=2))
    real_setitem = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def interrupting_setitem(self, key, value):
        calls["n"] += 1
        if calls["n"] == interrupt_at_write:
            raise KeyboardInterrupt
        return real_setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", interrupting_setitem)
    with pytest.raises(KeyboardInterrupt):
        run("xbarsim://3x3?seed=8", path, cfg)
    monkeypatch.undo()
    done = _units(path)
    with h5py.File(path) as f:
        assert {kind: int(f[kind].attrs["rows"]) for kind in ("decay", "pulse") if kind in f} == committed
        longest = {kind: max(f[kind][name].shape[0] for name in f[kind]) for kind in committed}
    assert len(done) == sum(committed.values())
    assert any(longest[kind] > n for kind, n in committed.items())  # the half-written unit is there
    _check_resume_repeats_nothing(path, cfg, "xbarsim://3x3?seed=8", monkeypatch, done)


def test_a_version_1_file_is_refused_with_how_to_convert(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:  # the layout of hwloop before format version 2
        f.attrs["config"] = "{}"
        f.create_group("devices/r000_c000/decay/cond00_cyc00")
    with pytest.raises(CalibrationError, match=r"version-1 campaign file.*hwloop calibrate import"):
        CampaignFile(path)


def test_resume_refuses_another_configuration(tmp_path):
    path = tmp_path / "c.h5"
    run("xbarsim://2x2?seed=7", path, CampaignConfig(decay=DecayProtocol(count=10, cycles=1), pulse=None))
    with pytest.raises(CalibrationError, match="another campaign configuration"):
        run(
            "xbarsim://2x2?seed=7",
            path,
            CampaignConfig(decay=DecayProtocol(count=11, cycles=1), pulse=None),
            True,
        )
