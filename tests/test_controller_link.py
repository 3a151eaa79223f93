"""The crossbar controller on a bench: corrupted bytes, late replies, partial lines left by a crashed host,
settings that persist across sessions, strict numbers and the controller's own hardware ranges.

Each scenario runs against the stricter simulated controller, as a v2 firmware and as a legacy v1
firmware (modelled as C firmwares are written: strtod parsing, partial lines kept). The oscilloscope on
the simulated lines (``XbarFirmware.scope``) is the ground truth of what reached the devices.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import (
    CrossbarController,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
    SafetyError,
    SafetyLimits,
    open_controller,
)
from drivers.sim.clock import VirtualClock
from drivers.sim.protocol_xbarsim import forget_arrays, sim_array, sim_firmware
from drivers.testing import ScriptedTransport
from drivers.xbar_protocol import frame

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10
)


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    yield
    forget_arrays()


def pulses_applied(rows: int, cols: int, seed: int) -> list:
    """Every pulse that reached the simulated array (the scope on its lines)."""
    return [d for d in sim_firmware(rows, cols, seed).scope if d.what == "pulse"]


@pytest.mark.parametrize("protocol", [1, 2])
def test_a_corrupted_byte_in_a_pulse_line_never_fires_a_pulse(protocol) -> None:
    """'PULSE 1.5 0.0001' losing its last '.' on the wire is a 1 s pulse to a v1 firmware."""
    url = f"xbarsim://2x2?seed=21&protocol={protocol}&corrupt_on=PULSE"
    with open_controller(url, LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        with pytest.raises(InstrumentError):  # v2: the CRC catches it; v1: refused without the opt-in
            xbar.pulse_device(0, 1, 1.5, 1e-4)
    assert pulses_applied(2, 2, 21) == []


@pytest.mark.parametrize("protocol", [1, 2])
def test_a_late_reply_is_never_taken_as_the_next_commands_answer(protocol) -> None:
    url = f"xbarsim://3x2?seed=22&protocol={protocol}&late_on=READROW"
    with open_controller(url, LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        with pytest.raises(InstrumentTimeout):
            xbar.read_row(0, 0.1)  # its reply comes only after the next command has been sent
        got = xbar.read_row(2, 0.1).i_a
    g = sim_array(3, 2, 22).devices.conductance_siemens()  # ground truth: I = G V, read noise aside
    assert np.linalg.norm(got - 0.1 * g[2]) < np.linalg.norm(got - 0.1 * g[0])
    np.testing.assert_allclose(got, 0.1 * g[2], rtol=0.2)
    assert xbar.stale_replies == 1


@pytest.mark.parametrize(
    ("protocol", "partial"), [(1, b"PULSE 1.5 1"), (2, b"@9 PULSE 0 1 1.5 0.00")], ids=["v1", "v2"]
)
def test_a_partial_line_left_by_a_crashed_host_never_merges_with_the_next_command(protocol, partial) -> None:
    url = f"xbarsim://2x2?seed=23&protocol={protocol}"
    xbar = open_controller(url, LIMITS)
    xbar.set_compliance(1e-4)
    xbar.read_device(0, 1, 0.1)  # on v1 this leaves (0, 1) selected: settings persist across sessions
    xbar.transport.port.write(partial)  # type: ignore[attr-defined]  # the host dies mid-line ...
    xbar.transport.close()  # ... without resetting anything
    assert sim_firmware(2, 2, 23, protocol).ilim_a == pytest.approx(1e-4)  # still set on the controller
    with open_controller(url, LIMITS) as xbar:  # the next session
        xbar.set_compliance(1e-4)
        xbar.read_row(1, 0.1)
    assert pulses_applied(2, 2, 23) == []


def test_settings_persist_across_sessions_until_reset() -> None:
    url = "xbarsim://2x2?seed=24"
    xbar = open_controller(url, LIMITS)
    xbar.set_compliance(2e-4)
    xbar.transport.close()  # no RST: a crashed host
    assert sim_firmware(2, 2, 24).ilim_a == pytest.approx(2e-4)
    with open_controller(url, LIMITS) as xbar:
        assert xbar.compliance_set_a is None  # the driver never trusts a setting it did not make
        with pytest.raises(InstrumentError, match="set the compliance"):
            xbar.read_row(0, 0.1)
    assert sim_firmware(2, 2, 24).ilim_a is None  # closing the session reset the controller


def test_requests_beyond_the_controllers_hardware_range_are_refused_before_sending() -> None:
    limits = SafetyLimits(max_abs_voltage_v=20, max_pulse_width_s=5, max_compliance_a=1, max_pulses_per_s=10)
    with open_controller("xbarsim://2x2?seed=25", limits) as xbar:
        xbar.set_compliance(1e-4)
        sent = len(xbar.transport.log)
        for call, message in [
            (lambda: xbar.pulse_device(0, 0, 1.5, 5e-7), "pulse width 5e-07 s is outside the controller's"),
            (lambda: xbar.pulse_device(0, 0, 1.5, 2.0), "pulse width 2 s is outside the controller's"),
            (lambda: xbar.pulse_row(0, [12.0, 0.0], 1e-4), "12 V is beyond the controller's hardware range"),
            (lambda: xbar.read_row(0, 15.0), "15 V is beyond the controller's hardware range"),
            (lambda: xbar.set_compliance(0.5), "compliance 0.5 A is outside the controller's"),
        ]:
            with pytest.raises(SafetyError, match=re.escape(message)):
                call()
        assert len(xbar.transport.log) == sent
    assert pulses_applied(2, 2, 25) == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amplitude=st.floats(-4, 4), width=st.floats(1e-7, 3e-3), read_v=st.floats(-3, 3))
def test_nothing_beyond_the_limits_ever_reaches_the_array(amplitude, width, read_v) -> None:
    """Whatever is asked, every level and duration on the simulated lines stays within the limits."""
    forget_arrays()
    limits = SafetyLimits(
        max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e6
    )
    with open_controller("xbarsim://2x2?seed=40", limits) as xbar:
        xbar.set_compliance(1e-4)
        for call in (
            lambda: xbar.pulse_device(0, 1, amplitude, width),
            lambda: xbar.pulse_row(1, [amplitude, -amplitude], width),
            lambda: xbar.read_row(0, read_v),
        ):
            with contextlib.suppress(SafetyError):
                call()
    drives = sim_firmware(2, 2, 40).scope
    assert all(d.max_abs_v <= 2.0 for d in drives)
    assert all(d.duration_s <= 1e-3 for d in drives if d.what == "pulse")


V2_OPEN = [
    (frame(1, "VER?"), frame(1, "2.0.0")),
    (frame(2, "SIZE?"), frame(2, "2,2")),
    (frame(3, "LIMITS?"), frame(3, "10,1e-06,1,1e-09,0.1")),
    (frame(4, "ILIM 0.0001"), frame(4, "ECHO ILIM 1.000000e-04")),
    (frame(5, "GO 4"), frame(5, "OK")),
]


@pytest.mark.parametrize(
    "echo",
    [
        "ECHO PULSE 0 1 1.500000e+01 1.000000e-04 ILIM 1.000000e-04",  # misparsed amplitude: 15 V
        "ECHO PULSE 0 1 1.500000e+00 1.000000e+00 ILIM 1.000000e-04",  # misparsed width: 1 s
        "ECHO PULSE 1 1 1.500000e+00 1.000000e-04 ILIM 1.000000e-04",  # another device
        "ECHO PULSE 0 1 1.500000e+00 1.000000e-04 ILIM 1.000000e-03",  # another current limit in force
        "ECHO PULSE 0 1 nan 1.000000e-04 ILIM 1.000000e-04",  # not a number
        "ECHO PULSE 0 1 1.500000e+00 1.000000e-04",  # ILIM missing
    ],
)
def test_an_echo_that_differs_from_what_was_meant_is_never_confirmed(echo) -> None:
    t = ScriptedTransport([*V2_OPEN, (frame(6, "PULSE 0 1 1.5 0.0001"), frame(6, echo))])
    xbar = CrossbarController(t, LIMITS, VirtualClock())
    xbar.set_compliance(1e-4)
    with pytest.raises(ProtocolError, match="nothing was executed"):
        xbar.pulse_device(0, 1, 1.5, 1e-4)
    assert t.done() and not any(" GO 6*" in line for line in t.sent)


@pytest.mark.parametrize("reply", ["0.5,nan", "0.5,inf", "0.5,1_0", "0.5,1.5e-09junk", "0.5, 1e-9"])
def test_reply_numbers_outside_the_grammar_are_refused_not_returned(reply) -> None:
    t = ScriptedTransport(
        [
            (frame(1, "VER?"), "ERR SYNTAX unknown command '@1'"),
            ("VER?", "1.0.0"),
            ("*IDN?", "ACME,XBAR,7,1.0.0"),
            ("SIZE?", "2,2"),
            ("ILIM 0.0001", "OK"),
            ("SEL 0 1", "OK"),
            ("READ 0.1", reply),
        ]
    )
    xbar = CrossbarController(t, LIMITS, VirtualClock())
    xbar.set_compliance(1e-4)
    with pytest.raises(ProtocolError, match="cannot parse numbers"):
        xbar.read_device(0, 1, 0.1)


# -- the v2 firmware itself, byte by byte ----------------------------------------------------------------


def exchange(port, data: bytes) -> list[bytes]:
    port.write(data)
    lines = []
    while line := port.readline():
        lines.append(line)
    return lines


def test_v2_firmware_refuses_numbers_outside_the_grammar_and_arms_nothing() -> None:
    port = serial.serial_for_url("xbarsim://2x2?seed=26", timeout=0.01)
    exchange(port, (frame(1, "ILIM 1e-4") + "\n" + frame(2, "GO 1") + "\n").encode())
    for k, bad in enumerate(
        ["inf", "nan", "1.5x", "00001", "+1.5", ".5", "1e", "1.", "0x10", "1,5"], start=3
    ):
        (reply,) = exchange(port, (frame(k, f"PULSE 0 1 {bad} 0.0001") + "\n").encode())
        assert reply.decode().startswith(f"@{k} ERR SYNTAX"), (bad, reply)
        (go,) = exchange(port, (frame(100 + k, f"GO {k}") + "\n").encode())
        assert b"ERR STATE nothing armed" in go
    assert pulses_applied(2, 2, 26) == []


def test_v2_firmware_go_must_follow_its_echo_at_once() -> None:
    port = serial.serial_for_url("xbarsim://2x2?seed=27", timeout=0.01)
    exchange(port, (frame(1, "ILIM 1e-4") + "\n" + frame(2, "GO 1") + "\n").encode())
    (echo,) = exchange(port, (frame(3, "PULSE 0 1 1.5 0.0001") + "\n").encode())
    assert echo.decode().startswith("@3 ECHO PULSE 0 1 1.500000e+00 1.000000e-04 ILIM 1.000000e-04*")
    exchange(port, (frame(4, "SIZE?") + "\n").encode())  # any other frame disarms
    assert b"nothing armed" in exchange(port, (frame(5, "GO 3") + "\n").encode())[0]
    exchange(port, (frame(10, "PULSE 0 1 1.5 0.0001") + "\n").encode())
    assert exchange(port, b"\n") == []  # even an empty line disarms
    assert b"nothing armed" in exchange(port, (frame(11, "GO 10") + "\n").encode())[0]
    exchange(port, (frame(6, "PULSE 0 1 1.5 0.0001") + "\n").encode())
    sim_array(2, 2, 27).clock.sleep(1.5)  # longer than the arm timeout
    assert b"expired" in exchange(port, (frame(7, "GO 6") + "\n").encode())[0]
    assert pulses_applied(2, 2, 27) == []
    exchange(port, (frame(8, "PULSE 0 1 1.5 0.0001") + "\n").encode())
    assert exchange(port, (frame(9, "GO 8") + "\n").encode()) == [(frame(9, "OK") + "\n").encode()]
    assert [(p.max_abs_v, p.duration_s) for p in pulses_applied(2, 2, 27)] == [(1.5, 1e-4)]


def test_v2_firmware_resync_rules() -> None:
    port = serial.serial_for_url("xbarsim://2x2?seed=28", timeout=0.01)
    size = (frame(1, "SIZE?") + "\n").encode()
    # noise before a frame on the same line: the frame starts at the last '@'
    assert exchange(port, b"\x00\xffjunk@@" + size) == [(frame(1, "2,2") + "\n").encode()]
    # a damaged frame is answered under sequence number 0, and nothing else happens
    (reply,) = exchange(port, (frame(2, "SIZE?")[:-1] + "0\n").encode())
    assert reply.startswith(b"@0 ERR FRAME CRC mismatch")
    # a partial line followed by more than the inter-byte timeout of silence is dropped
    port.write(b"SIZE")
    sim_array(2, 2, 28).clock.sleep(0.06)
    assert exchange(port, b"\n") == []  # only an empty line remained: no reply
    port.write(b"SIZE")  # without the pause the line is kept, and refused as unframed
    assert exchange(port, b"\n")[0].startswith(b"ERR VERSION")
    # an overlong line is dropped whole, then the link works again
    (reply,) = exchange(port, b"@3 " + b"9" * 5000 + b"\n")
    assert reply.startswith(b"@0 ERR FRAME line longer than 4096 bytes")
    assert exchange(port, size) == [(frame(1, "2,2") + "\n").encode()]


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a POSIX pseudo-terminal")
def test_a_serial_port_is_opened_exclusively() -> None:
    """Two host processes on one controller would interleave lines and settings: the second open fails."""
    import os

    from drivers.errors import ConnectionLost
    from drivers.transport import SerialTransport

    master, slave = os.openpty()
    path = os.ttyname(slave)
    first = SerialTransport(path)
    first.open()
    try:
        with pytest.raises(ConnectionLost, match="cannot open serial port"):
            SerialTransport(path).open()
    finally:
        first.close()
        os.close(master)
        os.close(slave)
