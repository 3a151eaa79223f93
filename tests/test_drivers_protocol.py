"""Protocol tests: the exact command sequence each driver sends, written out from the instruments'
reference manuals (and the crossbar protocol document), against scripted replies."""

from __future__ import annotations

import re

import numpy as np
import pytest
from protocol_frames import crc16_ccitt_false
from protocol_frames import framed as v2

from drivers import CrossbarController, Keithley2450, Keithley2600B, KeysightB2900, SafetyLimits
from drivers.errors import ProtocolError, SafetyError
from drivers.sim.clock import VirtualClock
from drivers.smu_k2600 import SCRIPT
from drivers.testing import ProtocolMismatch, ScriptedTransport

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10
)


def play(driver_cls, script):
    transport = ScriptedTransport(script)
    return driver_cls(transport, LIMITS, VirtualClock()), transport


def test_k2450_pulse_sequence() -> None:
    smu, t = play(
        Keithley2450,
        [
            ("*CLS", None),
            (":SOUR:FUNC VOLT", None),
            (':SENS:FUNC "CURR"', None),
            (":SOUR:VOLT:ILIM 0.0001", None),
            (":SYST:ERR?", '0,"No error;0;0 0"'),
            ("*CLS", None),  # each sequence starts from an empty error queue
            (":OUTP OFF", None),
            (":SOUR:VOLT 0", None),
            (":SOUR:VOLT:DEL:AUTO OFF", None),  # stored with each list entry: no 1-50 ms settling delay
            (":SOUR:VOLT:DEL 0", None),
            (":SOUR:CONF:LIST:CAT?", '""'),  # first pulse of a session: is the list already stored?
            (":SOUR:CONF:LIST:CAT?", '""'),  # (a second, complete walk of the catalog)
            (':SOUR:CONF:LIST:CRE "HWLOOP_PULSE"', None),
            (":SOUR:VOLT 1.5", None),
            (':SOUR:CONF:LIST:STOR "HWLOOP_PULSE"', None),
            (":SOUR:VOLT 0", None),
            (":OUTP ON", None),  # entry 2 stores the output on: the pulse ends on at 0 V
            (':SOUR:CONF:LIST:STOR "HWLOOP_PULSE"', None),
            (':SOUR:CONF:LIST:SIZE? "HWLOOP_PULSE"', "2"),  # the list just stored, before arming
            (':TRIG:LOAD "Empty"', None),
            (':TRIG:BLOC:CONF:REC 1, "HWLOOP_PULSE", 1', None),
            (":TRIG:BLOC:SOUR:STAT 2, ON", None),
            (":TRIG:BLOC:DEL:CONS 3, 0.0001", None),
            (':TRIG:BLOC:CONF:NEXT 4, "HWLOOP_PULSE"', None),
            (":OUTP?", "1"),  # read back before the pulse fires: on at 0 V
            (":SOUR:VOLT?", "0.000000e+00"),
            (":SYST:ERR?", '0,"No error;0;0 0"'),  # every setting accepted before arming
            (":INIT", None),
            ("*OPC?", "1"),
            (":SYST:ERR?", '0,"No error;0;0 0"'),
            (":OUTP?", "1"),  # and after it ended
            (":SOUR:VOLT?", "0.000000e+00"),
        ],
    )
    smu.set_compliance(1e-4)
    smu.pulse(1.5, 100e-6)
    assert t.done()


def test_k2450_second_pulse_deletes_the_old_list_first() -> None:
    smu, t = play(Keithley2450, [])
    smu.compliance_set_a = 1e-4
    smu._list_created = True
    t.script = [
        ("*CLS", None),
        (":OUTP OFF", None),
        (":SOUR:VOLT 0", None),
        (":SOUR:VOLT:DEL:AUTO OFF", None),
        (":SOUR:VOLT:DEL 0", None),
        (':SOUR:CONF:LIST:DEL "HWLOOP_PULSE"', None),
    ]
    with pytest.raises(ProtocolMismatch, match="after the end of the script"):
        smu.pulse(1.0, 1e-4)
    assert t.sent[5] == ':SOUR:CONF:LIST:DEL "HWLOOP_PULSE"'


def test_k2450_read_train_sequence_and_parsing() -> None:
    smu, t = play(
        Keithley2450,
        [
            (":SYST:LFR?", "60"),  # once per session: NPLC 0.01 = 0.167 ms at 60 Hz
            ("*CLS", None),
            (':TRAC:POIN? "defbuffer1"', "100000"),  # the train fits before anything sources
            (":SENS:CURR:NPLC 0.01", None),
            (":SENS:CURR:AZER OFF", None),  # autozero once before the train, not per reading
            (":SOUR:VOLT:READ:BACK OFF", None),
            (":SOUR:VOLT 0.1", None),
            (":OUTP ON", None),
            (":SENS:AZER:ONCE", None),
            (':TRAC:CLE "defbuffer1"', None),
            (':TRIG:LOAD "Empty"', None),
            (':TRIG:BLOC:MEAS 1, "defbuffer1"', None),
            (":TRIG:BLOC:DEL:CONS 2, 0.000833333", None),  # 1 ms minus the integration
            (":TRIG:BLOC:BRAN:COUN 3, 3, 1", None),
            (":SYST:ERR?", '0,"No error;0;0 0"'),
            (":INIT", None),
            ("*OPC?", "1"),
            (':TRAC:DATA? 1, 3, "defbuffer1", READ, REL', "1.0e-9,0.000,2.0e-9,0.0012,3.0e-9,0.0024"),
            (":SYST:ERR?", '0,"No error;0;0 0"'),
        ],
    )
    smu.compliance_set_a = 1e-4
    smu.nplc = 0.01
    train = smu.read_train(0.1, 1e-3, 3)
    assert t.done()
    np.testing.assert_allclose(train.i_a, [1e-9, 2e-9, 3e-9])
    np.testing.assert_allclose(train.t_s, [0.0, 0.0012, 0.0024])


def test_k2600_loads_the_script_once_then_calls_it() -> None:
    load = [
        ("loadscript hwloop_v3", None),
        *[(line, None) for line in SCRIPT.splitlines()],
        ("endscript", None),
    ]
    smu, t = play(
        Keithley2600B,
        [
            ("errorqueue.clear()", None),
            ("smua.source.func = smua.OUTPUT_DCVOLTS", None),
            ("smua.source.limiti = 0.0001", None),
            ("print(errorqueue.count)", "0.00000e+00"),
            ("errorqueue.clear()", None),
            ("print(hwloop_run_v3 ~= nil)", "false"),
            *load,
            ("hwloop_v3.run()", None),
            ("hwloop_pulse_setup_v3(1.5, 0.0001, 0.0001)", None),  # sweep limit = the user's compliance
            ("print(errorqueue.count)", "0.00000e+00"),  # every setting accepted before the output goes on
            ("smua.source.output = smua.OUTPUT_ON", None),
            ("print(smua.source.output)", "1.00000e+00"),  # read back before the pulse fires
            ("print(smua.source.levelv)", "0.00000e+00"),
            ("hwloop_run_v3()", None),
            ("*OPC?", "1"),
            ("print(errorqueue.count)", "0.00000e+00"),
            ("print(smua.source.output)", "1.00000e+00"),  # and after it ended
            ("print(smua.source.levelv)", "0.00000e+00"),
            ("print(localnode.linefreq)", "5.00000e+01"),
            ("errorqueue.clear()", None),
            ("hwloop_train_setup_v3(0.1, 0.001, 2, 0.01, 1e-06)", None),  # 1 us timestamps
            ("print(errorqueue.count)", "0.00000e+00"),
            ("print(smua.nvbuffer1.capacity)", "8.40000e+04"),  # 2 readings fit: the train may start
            ("smua.source.output = smua.OUTPUT_ON", None),
            ("hwloop_run_v3()", None),
            ("*OPC?", "1"),
            (
                "printbuffer(1, 2, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps)",
                "1.00000000000e-09, 5.00000000000e+00, 2.00000000000e-09, 5.00100000000e+00",
            ),
            ("print(errorqueue.count)", "0.00000e+00"),
        ],
    )
    smu.set_compliance(1e-4)
    smu.clock.sleep(1.0)
    smu.pulse(1.5, 100e-6)
    smu.nplc = 0.01
    train = smu.read_train(0.1, 1e-3, 2)
    assert t.done()
    np.testing.assert_allclose(train.t_s, [0.0, 0.001])  # relative to the first reading
    np.testing.assert_allclose(train.i_a, [1e-9, 2e-9])
    for line in (  # what the sequences depend on is set inside the setup functions (2600B reference manual)
        "function hwloop_pulse_setup_v3(amplitude, width, limit)",
        "  smua.trigger.source.limiti = limit",
        "  smua.source.delay = 0",
        "  smua.measure.nplc = nplc",
        "  smua.measure.autozero = smua.AUTOZERO_ONCE",
        "  format.data = format.ASCII",
        "  format.asciiprecision = 12",  # 6 digits would quantise timestamps past 10 s to 100 us
        "  smua.nvbuffer1.collectsourcevalues = 0",
        "  smua.nvbuffer1.collecttimestamps = 1",
        "  smua.nvbuffer1.timestampresolution = resolution",
        "  smua.nvbuffer1.fillmode = smua.FILL_ONCE",
        "  smua.trigger.arm.stimulus = 0",
    ):
        assert line in SCRIPT.splitlines()
    assert not any("smua.source.output" in line for line in SCRIPT.splitlines())  # the driver does it


def test_b2900_pulse_and_timer_read_train_sequences() -> None:
    smu, t = play(
        KeysightB2900,
        [
            ("*CLS", None),
            (":SYST:LFR?", "+50"),  # once per session
            (":SOUR:FUNC:SHAP PULS", None),
            (":SOUR:VOLT:MODE FIX", None),  # not a leftover LIST / SWE
            (":SOUR:VOLT 0", None),
            (":SOUR:VOLT:TRIG 1.5", None),
            (":SOUR:PULS:DEL 0", None),
            (":SOUR:PULS:WIDT 0.0001", None),
            (":SENS:CURR:APER:AUTO OFF", None),  # the acquisition each pulse triggers
            (":SENS:CURR:NPLC 1", None),
            (":TRIG:TRAN:DEL 0", None),
            (":TRIG:ACQ:DEL 0", None),
            (":ARM:SOUR AINT", None),
            (":ARM:COUN 1", None),  # one pulse per :INIT, whatever an earlier program left
            (":TRIG:SOUR AINT", None),
            (":TRIG:COUN 1", None),
            (":OUTP ON", None),
            (":OUTP?", "1"),  # read back before the pulse fires: on at a 0 V base
            (":SOUR:VOLT?", "+0.000000E+00"),
            (":SYST:ERR?", '+0,"No error"'),
            (":INIT (@1)", None),
            ("*OPC?", "1"),
            (":SYST:ERR?", '+0,"No error"'),
            (":OUTP?", "1"),  # and after it ended
            (":SOUR:VOLT?", "+0.000000E+00"),
            ("*CLS", None),
            (":SOUR:FUNC:SHAP DC", None),
            (":SOUR:VOLT:MODE FIX", None),
            (":SOUR:VOLT 0.1", None),
            (":SOUR:VOLT:TRIG 0.1", None),
            (":SENS:CURR:APER:AUTO OFF", None),
            (":SENS:CURR:NPLC 0.01", None),
            (":FORM:DATA ASC", None),
            (":OUTP ON", None),
            (":TRIG:TRAN:DEL 0", None),
            (":TRIG:ACQ:DEL 0", None),
            (":ARM:SOUR AINT", None),
            (":ARM:COUN 1", None),
            (":TRIG:SOUR TIM", None),
            (":TRIG:TIM 0.001", None),
            (":TRIG:COUN 2", None),
            (":SYST:ERR?", '+0,"No error"'),
            (":INIT (@1)", None),
            ("*OPC?", "1"),
            (":FETC:ARR:CURR? (@1)", "+1.000000E-09,+2.000000E-09"),
            (":FETC:ARR:TIME? (@1)", "+0.000000E+00,+1.000000E-03"),
            (":SYST:ERR?", '+0,"No error"'),
        ],
    )
    smu.compliance_set_a = 1e-4
    smu.pulse(1.5, 100e-6)
    smu.nplc = 0.01
    train = smu.read_train(0.1, 1e-3, 2)
    assert t.done()
    np.testing.assert_allclose(train.t_s, [0.0, 1e-3])


def test_instrument_error_queue_is_surfaced() -> None:
    smu, _ = play(
        Keithley2450,
        [
            ("*CLS", None),
            (":SOUR:FUNC VOLT", None),
            (':SENS:FUNC "CURR"', None),
            (":SOUR:VOLT:ILIM 0.0001", None),
            (":SYST:ERR?", '-222,"Parameter data out of range"'),
        ],
    )
    with pytest.raises(Exception, match=r"reported error -222: Parameter data out of range"):
        smu.set_compliance(1e-4)


def test_crc_is_the_named_standard_and_the_spec_example_holds() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE
    assert v2(7, "PULSE 2 3 1.5 0.0001") == "@7 PULSE 2 3 1.5 0.0001*CB23"  # the spec's worked example


def test_crossbar_controller_protocol_v2() -> None:
    ilim = "ILIM 1.000000e-04"
    t = ScriptedTransport(
        [
            (v2(1, "VER?"), v2(1, "2.0.0")),
            (v2(2, "SIZE?"), v2(2, "4,3")),
            (v2(3, "LIMITS?"), v2(3, "10,1e-06,1,1e-09,0.1")),
            (v2(4, "*IDN?"), v2(4, "HWLOOP,XBAR-CTRL,0001,2.0.0")),
            (v2(5, "VER?"), v2(5, "2.0.0")),
            (v2(6, "ILIM 0.0001"), v2(6, "ECHO ILIM 1.000000e-04")),
            (v2(7, "GO 6"), v2(7, "OK")),
            (v2(8, "PULSE 2 1 1.5 0.0001"), v2(8, f"ECHO PULSE 2 1 1.500000e+00 1.000000e-04 {ilim}")),
            (v2(9, "GO 8"), v2(9, "OK")),
            (v2(10, "READ 2 1 0.1"), v2(10, f"ECHO READ 2 1 1.000000e-01 {ilim}")),
            (v2(11, "GO 10"), v2(11, "0.500000,1.5e-09")),
            (v2(12, "READROW 3 0.1"), v2(12, f"ECHO READROW 3 1.000000e-01 {ilim}")),
            (v2(13, "GO 12"), v2(13, "0.600000,1e-09,2e-09,3e-09")),
            (
                v2(14, "PULSEROW 0 0.0001 1.5,0,-1"),
                v2(14, f"ECHO PULSEROW 0 1.000000e-04 1.500000e+00,0.000000e+00,-1.000000e+00 {ilim}"),
            ),
            (v2(15, "GO 14"), v2(15, "OK")),
            (v2(16, "RST"), v2(16, "OK")),
        ]
    )
    clock = VirtualClock()
    with CrossbarController(t, LIMITS, clock) as xbar:
        assert (xbar.rows, xbar.cols, xbar.protocol) == (4, 3, 2)
        assert xbar.identify().startswith("HWLOOP")
        assert xbar.firmware_version() == "2.0.0"
        xbar.set_compliance(1e-4)
        xbar.pulse_device(2, 1, 1.5, 1e-4)
        assert xbar.read_device(2, 1, 0.1) == (0.5, 1.5e-9)
        row = xbar.read_row(3, 0.1)
        assert row.t_s == 0.6
        np.testing.assert_allclose(row.i_a, [1e-9, 2e-9, 3e-9])
        clock.sleep(0.1)
        xbar.pulse_row(0, [1.5, 0.0, -1.0], 1e-4)
    assert t.done()


def test_crossbar_controller_protocol_v1_is_negotiated_and_stays_readable() -> None:
    t = ScriptedTransport(
        [
            (v2(1, "VER?"), "ERR SYNTAX unknown command '@1'"),  # a v1 firmware cannot read a frame
            ("VER?", "1.0.0"),
            ("*IDN?", "ACME,XBAR,7,1.0.0"),
            ("SIZE?", "4,3"),
            ("ILIM 0.0001", "OK"),
            ("SEL 2 1", "OK"),
            ("READ 0.1", "0.500000,1.5e-09"),
            ("READROW 3 0.1", "0.600000,1e-09,2e-09,3e-09"),
            ("RST", "OK"),
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        assert xbar.protocol == 1
        xbar.set_compliance(1e-4)
        assert xbar.read_device(2, 1, 0.1) == (0.5, 1.5e-9)
        np.testing.assert_allclose(xbar.read_row(3, 0.1).i_a, [1e-9, 2e-9, 3e-9])
        with pytest.raises(SafetyError, match=r"protocol v1.*--allow-v1-pulses"):
            xbar.pulse_device(2, 1, 1.5, 1e-4)
        with pytest.raises(SafetyError, match="protocol v1"):
            xbar.pulse_row(0, [1.5, 0.0, 0.0], 1e-4)
    assert t.done()


def test_v1_pulses_only_with_the_explicit_opt_in() -> None:
    t = ScriptedTransport(
        [
            (v2(1, "VER?"), "ERR SYNTAX unknown command '@1'"),
            ("VER?", "1.0.0"),
            ("*IDN?", "ACME,XBAR,7,1.0.0"),
            ("SIZE?", "4,3"),
            ("ILIM 0.0001", "OK"),
            ("SEL 2 1", "OK"),
            ("PULSE 1.5 0.0001", "OK"),
        ]
    )
    xbar = CrossbarController(t, LIMITS, VirtualClock(), allow_v1_pulses=True)
    xbar.set_compliance(1e-4)
    xbar.pulse_device(2, 1, 1.5, 1e-4)
    assert t.done()


def test_controller_err_replies_become_typed_errors() -> None:
    from drivers import ComplianceError, InstrumentError

    ilim = "ILIM 1.000000e-04"
    t = ScriptedTransport(
        [
            (v2(1, "VER?"), v2(1, "2.0.0")),
            (v2(2, "SIZE?"), v2(2, "2,2")),
            (v2(3, "LIMITS?"), v2(3, "10,1e-06,1,1e-09,0.1")),
            (v2(4, "ILIM 0.0001"), v2(4, "ECHO ILIM 1.000000e-04")),
            (v2(5, "GO 4"), v2(5, "OK")),
            (v2(6, "READROW 1 0.1"), v2(6, f"ECHO READROW 1 1.000000e-01 {ilim}")),
            (v2(7, "GO 6"), v2(7, "ERR COMPLIANCE row 1: current limited at 0.0001 A")),
            (v2(8, "READ 0 0 0.1"), v2(8, "ERR STATE busy")),
        ]
    )
    xbar = CrossbarController(t, LIMITS, VirtualClock())
    xbar.set_compliance(1e-4)
    with pytest.raises(ComplianceError, match="row 1: current limited"):
        xbar.read_row(1, 0.1)
    with pytest.raises(InstrumentError, match=re.escape("refused 'READ 0 0 0.1': STATE busy")):
        xbar.read_device(0, 0, 0.1)


@pytest.mark.parametrize(
    ("driver_cls", "off_sequence"),
    [
        (Keithley2450, [(":ABOR", None), (":SOUR:VOLT 0", None), (":OUTP OFF", None)]),
        (
            Keithley2600B,
            [
                ("smua.abort()", None),
                ("smua.source.levelv = 0", None),
                ("smua.source.output = smua.OUTPUT_OFF", None),
            ],
        ),
        (KeysightB2900, [(":ABOR (@1)", None), (":SOUR:VOLT 0", None), (":OUTP OFF", None)]),
    ],
)
def test_leaving_the_context_on_an_interrupt_aborts_and_switches_off(driver_cls, off_sequence) -> None:
    smu, t = play(driver_cls, off_sequence)
    with pytest.raises(KeyboardInterrupt), smu:
        raise KeyboardInterrupt
    assert t.done()
    assert t.log[0].text == "<device clear>"  # first: frees a parser held by a script or an *OPC?


def test_declared_settings_query_and_parse_their_replies() -> None:
    smu, t = play(
        Keithley2600B,
        [
            ("print(smua.source.output)", "1.00000e+00"),
            ("print(smua.source.limiti)", "1.00000e-04"),
            ("print(smua.source.levelv)", "#garbage"),
        ],
    )
    assert smu.output_enabled is True
    assert smu.compliance_a == pytest.approx(1e-4)
    with pytest.raises(ProtocolError, match="cannot read level_v from '#garbage'"):
        _ = smu.level_v
    assert t.done()
