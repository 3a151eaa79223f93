"""Fault injection: each fault of the simulated lab surfaces as a typed, clear error, and nothing hangs."""

from __future__ import annotations

import numpy as np
import pytest

from drivers import (
    ComplianceError,
    ConnectionLost,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
    SafetyLimits,
    open_instrument,
)
from drivers.sim import Faults, SimLab
from drivers.sim.protocol_xbarsim import forget_arrays

pytestmark = pytest.mark.timeout(60)  # a hang fails the test instead of the suite

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
HOSTS = ["k2450.sim", "k2636b.sim", "b2912a.sim"]
TRAIN_FETCH = {"k2450.sim": ":TRAC:DATA?", "k2636b.sim": "printbuffer", "b2912a.sim": ":FETC:ARR:CURR?"}


@pytest.fixture(autouse=True)
def _fresh_arrays():
    forget_arrays()


def smu_with(host: str, faults: Faults):
    lab = SimLab(seed=1)
    smu = open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab)
    smu.set_compliance(1e-4)
    smu.nplc = 0.01  # 0.2 ms integrations: a 1 ms read interval is possible
    lab.inject(host, faults)
    return smu, lab


@pytest.mark.parametrize("host", HOSTS)
def test_no_reply_is_a_timeout(host) -> None:
    smu, _ = smu_with(host, Faults(timeout_on="*OPC?"))
    with pytest.raises(InstrumentTimeout, match="no reply within the timeout"), smu:
        smu.pulse(1.0, 1e-4)


@pytest.mark.parametrize("host", HOSTS)
def test_dropped_link_is_connection_lost_and_reconnect_recovers(host) -> None:
    smu, lab = smu_with(host, Faults(drop_after=2))
    with pytest.raises(ConnectionLost, match="connection lost"):
        smu.read_train(0.1, 1e-3, 10)
    lab.inject(host, Faults())  # the cable is plugged back in
    smu.reconnect()
    assert smu.compliance_set_a is None  # state unknown after a reconnect: compliance must be set again
    smu.set_compliance(1e-4)
    assert len(smu.read_train(0.1, 1e-3, 10).i_a) == 10
    smu.close()


@pytest.mark.parametrize("host", HOSTS)
def test_garbage_reply_is_a_protocol_error(host) -> None:
    smu, _ = smu_with(host, Faults(garbage_on=TRAIN_FETCH[host]))
    with pytest.raises(ProtocolError, match="garbage"), smu:
        smu.read_train(0.1, 1e-3, 10)


@pytest.mark.parametrize("host", HOSTS)
def test_truncated_reply_is_a_protocol_error(host) -> None:
    smu, _ = smu_with(host, Faults(truncate_on=TRAIN_FETCH[host]))
    with pytest.raises(ProtocolError), smu:
        smu.read_train(0.1, 1e-3, 10)


def test_truncated_opc_is_a_protocol_error_not_silently_accepted() -> None:
    smu, _ = smu_with("k2450.sim", Faults(truncate_on="*OPC?"))
    with pytest.raises(ProtocolError, match=r"expected 1 to \*OPC\?"), smu:
        smu.pulse(1.0, 1e-4)


@pytest.mark.parametrize("host", HOSTS)
def test_device_stuck_mid_train_is_a_compliance_error_with_the_data(host) -> None:
    lab = SimLab(seed=1)
    smu = open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab)
    smu.set_compliance(1e-5)
    smu.nplc = 0.1
    stuck_at = lab.clock.now_s() + 0.5
    lab.inject(host, Faults(stuck_at_s=stuck_at))
    with pytest.raises(ComplianceError, match="stuck-on or shorted") as info, smu:
        smu.read_train(0.1, 1e-2, 100)
    i_a = np.asarray(info.value.i_a)
    t_s = np.asarray(info.value.t_s)
    assert len(i_a) == 100  # the data taken is handed back
    first = int(np.argmax(np.abs(i_a) >= 0.99e-5))
    assert t_s[first] == pytest.approx(0.5, abs=0.03)  # the short happened half a second in
    assert np.all(np.abs(i_a[:first]) < 1e-7)
    assert not lab.instrument(host).output_on  # and the output went off on the way out


def test_serial_faults_are_typed() -> None:
    url = "xbarsim://3x3?seed=2"
    with open_instrument(url + "&timeout_on=READ", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        with pytest.raises(InstrumentTimeout, match="no reply"):
            xbar.read_device(0, 0, 0.1)
    with open_instrument(url + "&truncate_on=READROW", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        with pytest.raises(InstrumentTimeout, match="truncated reply"):
            xbar.read_row(1, 0.1)
    with pytest.raises(ProtocolError, match="garbage"):
        open_instrument(url + "&garbage_on=SIZE?", LIMITS)
    with open_instrument(url + "&drop_after=5", LIMITS) as xbar:  # open: 3 lines, compliance: 2
        xbar.set_compliance(1e-4)
        with pytest.raises(ConnectionLost, match="disconnected"):
            xbar.read_row(0, 0.1)


def test_serial_stuck_device_is_a_compliance_error_naming_it() -> None:
    with open_instrument("xbarsim://3x3?seed=2&stuck_at_s=0.2&stuck_device=1,2", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        xbar.read_row(1, 0.1)  # fine before the breakdown
        xbar.wait(0.5)
        xbar.read_row(0, 0.1)  # other rows still fine
        with pytest.raises(ComplianceError, match="row 1 col 2"):
            xbar.read_device(1, 2, 0.1)


def test_unknown_instrument_and_bad_urls_are_clear_errors() -> None:
    with pytest.raises(InstrumentError, match="cannot open serial port"):
        open_instrument("xbarsim://eight?seed=1", LIMITS)
    with pytest.raises(InstrumentError, match="cannot open VISA resource"):
        open_instrument("TCPIP::nothing.sim::INSTR", LIMITS)
