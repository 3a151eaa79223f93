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
    run("xbarsim://3x4?seed=4", path, cfg)
    record, _ = build_record(path, model="exp")
    array = sim_array(3, 4, 4)
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
    with h5py.File(path) as f:
        assert "XBAR-SIM" in f.attrs["instruments"]
        assert f.attrs["software_version"]
        assert "max_abs_voltage_v" in f.attrs["safety_limits"]
        unit = f["devices/r001_c000/decay/cond00_cyc00"]
        assert unit.attrs["complete"] and unit.attrs["amplitude_v"] == 1.5
        t = unit["t_s"][()]
        assert t.size == 10 and np.all(np.diff(t) > 0)  # controller timestamps
        np.testing.assert_allclose(unit["g_siemens"][()], unit["i_a"][()] / unit.attrs["read_v"])
    with pytest.raises(CalibrationError, match="--resume"):
        run("xbarsim://2x2?seed=5", path, cfg)


@pytest.mark.parametrize("drop_after", [150, 420])
def test_interrupted_campaign_resumes_without_repeating_or_corrupting(tmp_path, monkeypatch, drop_after):
    path = tmp_path / "resume.h5"
    cfg = CampaignConfig(decay=DecayProtocol(count=30, cycles=2, n_pulses=3), pulse=PulseProtocol(reads=2))
    with pytest.raises(ConnectionLost):
        run(f"xbarsim://3x3?seed=6&drop_after={drop_after}", path, cfg)

    with h5py.File(path) as f:  # readable, and only completed units in it
        done = {}
        for key, dev in f["devices"].items():
            for protocol, group in dev.items():
                for unit, data in group.items():
                    assert data.attrs["complete"]
                    done[(key, protocol, unit)] = {k: v[()].copy() for k, v in data.items()}
    assert done, "the fault should hit after some units completed"

    pulses: list[tuple[int, list[float]]] = []
    writes: list[tuple[int, int, str, str, int]] = []
    real_pulse_row = CrossbarController.pulse_row
    real_write = CampaignFile.write_unit

    def spy_pulse(self, row, amplitudes_v, width_s):
        pulses.append((row, list(amplitudes_v)))
        return real_pulse_row(self, row, amplitudes_v, width_s)

    def spy_write(self, row, col, protocol, unit, data, attrs):
        writes.append((row, col, protocol, unit, len(pulses)))
        return real_write(self, row, col, protocol, unit, data, attrs)

    monkeypatch.setattr(CrossbarController, "pulse_row", spy_pulse)
    monkeypatch.setattr(CampaignFile, "write_unit", spy_write)
    run("xbarsim://3x3?seed=6", path, cfg, resume=True)

    # every pulse belongs to the next unit written; it never touches a device that already had that unit
    start = 0
    for row, col, protocol, unit, n_pulses in writes:
        assert (f"r{row:03d}_c{col:03d}", protocol, unit) not in done
        for prow, amps in pulses[start:n_pulses]:
            assert prow == row
            for c, a in enumerate(amps):
                if a != 0:
                    assert (f"r{row:03d}_c{c:03d}", protocol, unit) not in done
        start = n_pulses
    assert start == len(pulses)

    with h5py.File(path) as f:  # earlier data untouched, and the campaign is now complete
        for (key, protocol, unit), data in done.items():
            for name, values in data.items():
                np.testing.assert_array_equal(f[f"devices/{key}/{protocol}/{unit}/{name}"][()], values)
        n_units = sum(len(g) for dev in f["devices"].values() for g in dev.values())
    assert n_units == 9 * (2 + 2 * 15)


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
