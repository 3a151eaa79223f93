"""The simulated lab through the libraries' own entry points: PyVISA backends and pyserial URLs."""

from __future__ import annotations

import pyvisa
import serial

import drivers  # noqa: F401  (registers the xbarsim:// handler and, via drivers.sim, @hwloopsim)
from drivers.sim import SimLab, SimVisaLibrary
from drivers.sim.protocol_xbarsim import forget_arrays
from drivers.transport import VisaTransport


def test_resource_manager_from_a_backend_instance_drives_that_lab() -> None:
    lab = SimLab(seed=7)
    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
    assert set(rm.list_resources()) == {
        "TCPIP::k2450.sim::INSTR",
        "TCPIP::k2636b.sim::INSTR",
        "TCPIP::b2912a.sim::INSTR",
    }
    inst = rm.open_resource("TCPIP::b2912a.sim::INSTR", read_termination="\n", write_termination="\n")
    inst.write(":SOUR:VOLT 0.25")
    assert lab.instrument("b2912a.sim").level_v == 0.25
    assert float(inst.query(":SOUR:VOLT?")) == 0.25
    inst.write(":NOT:A:COMMAND")
    assert inst.query(":SYST:ERR?").startswith("-113,")
    inst.close()


def test_at_name_spec_opens_the_simulated_backend() -> None:
    rm = pyvisa.ResourceManager("seed=3@hwloopsim")
    assert isinstance(rm.visalib, SimVisaLibrary)
    assert rm.visalib.lab.seed == 3
    inst = rm.open_resource("TCPIP::k2636b.sim::INSTR", read_termination="\n", write_termination="\n")
    assert "Model 2636B" in inst.query("*IDN?")
    inst.write("hwloop_pulse_v1(1.0, 1e-4)")  # not loaded yet: a TSP runtime error, as on the instrument
    assert float(inst.query("print(errorqueue.count)")) == 1.0
    assert "a nil value" in inst.query("print(errorqueue.next())")


def test_pyserial_url_handler_speaks_the_controller_protocol() -> None:
    forget_arrays()
    port = serial.serial_for_url("xbarsim://2x3?seed=1&protocol=1", timeout=0.1)  # a v1 firmware
    for command, reply in [
        (b"SIZE?\n", b"2,3\n"),
        (b"VER?\n", b"1.0.0\n"),
        (b"READ 0.1\n", b"ERR STATE set ILIM before pulsing or reading\n"),
        (b"ILIM 1e-4\n", b"OK\n"),
        (b"SEL 2 0\n", b"ERR RANGE row 2 outside 0..1\n"),
        (b"PULSEROW 1 1e-4 1,1\n", b"ERR SYNTAX PULSEROW needs 3 amplitudes, got 2\n"),
        (b"FROB\n", b"ERR SYNTAX unknown command 'FROB'\n"),
    ]:
        port.write(command)
        assert port.readline() == reply
    port.write(b"READROW 1 0.1\n")
    values = port.readline().decode().strip().split(",")
    assert len(values) == 1 + 3
    assert port.readline() == b""  # one reply per command, then nothing (no hang: the timeout returns)
    port.close()


def test_transport_logs_every_line_in_order() -> None:
    lab = SimLab(seed=0)
    transport = VisaTransport("TCPIP::k2450.sim::INSTR", pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab)))
    transport.open()
    transport.write(":SOUR:VOLT 0.1")
    transport.query(":SOUR:VOLT?")
    assert [(e.direction, e.text) for e in transport.log] == [
        (">", ":SOUR:VOLT 0.1"),
        (">", ":SOUR:VOLT?"),
        ("<", "1.000000e-01"),
    ]
    transport.reconnect()
    assert transport.query("*IDN?").startswith("KEITHLEY")
    transport.close()
