"""Crossbar protocol v3.1 block commands (READBLOCK, PULSEBLOCK): the documented grammar on the wire,
refusal before any byte is sent, the simulated link's timing against a hand computation (bytes at the
baud rate, the firmware's turnaround, the devices' own time), and the block results against the same
devices driven by the per-device commands (an independent path: PULSE and READ, one device at a time).

Frames are written here with a CRC computed bitwise, as ``docs/crossbar-controller-protocol.md`` gives it
for firmware (section "Version 3.1: block commands").
"""

from __future__ import annotations

import numpy as np
import pytest
from protocol_frames import framed as v3

from device_models.card import load_card
from drivers import CrossbarController, ProtocolError, SafetyError, SafetyLimits, open_controller
from drivers.errors import InstrumentStateError
from drivers.sim import protocol_xbarsim
from drivers.sim.clock import VirtualClock
from drivers.sim.lab import SimArray
from drivers.sim.protocol_xbarsim import forget_arrays, sim_firmware
from drivers.sim.xbar_firmware import LATENCY_S, XbarFirmware
from drivers.testing import ScriptedTransport

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1000
)
FAST = LIMITS.model_copy(update={"max_pulses_per_s": 1e6})  # per-device pulses back to back


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    yield
    forget_arrays()


OPENING = [
    (v3(1, "VER?"), v3(1, "3.1.0")),
    (v3(2, "SIZE?"), v3(2, "2,3")),
    (v3(3, "LIMITS?"), v3(3, "10,1e-06,1,1e-09,0.1,2.5,0.001,1e-12,16")),
    (v3(4, "ILIM 1e-06"), v3(4, "ECHO ILIM 1.000000e-06")),
    (v3(5, "GO 4"), v3(5, "OK")),
]


def test_block_commands_are_framed_echoed_and_confirmed_as_documented() -> None:
    t = ScriptedTransport(
        [
            *OPENING,
            (v3(6, "READBLOCK 0 2 0.2 1"), v3(6, "ECHO READBLOCK 0 2 2.000000e-01 1 ILIM 1.000000e-06")),
            (v3(7, "GO 6"), v3(7, "1e-12,0.012,0.013,1500,-3,0,2000,4000,1")),
            (
                v3(8, "PULSEBLOCK 0 2 0.001 1.5,0,-2,0,0,1.8 100,0,50,0,0,1000 1,0,2,0,0,1"),
                v3(
                    8,
                    "ECHO PULSEBLOCK 0 2 1.000000e-03 1.5,0,-2,0,0,1.8 100,0,50,0,0,1000 1,0,2,0,0,1 "
                    "ILIM 1.000000e-06",
                ),
            ),
            (v3(9, "GO 8"), v3(9, "OK")),
            (v3(10, "RST"), v3(10, "OK")),
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        assert (
            xbar.block_capable and xbar.hardware.read_lsb_a == 1e-12 and xbar.hardware.max_pulse_count == 16
        )
        xbar.set_compliance(1e-6)
        block = xbar.read_rows(0, 2, 0.2)
        np.testing.assert_allclose(block.t_s, [0.012, 0.013])
        np.testing.assert_allclose(block.i_a, [[1.5e-9, -3e-12, 0.0], [2e-9, 4e-9, 1e-12]])
        amps = np.array([[1.5, 0, -2], [0, 0, 1.8]])
        widths = np.array([[1e-4, 0, 5e-5], [0, 0, 1e-3]])
        assert xbar.pulse_block(0, amps, widths, np.array([[1, 0, 2], [0, 0, 1]])) == 1
    assert t.done()


def test_a_misparsed_pulse_block_is_never_confirmed() -> None:
    t = ScriptedTransport(
        [
            *OPENING,
            (
                v3(6, "PULSEBLOCK 0 1 0.001 1.5,0,0 100,0,0 1,0,0"),
                v3(6, "ECHO PULSEBLOCK 0 1 1.000000e-03 1.5,0,0 100,0,0 11,0,0 ILIM 1.000000e-06"),
            ),
            (v3(7, "RST"), v3(7, "OK")),  # no GO: the close's reset is the next line
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        xbar.set_compliance(1e-6)
        with pytest.raises(ProtocolError, match="nothing was executed"):
            xbar.pulse_block(0, np.array([[1.5, 0, 0]]), np.array([[1e-4, 0, 0]]), np.array([[1, 0, 0]]))
    assert t.done()


@pytest.mark.parametrize(
    ("amp", "width", "count", "why"),
    [
        (2.5, 1e-4, 1, "row 1 col 2: pulse amplitude 2.5 V exceeds the safety limit of ±2 V"),
        (-1.5, 2e-3, 1, "row 1 col 2: pulse width 0.002 s exceeds the safety limit of 0.001 s"),
        (1.5, 1e-4, 17, "row 1 col 2: count 17 outside 1..16"),
        (0.0, 1e-4, 1, "row 1 col 2: amplitude 0 \\(no pulse\\) needs count 0"),
        (1.5, 1e-4, 0, "row 1 col 2: count 0 outside 1..16"),
        (1.5, 0.0, 1, "row 1 col 2: pulse width must be positive"),
    ],
)
def test_a_block_entry_beyond_the_limits_is_refused_before_any_byte_is_sent(amp, width, count, why) -> None:
    with open_controller("xbarsim://2x3?seed=1", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        firmware = xbar.transport.port.firmware  # type: ignore[attr-defined]
        sent, drives = len(xbar.transport.log), len(firmware.scope)
        amps, widths, counts = np.full((2, 3), 1.5), np.full((2, 3), 1e-4), np.ones((2, 3), dtype=int)
        amps[1, 2], widths[1, 2], counts[1, 2] = amp, width, count
        with pytest.raises(SafetyError, match=f"^PULSEBLOCK entry {why}"):
            xbar.pulse_block(0, amps, widths, counts)
        assert len(xbar.transport.log) == sent  # nothing sent, not even the valid rows
        assert len(firmware.scope) == drives


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("PULSEBLOCK 0 1 0.001 1.5,0 100,0,0 1,0,0", "ERR SYNTAX PULSEBLOCK of 1 rows needs 3 amplitudes"),
        ("PULSEBLOCK 0 1 0.001 1.5,0,0 100,0,0 1.0,0,0", "ERR SYNTAX bad arguments to PULSEBLOCK"),
        ("PULSEBLOCK 0 1 0.001 1.5,0,0 100,0,0 +1,0,0", "ERR SYNTAX bad arguments to PULSEBLOCK"),
        ("PULSEBLOCK 0 1 0.001 1.5,0,0 0,0,0 1,0,0", "ERR RANGE row 0 col 0: width 0 ticks outside"),
        ("PULSEBLOCK 0 1 0.001 0,1.5,0 0,1000001,0 0,1,0", "ERR RANGE row 0 col 1: width 1000001 ticks"),
        ("PULSEBLOCK 0 1 0.001 0,0,1.5 0,0,1 0,0,17", "ERR RANGE row 0 col 2: count 17 outside [1, 16]"),
        ("PULSEBLOCK 0 1 0.001 0,0,0 0,5,0 0,1,0", "ERR SYNTAX row 0 col 1: amplitude 0 (no pulse)"),
        ("PULSEBLOCK 1 2 0.001 1.5,0,0 1,0,0 1,0,0", "ERR RANGE 2 rows from row 1 outside 0..1"),
        ("PULSEBLOCK 0 1 2 1.5,0,0 1,0,0 1,0,0", "ERR RANGE row period 2 s outside [0, 1] s"),
        ("PULSEBLOCK 0 1 0.001 11,0,0 1,0,0 1,0,0", "ERR RANGE 11 V outside +-10 V"),
        ("READBLOCK 0 0 0.2 1", "ERR RANGE 0 rows from row 0 outside 0..1"),
        ("READBLOCK 0 2 0.2 0", "ERR RANGE READBLOCK of 0 reads outside [1, 64]"),
        ("READBLOCK 0 2 0.2 65", "ERR RANGE READBLOCK of 65 reads outside [1, 64]"),
        ("READBLOCK 0 2 .2 1", "ERR SYNTAX bad arguments to READBLOCK"),
        ("READBLOCK 0 2 0.2 1.0", "ERR SYNTAX bad arguments to READBLOCK"),
        ("READBLOCK 0 2 0.2", "ERR SYNTAX bad arguments to READBLOCK"),
    ],
)
def test_the_firmware_parses_block_commands_by_the_documented_grammar(body, reply) -> None:
    fw = sim_firmware(2, 3, 2, protocol=3)
    fw.handle_line(v3(1, "ILIM 1e-06"))
    fw.handle_line(v3(2, "GO 1"))
    got = fw.handle_line(v3(3, body)).reply
    assert got is not None and got.startswith(f"@3 {reply}") and fw.armed is None


def test_a_read_block_longer_than_a_line_is_refused_and_the_driver_splits_it() -> None:
    fw = sim_firmware(40, 64, 2, protocol=3)
    fw.handle_line(v3(1, "ILIM 1e-06"))
    fw.handle_line(v3(2, "GO 1"))
    # 64 codes of up to 7 digits, a sign and a comma each: at most 6 rows fit the 4096-byte line
    assert fw.handle_line(v3(3, "READBLOCK 0 7 0.2 1")).reply == v3(
        3, "ERR RANGE READBLOCK of 7 rows: a reply carries at most 6 rows"
    )
    with open_controller("xbarsim://40x64?seed=2", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        block = xbar.read_rows(0, 40, 0.2)
        lines = [e.text for e in xbar.transport.log if e.direction == ">" and "READBLOCK" in e.text]
    assert len(lines) == 7 and block.i_a.shape == (40, 64)  # 6 + 6 + ... + 4 rows
    assert max(len(e) for e in lines) < 4096


def test_v2_and_v3_0_controllers_have_no_block_commands_and_say_so() -> None:
    fw = sim_firmware(2, 3, 3, protocol=2)
    assert fw.handle_line(v3(1, "READBLOCK 0 1 0.2 1")).reply == v3(
        1, "ERR SYNTAX unknown command 'READBLOCK'"
    )
    with open_controller("xbarsim://2x3?seed=3&protocol=2", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        assert not xbar.block_capable
        with pytest.raises(InstrumentStateError, match=r"block commands need v3\.1"):
            xbar.read_rows(0, 1, 0.2)
    v30 = [
        (v3(1, "VER?"), v3(1, "3.0.0")),
        (v3(2, "SIZE?"), v3(2, "2,3")),
        (v3(3, "LIMITS?"), v3(3, "10,1e-06,1,1e-09,0.1,2.5,0.001")),
        (v3(4, "RST"), v3(4, "OK")),
    ]
    t = ScriptedTransport(v30)
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        assert xbar.bias_capable and not xbar.block_capable
    assert t.done()


def _wire_time_s(xbar: CrossbarController, since: int, baud: int) -> float:
    """Hand computation: every line sent and received since log entry ``since``, its ``\\n`` included,
    at 10 bits a byte (8N1)."""
    return sum((len(e.text) + 1) * 10 / baud for e in list(xbar.transport.log)[since:])


@pytest.mark.parametrize("baud", [115_200, 12_000_000])
def test_a_block_frame_takes_its_bytes_time_plus_the_devices_time(baud: int) -> None:
    card = load_card(None)
    with open_controller("xbarsim://4x8?seed=3", LIMITS, baudrate=baud) as xbar:
        xbar.set_compliance(1e-6)
        clock, since = xbar.clock, len(xbar.transport.log)
        t0 = clock.now_s()
        xbar.read_rows(0, 4, 0.2)  # one frame: READBLOCK, ECHO, GO, reply
        want = _wire_time_s(xbar, since, baud) + 2 * LATENCY_S + 4 * card.read.read_time_s
        assert clock.now_s() - t0 == pytest.approx(want, rel=1e-9)
        since, t0 = len(xbar.transport.log), clock.now_s()
        xbar.read_rows(1, 3, 0.2, reads=5)  # 3 rows, each read 5 times back to back on the controller
        want = _wire_time_s(xbar, since, baud) + 2 * LATENCY_S + 15 * card.read.read_time_s
        assert clock.now_s() - t0 == pytest.approx(want, rel=1e-9)

        amps, widths, counts = np.zeros((4, 8)), np.zeros((4, 8)), np.zeros((4, 8), dtype=int)
        amps[0, 1], widths[0, 1], counts[0, 1] = 1.8, 100e-6, 2  # row 0: 2 x 100 us, 1 us apart
        amps[2, 3], widths[2, 3], counts[2, 3] = -1.5, 30e-6, 1  # row 2: 3 x 50 us outlast 30 us
        amps[2, 5], widths[2, 5], counts[2, 5] = 1.6, 50e-6, 3
        since, t0 = len(xbar.transport.log), clock.now_s()
        xbar.pulse_block(0, amps, widths, counts)
        # row 2 starts one pulse period (1 / 1000 pulses/s) after row 0; it lasts 3 x 50 + 2 x 1 us
        devices_s = 1e-3 + (3 * 50e-6 + 2 * 1e-6)
        want = _wire_time_s(xbar, since, baud) + 2 * LATENCY_S + devices_s
        assert clock.now_s() - t0 == pytest.approx(want, rel=1e-9)
        scope = [d for d in xbar.transport.port.firmware.scope if d.what == "pulse"]  # type: ignore[attr-defined]
        assert [round(d.duration_s * 1e6) for d in scope] == [201, 152]
        assert scope[1].t_s - scope[0].t_s == pytest.approx(1e-3, rel=1e-9)


def _quiet_controller(seed: int) -> CrossbarController:
    """A fresh 3 x 4 simulated controller of a card without read or pulse-to-pulse noise and with decay
    times of ~10^6 s: two sessions on it see the same devices whatever order they draw numbers in."""
    card = load_card(None)
    card = card.model_copy(
        update={
            "decay": card.decay.model_copy(update={"tau_s": 1e6, "tau_slow_s": 1e7}),
            "variability": card.variability.model_copy(update={"c2c_pulse_rel": 0.0, "read_noise_rel": 0.0}),
        }
    )
    forget_arrays()
    array = SimArray(3, 4, seed, card=card)
    protocol_xbarsim._ARRAYS[(3, 4, seed, "memristive")] = array
    protocol_xbarsim._FIRMWARES[(3, 4, seed, "memristive")] = XbarFirmware(array, protocol=3)
    xbar = open_controller(f"xbarsim://3x4?seed={seed}", FAST)
    xbar.set_compliance(1e-6)
    return xbar


def _fill(xbar: CrossbarController) -> None:
    """Every device potentiated part-way (so that depressions show too), the same in both sessions."""
    for r in range(3):
        xbar.pulse_row(r, [1.9] * 4, 1e-3)


def test_block_pulses_and_reads_equal_the_per_device_commands() -> None:
    amps = np.array([[1.8, 0.0, -1.6, 1.4], [0.0, 0.0, 0.0, 0.0], [-2.0, 1.5, 0.0, 1.9]])
    widths = np.array([[1e-4, 0, 3e-4, 5e-5], [0, 0, 0, 0], [2e-4, 1e-3, 0, 7e-5]])
    counts = np.array([[1, 0, 2, 3], [0, 0, 0, 0], [1, 4, 0, 1]])

    with _quiet_controller(5) as xbar:  # the independent path: one device per command
        _fill(xbar)
        before = np.array([[xbar.read_device(r, c, 0.2).i_a for c in range(4)] for r in range(3)])
        for r, c in zip(*np.nonzero(counts), strict=True):
            for _ in range(counts[r, c]):
                xbar.pulse_device(int(r), int(c), float(amps[r, c]), float(widths[r, c]))
        per_device = np.array([[xbar.read_device(r, c, 0.2).i_a for c in range(4)] for r in range(3)])
        per_row = np.array([xbar.read_row(r, 0.2).i_a for r in range(3)])

    with _quiet_controller(5) as xbar:  # the same devices, fresh: the block commands
        _fill(xbar)
        assert xbar.pulse_block(0, amps, widths, counts) == 1
        block = xbar.read_rows(0, 3, 0.2).i_a

    moved = np.abs(per_device - before) > 1e-11  # > 10 ADC codes: the pulses wrote these devices
    assert np.array_equal(moved, counts > 0)
    np.testing.assert_allclose(block, per_device, rtol=0, atol=1.01e-12)  # within one ADC code
    np.testing.assert_allclose(per_row, per_device, rtol=1e-6)


def test_reads_averaged_on_the_controller_shrink_the_read_noise_by_sqrt_n() -> None:
    """At rest (no short-term state), 100 block reads of 32 devices: the spread of 16-read averages is
    that of single reads / sqrt(16), within the sampling error of 3,200 samples (~3 %)."""
    with open_controller("xbarsim://4x8?seed=4", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        single = np.array([xbar.read_rows(0, 4, 0.2).i_a for _ in range(100)])
        averaged = np.array([xbar.read_rows(0, 4, 0.2, reads=16).i_a for _ in range(100)])
    np.testing.assert_allclose(averaged.mean(0), single.mean(0), rtol=0.02)  # the same devices
    ratio = single.std(0).mean() / averaged.std(0).mean()
    assert ratio == pytest.approx(4.0, rel=0.12)
