"""Decay versus bias on one SMU device of the simulated lab: tau per bias, the bias law, storage, resume."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from calibration.analysis import build_record
from calibration.bias import fit_bias_law
from calibration.smu_campaign import BiasDecayProtocol, SmuCampaign, SmuCampaignConfig, check_smu_limits
from calibration.storage import CampaignFile
from device_models.realisation import Realisation
from device_models.record import CalibrationError
from drivers import ConnectionLost, SafetyError, SafetyLimits, Smu, open_smu
from drivers.sim import Faults, SimLab

LIMITS = SafetyLimits.conservative()
BIASES = [0.1, 0.2, 0.3, 0.4]  # below the simulated card's 0.5 V pulse threshold
CONFIG = SmuCampaignConfig(bias_decay=BiasDecayProtocol(biases_v=BIASES))


def run(lab: SimLab, host: str, path, config: SmuCampaignConfig = CONFIG, resume: bool = False) -> int:
    dump = config.model_dump(mode="json")
    with open_smu(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
        store = (
            CampaignFile.resume(path, config=dump)
            if resume
            else CampaignFile.create(path, config=dump, shape=(1, 1), safety_limits=LIMITS.model_dump())
        )
        with store:
            return SmuCampaign(smu, store, config).run()


@pytest.mark.parametrize("host", ["k2450.sim", "k2636b.sim", "b2912a.sim"])
def test_tau_at_each_bias_matches_the_simulated_device(tmp_path, host):
    """Ground truth: the simulated device's own tau(V) (device_models law with its drawn tau_ref)."""
    lab = SimLab(seed=7)
    path = tmp_path / "bias.h5"
    assert run(lab, host, path) == len(BIASES) * CONFIG.bias_decay.cycles
    record, _ = build_record(path, model="exp")
    law = record.bias_law
    assert law is not None and law.biases_v == BIASES
    truth = np.array([float(lab.device(host).tau_s(b)) for b in BIASES])
    err = np.abs(law.array("tau_measured_s")[:, 0] / truth - 1)
    assert np.median(err) < 0.02 and err.max() < 0.05
    # the record's own tau/lambda columns hold at the first bias, and say so
    assert record.decay_bias_v == pytest.approx(0.1)
    assert record.array("tau_s")[0] == pytest.approx(truth[0], rel=0.05)
    # the fitted law is the device's: e-fold voltage of the card, tau anywhere in between
    assert law.array("efold_v")[0] == pytest.approx(lab.card.bias.bias_efold_v, rel=0.03)
    assert law.tau_at(0.25)[0] == pytest.approx(float(lab.device(host).tau_s(0.25)), rel=0.03)


def test_measured_bias_law_picks_the_bias_that_realises_lambda(tmp_path):
    lab = SimLab(seed=3)
    path = tmp_path / "bias.h5"
    run(lab, "k2450.sim", path)
    record, _ = build_record(path, model="exp", bias_v=0.3)
    assert record.decay_bias_v == pytest.approx(0.3)
    dt, target = 0.1, np.array([0.98])
    real = Realisation.from_record(record, dt, shape=(1, 1), card=lab.card, stuck=False)
    bias_pair, achieved = real.bias_for_lambda(target.reshape(1, 1))
    bias = bias_pair[0, 0]
    assert 0.1 < bias[0] < 0.4 and achieved[0, 0, 0] == pytest.approx(0.98)
    tau_then = float(lab.device("k2450.sim").tau_s(float(bias[0])))  # the device's true tau there
    assert np.exp(-dt / tau_then) == pytest.approx(0.98, abs=3e-4)
    with pytest.raises(CalibrationError, match=r"no relaxation at 0\.25 V"):
        build_record(path, model="exp", bias_v=0.25)


def test_bias_at_the_pulse_threshold_is_reported_not_fitted(tmp_path):
    """At 1.3 V (the card's pulse threshold) the held device is driven, not relaxing: no tau there."""
    lab = SimLab(seed=1)
    path = tmp_path / "bias.h5"
    cfg = SmuCampaignConfig(bias_decay=BiasDecayProtocol(biases_v=[0.1, 0.3, 1.3], cycles=1))
    run(lab, "k2450.sim", path, cfg)
    record, _ = build_record(path, model="exp")
    assert record.bias_law is not None
    tau_b = record.bias_law.array("tau_measured_s")[:, 0]
    assert np.all(np.isfinite(tau_b[:2])) and np.isnan(tau_b[2])
    assert record.bias_law.bias_ref_v == pytest.approx(0.2)  # the law uses the usable biases only


def test_campaign_file_holds_raw_samples_settings_and_provenance(tmp_path):
    lab = SimLab(seed=2)
    path = tmp_path / "bias.h5"
    cfg = SmuCampaignConfig(bias_decay=BiasDecayProtocol(biases_v=[0.2], count=50, cycles=1))
    run(lab, "b2912a.sim", path, cfg)
    with h5py.File(path) as f:
        assert "B2912A" in f.attrs["instruments"] and f.attrs["software_version"]
        assert "max_abs_voltage_v" in f.attrs["safety_limits"]
        table = f["bias_decay"]
        assert table.attrs["rows"] == 1 and table["device"][0] == 0
        assert (table["condition"][0], table["cycle"][0]) == (0, 0)
        assert table["bias_v"][0] == 0.2 and table["read_v"][0] == 0.2 and table["n_pulses"][0] == 20
        t = table["t_s"][0]
        assert t.size == 50 and t[0] == 0 and np.all(np.diff(t) > 0.0299)  # instrument timestamps
        assert table["n_samples"][0] == 50 and np.all(table["g_siemens"][0] > 0)


def test_limits_are_checked_before_anything_is_sent():
    cfg = SmuCampaignConfig(bias_decay=BiasDecayProtocol(biases_v=[-0.3, 0.3], amplitudes_v=[1.5]))
    tight = SafetyLimits(
        max_abs_voltage_v=0.2, max_pulse_width_s=1, max_compliance_a=1e-3, max_pulses_per_s=1
    )
    with pytest.raises(SafetyError, match=r"decay bias -0\.3 V exceeds"):
        check_smu_limits(cfg, tight)
    with pytest.raises(ValueError, match="below the pulse amplitudes"):
        BiasDecayProtocol(biases_v=[1.5], amplitudes_v=[1.5])
    with pytest.raises(ValueError, match="0 V reads no current"):
        BiasDecayProtocol(biases_v=[0.0])


def test_bias_law_fit_recovers_a_known_law_and_flags_bad_devices():
    v = np.array([0.1, 0.2, 0.4])
    tau_ref, efold = np.array([2.0, 0.5, 1.0, 3.0]), np.array([0.25, -0.4, 0.1, 0.3])
    tau = tau_ref * np.exp(-(v[:, None] - 0.25) / efold)  # law written out independently, V_ref 0.25
    tau[:, 3] = [np.nan, 1.0, np.nan]  # only one usable bias: no law
    law = fit_bias_law(v, tau)
    assert law.bias_ref_v == pytest.approx(v.mean())
    np.testing.assert_allclose(law.array("efold_v")[:3], efold[:3], rtol=1e-9)
    np.testing.assert_allclose(law.tau_at(0.25)[:3], tau_ref[:3], rtol=1e-9)
    assert np.isnan(law.array("efold_v")[3]) and np.isnan(law.array("tau_ref_s")[3])
    with pytest.raises(CalibrationError, match="two or more"):
        fit_bias_law(np.array([0.2, 0.2]), tau[:2])


@pytest.mark.parametrize("drop_after", [200, 290])  # mid pulse train, mid read train
def test_interrupted_bias_campaign_resumes_without_repeating_or_corrupting(tmp_path, monkeypatch, drop_after):
    lab = SimLab(seed=4, faults={"k2450.sim": Faults(drop_after=drop_after)})
    path = tmp_path / "resume.h5"
    cfg = SmuCampaignConfig(
        bias_decay=BiasDecayProtocol(biases_v=[0.1, 0.3], count=100, cycles=2, n_pulses=5)
    )
    with pytest.raises(ConnectionLost):
        run(lab, "k2450.sim", path, cfg)
    done = committed_units(path)  # readable, and only completed units in it
    assert 0 < len(done) < 4, "the fault should hit mid-campaign"

    pulses: list[float] = []
    writes: list[tuple[tuple[int, int], int]] = []
    real_pulse, real_append = Smu.pulse, CampaignFile.append

    def spy_pulse(self, amplitude_v, width_s):
        pulses.append(amplitude_v)
        return real_pulse(self, amplitude_v, width_s)

    def spy_append(self, kind, columns, traces=None):
        writes.append(((int(columns["condition"]), int(columns["cycle"])), len(pulses)))
        return real_append(self, kind, columns, traces)

    monkeypatch.setattr(Smu, "pulse", spy_pulse)
    monkeypatch.setattr(CampaignFile, "append", spy_append)
    lab.inject("k2450.sim", Faults())  # the link is back
    assert run(lab, "k2450.sim", path, cfg, resume=True) == 4 - len(done)

    # each unit written now got exactly its own pulse train, and no unit that had data was pulsed for again
    plan = [divmod(i, 2) for i in range(4)]  # (condition, cycle), condition-major, 2 cycles
    assert [unit for unit, _ in writes] == [u for u in plan if u not in done]
    assert [n for _, n in writes] == [5 * (k + 1) for k in range(len(writes))]
    assert len(pulses) == 5 * len(writes)
    after = committed_units(path)  # earlier data untouched, and the campaign is complete
    for unit, data in done.items():
        for key, values in data.items():
            np.testing.assert_array_equal(after[unit][key], values)
    assert sorted(after) == plan


def committed_units(path) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """(condition, cycle) -> every column and trace of that committed bias-decay unit (plain h5py)."""
    with h5py.File(path) as f:
        table = f["bias_decay"]
        n = int(table.attrs["rows"])
        data = {name: table[name][:n] for name in table}
    keys = [(int(c), int(y)) for c, y in zip(data["condition"], data["cycle"], strict=True)]
    assert len(set(keys)) == len(keys), "a unit stored twice"
    return {key: {name: np.copy(v[k]) for name, v in data.items()} for k, key in enumerate(keys)}
