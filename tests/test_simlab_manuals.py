"""The simulated SMUs follow their reference manuals where the drivers depend on it, checked through raw
VISA sessions (no driver) against numbers and rules written out from the manuals."""

from __future__ import annotations

import pytest
import pyvisa

from drivers.sim import SimLab, SimVisaLibrary

pytestmark = pytest.mark.timeout(60)


def session(lab: SimLab, host: str) -> pyvisa.resources.MessageBasedResource:
    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
    inst = rm.open_resource(f"TCPIP::{host}::INSTR", read_termination="\n", write_termination="\n")
    inst.timeout = 10_000
    return inst


def pulse_duration_at_the_device(monkeypatch, lab: SimLab, host: str) -> list[float]:
    """Seconds the device is held above 0.5 V, per hold interval, as the emulator integrates it."""
    device = lab.device(host)
    held: list[float] = []
    hold = device.hold

    def recording(volts, duration_s):
        if abs(float(volts)) >= 0.5 and duration_s > 0:
            held.append(float(duration_s))
        hold(volts, duration_s)

    monkeypatch.setattr(device, "hold", recording)
    return held


# 2450 reference manual, "Source delay": voltage-source auto delay by current range (ms)
AUTO_DELAY_MS = [(10e-9, 50), (100e-9, 50), (1e-6, 3), (10e-6, 2), (100e-6, 1), (1e-3, 1), (100e-3, 1)]


@pytest.mark.parametrize(("limit_a", "delay_ms"), AUTO_DELAY_MS)
def test_k2450_auto_delay_follows_the_manuals_table(monkeypatch, limit_a, delay_ms) -> None:
    lab = SimLab(seed=0)
    held = pulse_duration_at_the_device(monkeypatch, lab, "k2450.sim")
    inst = session(lab, "k2450.sim")
    for command in (
        f":SOUR:VOLT:ILIM {limit_a:g}",  # the range that holds the limit
        ':SOUR:CONF:LIST:CRE "P"',
        ":SOUR:VOLT 1",
        ':SOUR:CONF:LIST:STOR "P"',
        ":SOUR:VOLT 0",
        ':SOUR:CONF:LIST:STOR "P"',
        ':TRIG:LOAD "Empty"',
        ':TRIG:BLOC:CONF:REC 1, "P", 1',
        ":TRIG:BLOC:SOUR:STAT 2, ON",
        ":TRIG:BLOC:DEL:CONS 3, 0.0001",
        ':TRIG:BLOC:CONF:NEXT 4, "P"',
        ":INIT",
    ):
        inst.write(command)
    assert inst.query("*OPC?") == "1"
    assert sum(held) == pytest.approx(1e-4 + delay_ms * 1e-3, rel=1e-9)
    assert inst.query(":SYST:ERR?").startswith("0,")


@pytest.mark.parametrize("host", ["k2450.sim", "b2912a.sim"])
def test_rst_keeps_the_error_queue_and_cls_empties_it(host) -> None:
    inst = session(SimLab(seed=0), host)
    inst.write(":NOT:A:COMMAND")
    inst.write("*RST")
    assert inst.query(":SYST:ERR?").lstrip("+").startswith("-113,")
    inst.write(":NOT:A:COMMAND")
    inst.write("*CLS")
    assert inst.query(":SYST:ERR?").lstrip("+").startswith("0,")


def test_k2600_reset_keeps_the_error_queue_and_the_sweep_limit_outlives_sessions() -> None:
    lab = SimLab(seed=0)
    inst = session(lab, "k2636b.sim")
    inst.write("smua.trigger.source.limiti = 0.5")
    inst.write("not a statement")
    inst.close()
    inst = session(lab, "k2636b.sim")  # a new connection does not reset the instrument
    assert float(inst.query("print(smua.trigger.source.limiti)")) == 0.5
    inst.write("reset()")
    assert float(inst.query("print(smua.trigger.source.limiti)")) == 0.0  # LIMIT_AUTO after reset()
    assert float(inst.query("print(errorqueue.count)")) == 1.0
    inst.write("errorqueue.clear()")
    assert float(inst.query("print(errorqueue.count)")) == 0.0


@pytest.mark.parametrize(("width", "accepted"), [(20e-6, False), (50e-6, True), (1e5, True), (2e5, False)])
def test_b2900_pulse_width_range_and_a_refused_value_keeps_the_old_one(width, accepted) -> None:
    inst = session(SimLab(seed=0), "b2912a.sim")
    inst.write(":SOUR:PULS:WIDT 0.001")
    inst.write(f":SOUR:PULS:WIDT {width:g}")
    error = inst.query(":SYST:ERR?")
    assert error.startswith("+0,") == accepted
    assert float(inst.query(":SOUR:PULS:WIDT?")) == pytest.approx(width if accepted else 1e-3)


@pytest.mark.parametrize(
    ("host", "line_hz", "setup", "query", "expected_s"),
    [
        # 2450 defaults: NPLC 1, autozero on, readback on; the issue measured about 17-20 ms at 60 Hz
        ("k2450.sim", 60.0, [], ":MEAS:CURR?", (17e-3, 20e-3)),
        ("k2450.sim", 50.0, [":SENS:CURR:NPLC 0.1", ":SENS:CURR:AZER OFF", ":SOUR:VOLT:READ:BACK OFF"],
         ":MEAS:CURR?", (2e-3, 2.5e-3)),
        ("k2636b.sim", 50.0, ["smua.measure.nplc = 2", "smua.measure.autozero = smua.AUTOZERO_OFF"],
         "print(smua.measure.i())", (40e-3, 41e-3)),
        ("b2912a.sim", 60.0, [":SENS:CURR:NPLC 6"], ":MEAS:CURR?", (0.1, 0.101)),
    ],
)  # fmt: skip
def test_one_reading_takes_its_integration_time(host, line_hz, setup, query, expected_s) -> None:
    lab = SimLab(seed=0, line_frequency_hz=line_hz)
    inst = session(lab, host)
    for command in setup:
        inst.write(command)
    lab.instrument(host).latency_s = 0.0
    start = lab.clock.now_s()
    inst.query(query)
    assert expected_s[0] <= lab.clock.now_s() - start <= expected_s[1]


def test_k2600_train_without_overrun_takes_every_reading_at_its_event() -> None:
    """Events slower than readings: every event starts a reading at once, none is lost."""
    lab = SimLab(seed=0)
    inst = session(lab, "k2636b.sim")
    emulator = lab.instrument("k2636b.sim")
    emulator.functions |= {"hwloop_train_setup_v3", "hwloop_run_v3"}  # as if the script were loaded
    inst.write("hwloop_train_setup_v3(0.1, 0.01, 50, 0.1, 1e-06)")  # 10 ms events, 2.1 ms readings
    inst.write("smua.source.output = smua.OUTPUT_ON")
    inst.write("hwloop_run_v3()")
    assert inst.query("*OPC?") == "1"
    starts = [t for t, _ in emulator.buffer]
    assert len(starts) == 50
    assert starts[-1] - starts[0] == pytest.approx(49 * 0.01, rel=1e-9)
    assert float(inst.query("print(status.operation.instrument.smua.trigger_overrun.event)")) == 0
