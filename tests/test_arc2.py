"""ArC TWO driver: its calls against pyarc2's own API, its refusals, a decay campaign on the fake board."""

from __future__ import annotations

import inspect
import json
import re
from unittest import mock

import numpy as np
import pyarc2
import pytest

from calibration.analysis import build_record
from drivers import Arc2Controller, ArrayController, ComplianceError, SafetyError, SafetyLimits, open_array
from drivers.arc2 import BITS, WORDS
from drivers.sim.arc2_fake import FakeInstrument, forget_boards, sim_lines
from drivers.sim.clock import VirtualClock

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10
)
FAKED = [
    "pulse_one",
    "pulse_slice_masked",
    "read_one",
    "read_slice_masked",
    "ground_all",
    "float_all",
    "delay",
    "execute",
    "wait",
    "busy",
]


@pytest.fixture(autouse=True)
def fresh_boards():
    forget_boards()
    yield
    forget_boards()


@pytest.mark.parametrize("name", FAKED)
def test_fake_has_pyarc2s_method_names_and_argument_order(name) -> None:
    """Against the compiled module's own signatures (pyarc2 0.6.0), not against our driver."""
    real = inspect.signature(getattr(pyarc2.pyarc2.InstrumentLL, name))
    fake = inspect.signature(getattr(FakeInstrument, name))
    assert [p for p in real.parameters if p != "self"] == [p for p in fake.parameters if p != "self"]


def board() -> mock.MagicMock:
    """A ``pyarc2.Instrument`` stand-in autospecced from the real class: a wrong name or argument count
    raises, and every call is recorded."""
    inst = mock.create_autospec(pyarc2.Instrument, instance=True)
    for builder in ("pulse_one", "pulse_slice_masked", "ground_all", "execute"):
        getattr(inst, builder).return_value = inst
    return inst


def test_row_pulse_calls_one_masked_slice_pulse_per_amplitude_then_grounds() -> None:
    inst = board()
    xbar = Arc2Controller(inst, LIMITS, VirtualClock(), rows=4, cols=4)
    xbar.set_compliance(1e-4)
    inst.reset_mock()
    xbar.pulse_row(2, [1.5, 0.0, 1.5, -1.0], 1e-4)
    calls = [c for c in inst.mock_calls if c[0] in ("pulse_slice_masked", "ground_all")]
    assert calls == [
        mock.call.pulse_slice_masked(WORDS[2], -1.0, 100_000, [BITS[3]]),
        mock.call.ground_all(),
        mock.call.pulse_slice_masked(WORDS[2], 1.5, 100_000, [BITS[0], BITS[2]]),
        mock.call.ground_all(),
    ]
    assert inst.execute.call_count == 4 and inst.wait.call_count == 4


def test_everything_refused_reaches_the_board_not_at_all() -> None:
    inst = board()
    xbar = Arc2Controller(inst, LIMITS, VirtualClock(), rows=4, cols=4)
    inst.reset_mock()
    with pytest.raises(Exception, match="set the compliance"):
        xbar.pulse_device(0, 0, 1.0, 1e-4)
    xbar.set_compliance(1e-4)
    for call, message in [
        (lambda: xbar.pulse_device(0, 0, 2.5, 1e-4), "pulse amplitude 2.5 V exceeds"),
        (lambda: xbar.pulse_device(0, 0, 1.0, 2e-3), "pulse width 0.002 s exceeds"),
        (
            lambda: xbar.pulse_device(0, 0, 1.0, 5e-8),
            "pulse width 5e-08 s is outside what hwloop asks of ArC TWO",
        ),
        (lambda: xbar.pulse_row(0, [1.0, 1.0], 1e-4), "needs 4 amplitudes"),
        (lambda: xbar.pulse_device(4, 0, 1.0, 1e-4), "row 4 is outside the 4x4 array"),
        (lambda: xbar.read_row(0, -2.5), "read voltage -2.5 V exceeds"),
        (lambda: xbar.set_compliance(0.5), "compliance 0.5 A exceeds"),
    ]:
        with pytest.raises(SafetyError, match=re.escape(message)):
            call()
    assert inst.mock_calls == []
    xbar.pulse_device(0, 0, 1.0, 1e-4)
    with pytest.raises(SafetyError, match=re.escape("one pulse every 0.1 s")):
        xbar.pulse_device(0, 0, 1.0, 1e-4)


def test_reads_on_the_fake_follow_ohms_law_with_the_simulated_conductances() -> None:
    with open_array("arc2sim://4x3?seed=2", LIMITS) as xbar:
        assert isinstance(xbar, ArrayController)
        xbar.set_compliance(1e-4)
        g = sim_lines(4, 3, 2).array.devices.conductance_siemens()  # ground truth
        for row in range(4):
            np.testing.assert_allclose(xbar.read_row(row, 0.2).i_a, 0.2 * g[row], rtol=0.1)
        assert xbar.read_device(3, 1, 0.2).i_a == pytest.approx(0.2 * g[3, 1], rel=0.1)


def test_pulses_reach_exactly_the_devices_asked_for() -> None:
    with open_array("arc2sim://3x3?seed=4", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        devices = sim_lines(3, 3, 4).array.devices
        xbar.pulse_row(1, [1.5, 0.0, 1.5], 1e-3)
        pulsed = devices.g_fast_siemens + devices.g_slow_siemens > 0
        np.testing.assert_array_equal(pulsed, [[0, 0, 0], [1, 0, 1], [0, 0, 0]])
        xbar.wait(0.2)
        xbar.pulse_device(2, 1, 1.5, 1e-3)
        assert devices.g_fast_siemens[2, 1] + devices.g_slow_siemens[2, 1] > 0
    scope = [d for d in sim_lines(3, 3, 4).scope if d.what == "pulse"]
    assert [(d.max_abs_v, d.duration_s) for d in scope] == [(1.5, 1e-3), (1.5, 1e-3)]


def test_a_shorted_device_is_a_compliance_error_with_the_data() -> None:
    with open_array("arc2sim://2x2?seed=6&stuck_at_s=0.1&stuck_device=1,0", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        xbar.read_row(1, 0.1)
        xbar.wait(0.2)
        with pytest.raises(ComplianceError, match="row 1") as info:
            xbar.read_row(1, 0.1)
        assert np.asarray(info.value.i_a)[0] >= 1e-4


def test_decay_campaign_on_the_fake_board_recovers_true_tau(tmp_path, hwloop_run) -> None:
    """``hwloop calibrate run --resource arc2sim://...`` end to end; truth: each device's tau at 0 V."""
    data, config = tmp_path / "decay.h5", tmp_path / "campaign.json"
    config.write_text(json.dumps({"pulse": None, "decay": {"count": 200, "cycles": 1}}))
    code, _, err = hwloop_run(
        "calibrate", "run", "--resource", "arc2sim://3x3?seed=3", "--out", str(data), "--config", str(config)
    )
    assert code == 0, err
    record, _ = build_record(data, model="exp")
    truth = sim_lines(3, 3, 3).array.tau_s(0.0).reshape(-1)
    ok = record.good()
    assert ok.sum() >= 8
    assert np.median(np.abs(record.array("tau_s") / truth - 1)[ok]) < 0.03
