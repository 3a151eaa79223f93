"""Keithley 2450 pulse list across driver sessions: configuration lists outlive a session (until *RST),
so a new session on the same instrument must find the old list instead of creating it again (-222)."""

from __future__ import annotations

import pytest
import pyvisa

from drivers import InstrumentError, Keithley2450, SafetyLimits, open_instrument
from drivers.sim import SimLab, SimVisaLibrary
from drivers.sim.clock import VirtualClock
from drivers.smu_k2450 import PULSE_LIST
from drivers.testing import ScriptedTransport

RESOURCE = "TCPIP::k2450.sim::INSTR"
HOST = "k2450.sim"
LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
NO_ERROR = '0,"No error;0;0 0"'


def first_session(lab: SimLab, amplitude_v: float = 1.0) -> None:
    """A session that pulses once and closes without *RST, as a finished campaign does."""
    with open_instrument(RESOURCE, LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(amplitude_v, 1e-4)
    lab.clock.sleep(1.0)


def raw_session(lab: SimLab) -> pyvisa.resources.MessageBasedResource:
    """A bare VISA session on the same simulated 2450 (another program on the instrument)."""
    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
    return rm.open_resource(RESOURCE, read_termination="\n", write_termination="\n")


def record_voltage(monkeypatch: pytest.MonkeyPatch, lab: SimLab) -> list[tuple[float, float]]:
    """(volts, seconds) of every interval the device is held at, as the emulator integrates it."""
    device = lab.device(HOST)
    held: list[tuple[float, float]] = []
    hold = device.hold

    def recording_hold(volts, duration_s):
        if duration_s > 0:
            held.append((float(volts), float(duration_s)))
        hold(volts, duration_s)

    monkeypatch.setattr(device, "hold", recording_hold)
    return held


def sent(smu: Keithley2450) -> list[str]:
    return [entry.text for entry in smu.transport.log if entry.direction == ">"]


def test_a_second_session_without_reset_pulses_correctly(monkeypatch) -> None:
    lab = SimLab(seed=5)
    emulator = lab.instrument(HOST)
    first_session(lab, amplitude_v=1.0)
    assert emulator.list_levels() == {PULSE_LIST: [1.0, 0.0]}  # the list outlived the session

    held = record_voltage(monkeypatch, lab)
    with open_instrument(RESOURCE, LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.5, 2e-4)
        assert emulator.level_v == 0.0 and emulator.applied_v == 0.0  # back at 0 V after the pulse
        assert emulator.errors == []
        commands = sent(smu)
    assert "*RST" not in commands
    catalog = commands.index(":SOUR:CONF:LIST:CAT?")
    delete = commands.index(f':SOUR:CONF:LIST:DEL "{PULSE_LIST}"')
    create = commands.index(f':SOUR:CONF:LIST:CRE "{PULSE_LIST}"')
    assert catalog < delete < create < commands.index(":INIT")
    assert emulator.list_levels() == {PULSE_LIST: [1.5, 0.0]}
    pulses = [(v, s) for v, s in held if v != 0.0]
    assert len(pulses) == 1  # exactly one excursion from 0 V: the new amplitude for the asked width
    assert pulses[0][0] == pytest.approx(1.5)
    assert pulses[0][1] == pytest.approx(2e-4, rel=1e-9)
    assert not emulator.output_on and emulator.level_v == 0.0  # off and at 0 V once the session closed
    assert emulator.errors == []


def test_creating_the_list_again_is_error_222_on_the_sim() -> None:
    """What the old driver did in a second session: CRE without looking. The sim answers as the 2450."""
    lab = SimLab(seed=5)
    first_session(lab)
    inst = raw_session(lab)
    inst.write(f':SOUR:CONF:LIST:CRE "{PULSE_LIST}"')
    assert inst.query(":SYST:ERR?").startswith("-222,")
    assert inst.query(":SYST:ERR?") == NO_ERROR
    inst.close()


def test_the_old_sequence_is_refused_before_the_output_goes_on(monkeypatch) -> None:
    """A session that wrongly believes the list absent (the old driver) gets -222 and the STOREs append
    to the stale list; the size check stops it before the trigger model can recall the old amplitude."""
    lab = SimLab(seed=5)
    emulator = lab.instrument(HOST)
    first_session(lab, amplitude_v=1.9)
    held = record_voltage(monkeypatch, lab)
    with open_instrument(RESOURCE, LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu._list_created = False  # the old driver's state in a new session
        with pytest.raises(InstrumentError, match="-222"):
            smu.pulse(1.0, 1e-4)
        assert ":INIT" not in sent(smu)
    assert emulator.list_levels()[PULSE_LIST] == [1.9, 0.0, 1.0, 0.0]
    assert all(v == 0.0 for v, _ in held)  # the device never saw a pulse
    assert not emulator.output_on and emulator.level_v == 0.0


def test_a_catalog_walk_left_half_done_by_another_program_does_not_hide_the_list() -> None:
    lab = SimLab(seed=6)
    emulator = lab.instrument(HOST)
    first_session(lab)
    inst = raw_session(lab)
    inst.write(':SOUR:CONF:LIST:CRE "OTHER"')
    assert inst.query(":SOUR:CONF:LIST:CAT?") == f'"{PULSE_LIST}"'  # and walks no further
    inst.close()
    with open_instrument(RESOURCE, LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.2, 1e-4)
        assert sent(smu).count(":SOUR:CONF:LIST:CAT?") == 2 + 3  # the stale walk's rest, then a full walk
    assert emulator.list_levels() == {PULSE_LIST: [1.2, 0.0], "OTHER": []}
    assert emulator.errors == []
    assert emulator.catalog_walk is None  # every walk finished: the next program starts at the top


def test_only_the_first_pulse_of_a_session_asks_and_reset_needs_no_asking() -> None:
    lab = SimLab(seed=7)
    emulator = lab.instrument(HOST)
    with open_instrument(RESOURCE, LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        for _ in range(3):
            smu.pulse(1.0, 1e-4)
            smu.wait(0.01)
        assert sent(smu).count(":SOUR:CONF:LIST:CAT?") == 2  # two empty walks on a fresh instrument
        smu.reset()  # *RST deletes every configuration list: known absent without asking
        assert emulator.list_levels() == {}
        smu.set_compliance(1e-4)
        before = len(sent(smu))
        smu.pulse(1.0, 1e-4)
        after_reset = sent(smu)[before:]
    assert ":SOUR:CONF:LIST:CAT?" not in after_reset
    assert f':SOUR:CONF:LIST:DEL "{PULSE_LIST}"' not in after_reset
    assert emulator.list_levels() == {PULSE_LIST: [1.0, 0.0]}
    assert emulator.errors == []


def test_first_pulse_sequence_on_an_instrument_holding_the_list() -> None:
    """Exact wire sequence (2450 reference manual: CATalog? returns one name per query, "" after the last)."""
    transport = ScriptedTransport(
        [
            ("*CLS", None),
            (":SOUR:FUNC VOLT", None),
            (':SENS:FUNC "CURR"', None),
            (":SOUR:VOLT:ILIM 0.0001", None),
            (":SYST:ERR?", NO_ERROR),
            ("*CLS", None),
            (":OUTP OFF", None),
            (":SOUR:VOLT 0", None),
            (":SOUR:VOLT:DEL:AUTO OFF", None),
            (":SOUR:VOLT:DEL 0", None),
            (":SOUR:CONF:LIST:CAT?", "HWLOOP_PULSE"),  # unquoted replies are read too
            (":SOUR:CONF:LIST:CAT?", '""'),
            (':SOUR:CONF:LIST:DEL "HWLOOP_PULSE"', None),
            (':SOUR:CONF:LIST:CRE "HWLOOP_PULSE"', None),
            (":SOUR:VOLT 1.5", None),
            (':SOUR:CONF:LIST:STOR "HWLOOP_PULSE"', None),
            (":SOUR:VOLT 0", None),
            (":OUTP ON", None),  # entry 2 stores the output on: the pulse ends on at 0 V
            (':SOUR:CONF:LIST:STOR "HWLOOP_PULSE"', None),
            (':SOUR:CONF:LIST:SIZE? "HWLOOP_PULSE"', "2"),
            (':TRIG:LOAD "Empty"', None),
            (':TRIG:BLOC:CONF:REC 1, "HWLOOP_PULSE", 1', None),
            (":TRIG:BLOC:SOUR:STAT 2, ON", None),
            (":TRIG:BLOC:DEL:CONS 3, 0.0001", None),
            (':TRIG:BLOC:CONF:NEXT 4, "HWLOOP_PULSE"', None),
            (":OUTP?", "1"),  # read back before the pulse fires: on at 0 V
            (":SOUR:VOLT?", "0.000000e+00"),
            (":SYST:ERR?", NO_ERROR),
            (":INIT", None),
            ("*OPC?", "1"),
            (":SYST:ERR?", NO_ERROR),
            (":OUTP?", "1"),  # and after it ended
            (":SOUR:VOLT?", "0.000000e+00"),
        ]
    )
    smu = Keithley2450(transport, LIMITS, VirtualClock())
    smu.set_compliance(1e-4)
    smu.pulse(1.5, 100e-6)
    assert transport.done()
