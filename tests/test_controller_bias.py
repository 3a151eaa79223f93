"""Crossbar protocol v3 line biases: the documented grammar on the wire, refusal before sending, and the
simulated firmware's decay and bias power under a line bias against the device law written out here.

The grammar and frames are checked against the bytes of ``docs/crossbar-controller-protocol.md``
(section "Version 3") with a CRC computed bitwise, as the document gives it for firmware; the decay
against tau(V) = tau_ref exp(-(V - V_ref) / V_e) (the card's law) and the energy against V^2 G t.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from protocol_frames import framed as v3

from drivers import (
    CrossbarController,
    InstrumentError,
    ProtocolError,
    SafetyError,
    SafetyLimits,
    open_controller,
)
from drivers.errors import InstrumentStateError
from drivers.sim.clock import VirtualClock
from drivers.sim.protocol_xbarsim import forget_arrays, sim_array, sim_firmware
from drivers.testing import ScriptedTransport

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1000
)
THRESHOLD_V = 1.3  # the shipped card's write threshold


@pytest.fixture(autouse=True)
def fresh_lab():
    forget_arrays()
    yield
    forget_arrays()


OPENING = [
    (v3(1, "VER?"), v3(1, "3.0.0")),
    (v3(2, "SIZE?"), v3(2, "2,3")),
    (v3(3, "LIMITS?"), v3(3, "10,1e-06,1,1e-09,0.1,2.5,0.001")),
]


def test_bias_command_is_framed_echoed_and_confirmed_as_documented() -> None:
    t = ScriptedTransport(
        [
            *OPENING,
            (
                v3(4, "BIAS 0.6,0.3 0,-0.2,0.1"),
                v3(4, "ECHO BIAS 6.000000e-01,3.000000e-01 0.000000e+00,-2.000000e-01,1.000000e-01"),
            ),
            (v3(5, "GO 4"), v3(5, "OK")),
            (v3(6, "BIAS?"), v3(6, "6.000000e-01,3.000000e-01,0.000000e+00,-2.000000e-01,1.000000e-01")),
            (v3(7, "RST"), v3(7, "OK")),
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        assert xbar.protocol == 3 and xbar.bias_capable
        assert (xbar.hardware.max_abs_bias_v, xbar.hardware.bias_lsb_v) == (2.5, 0.001)
        rows, cols = xbar.set_line_bias([0.6, 0.3], [0.0, -0.2, 0.1], write_threshold_v=THRESHOLD_V)
        np.testing.assert_allclose(rows, [0.6, 0.3])
        np.testing.assert_allclose(cols, [0.0, -0.2, 0.1])
        held_rows, held_cols = xbar.line_bias()
        np.testing.assert_allclose(np.concatenate([held_rows, held_cols]), [0.6, 0.3, 0.0, -0.2, 0.1])
    assert t.done()


def test_bias_is_put_on_the_dac_grid_before_it_is_sent() -> None:
    t = ScriptedTransport(
        [
            *OPENING,
            (
                v3(4, "BIAS 0.601,0 0,0,0"),
                v3(4, "ECHO BIAS 6.010000e-01,0.000000e+00 0.000000e+00,0.000000e+00,0.000000e+00"),
            ),
            (v3(5, "GO 4"), v3(5, "OK")),
            (v3(6, "RST"), v3(6, "OK")),
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        xbar.set_line_bias([0.60123, 0.0002], [0.0, 0.0, 0.0], write_threshold_v=THRESHOLD_V)  # 1 mV step
    assert t.done()


def test_a_misparsed_bias_is_never_confirmed() -> None:
    t = ScriptedTransport(
        [
            *OPENING,
            (
                v3(4, "BIAS 0.6,0.3 0,-0.2,0.1"),
                v3(4, "ECHO BIAS 6.000000e+00,3.000000e-01 0.000000e+00,-2.000000e-01,1.000000e-01"),
            ),
            (v3(5, "RST"), v3(5, "OK")),  # no GO: the close's reset is the next line
        ]
    )
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar, pytest.raises(ProtocolError):
        xbar.set_line_bias([0.6, 0.3], [0.0, -0.2, 0.1], write_threshold_v=THRESHOLD_V)
    assert t.done()


@pytest.mark.parametrize(
    ("rows", "cols", "why"),
    [
        ([2.1, 0.0], [0.0, 0.0, 0.0], "safety limit"),  # a line beyond the user's 2 V
        ([1.0, 0.0], [0.0, -1.1, 0.0], "safety limit"),  # each line fine, device (0, 1) at 2.1 V
        ([0.7, 0.0], [0.0, -0.6, 0.0], "write threshold"),  # device (0, 1) at 1.3 V: it would be written
        ([0.0, 0.0], [0.0, 1.3, 0.0], "write threshold"),  # -1.3 V counts too
        ([float("nan"), 0.0], [0.0, 0.0, 0.0], "finite"),
    ],
)
def test_a_bias_beyond_the_limits_or_reaching_the_write_threshold_is_refused_before_sending(
    rows, cols, why
) -> None:
    t = ScriptedTransport([*OPENING, (v3(4, "RST"), v3(4, "OK"))])  # anything else sent fails the script
    with CrossbarController(t, LIMITS, VirtualClock()) as xbar:
        with pytest.raises(SafetyError, match=why):
            xbar.set_line_bias(rows, cols, write_threshold_v=THRESHOLD_V)
        np.testing.assert_array_equal(xbar.row_bias_v, 0.0)
    assert t.done()


def test_a_bias_beyond_the_controllers_range_is_refused_before_sending() -> None:
    loose = SafetyLimits(
        max_abs_voltage_v=5.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10
    )
    t = ScriptedTransport([*OPENING, (v3(4, "RST"), v3(4, "OK"))])
    with CrossbarController(t, loose, VirtualClock()) as xbar, pytest.raises(SafetyError, match="bias range"):
        xbar.set_line_bias([3.0, 3.0], [2.0, 2.0, 2.0], write_threshold_v=THRESHOLD_V)
    assert t.done()


def test_a_v2_controller_has_no_bias_and_says_so() -> None:
    with open_controller("xbarsim://2x3?seed=1&protocol=2", LIMITS) as xbar:
        assert xbar.protocol == 2 and not xbar.bias_capable
        with pytest.raises(InstrumentStateError, match="no line biases"):
            xbar.set_line_bias([0.5, 0.5], [0.0, 0.0, 0.0], write_threshold_v=THRESHOLD_V)
        np.testing.assert_array_equal(np.concatenate(xbar.line_bias()), 0.0)


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("BIAS 0.5,0.5 0,0", "ERR SYNTAX"),  # 2 columns for a 3-column array
        ("BIAS 0.5,0.5,0.5 0,0,0", "ERR SYNTAX"),  # 3 rows for 2
        ("BIAS 0.5,inf 0,0,0", "ERR SYNTAX"),  # outside the number grammar
        ("BIAS .5,0 0,0,0", "ERR SYNTAX"),
        ("BIAS 0.5,0 0,0", "ERR SYNTAX"),
        ("BIAS 3,0 0,0,0", "ERR RANGE"),  # beyond the DACs' 2.5 V
        ("BIAS 0.5,0 0,0,0", "ECHO BIAS 5.000000e-01,0.000000e+00 0.000000e+00,0.000000e+00,0.000000e+00"),
    ],
)
def test_the_firmware_parses_bias_by_the_documented_grammar(body, reply) -> None:
    fw = sim_firmware(2, 3, 2, protocol=3)
    got = fw.handle_line(v3(1, body)).reply
    assert got is not None and got.startswith(v3(1, reply)[: len(f"@1 {reply}")])
    assert fw.lines.row_v.tolist() == [0.0, 0.0]  # nothing applied before GO


def test_a_v2_firmware_does_not_know_bias_and_limits_has_five_ranges() -> None:
    fw = sim_firmware(2, 3, 3, protocol=2)
    assert fw.handle_line(v3(1, "BIAS 0.5,0 0,0,0")).reply == v3(1, "ERR SYNTAX unknown command 'BIAS'")
    assert fw.handle_line(v3(2, "LIMITS?")).reply == v3(2, "10,1e-06,1,1e-09,0.1")
    fw3 = sim_firmware(2, 3, 4)
    limits3 = "10,1e-06,1,1e-09,0.1,2.5,1.220703e-03,1e-12,16"  # v3.1: read ADC step, most pulses
    assert fw3.handle_line(v3(1, "LIMITS?")).reply == v3(1, limits3)


def _tau_law(tau_ref_s, v, card) -> np.ndarray:
    """The card's decay law written out: tau(V) = tau_ref exp(-(V - V_ref) / V_e), V in the bias window."""
    b = card.bias
    v = np.clip(v, b.bias_min_v, b.bias_max_v)
    return tau_ref_s * np.exp(-(v - b.bias_ref_v) / b.bias_efold_v)


def test_the_simulated_array_decays_at_row_minus_column_voltage_and_counts_bias_power() -> None:
    rows_v, cols_v = np.array([0.9, 0.4]), np.array([0.0, 0.2, -0.2, 0.3])
    with open_controller("xbarsim://2x4?seed=5", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        held_r, held_c = xbar.set_line_bias(rows_v, cols_v, write_threshold_v=THRESHOLD_V)
        for r in range(2):
            xbar.pulse_row(r, [1.5] * 4, 1e-4)  # a volatile state on every device
        fw, array = sim_firmware(2, 4, 5), sim_array(2, 4, 5)
        fw.lines.settle()
        g0, g_lt = array.devices.g_fast_siemens.copy(), array.devices.g_lt_siemens.copy()
        energy0 = fw.lines.bias_energy_j
        wait_s = 0.05
        xbar.wait(wait_s)
        fw.lines.settle()
        g1 = array.devices.g_fast_siemens.copy()
        v = held_r[:, None] - held_c[None, :]
        tau = _tau_law(array.devices.tau_ref_s, v, array.card)
        usable = ~(array.devices.stuck_on | array.devices.stuck_off) & (g0 > 0)
        assert usable.sum() >= 6
        np.testing.assert_allclose(g1[usable], g0[usable] * np.exp(-wait_s / tau[usable]), rtol=1e-6)
        # device (0, 2) idles at 1.1 V, (1, 3) at 0.1 V: decay times e^(1 V / V_e) ~ 55x apart
        assert v[0, 2] - v[1, 3] == pytest.approx(1.0, abs=2e-3)
        ratio = (tau[1, 3] / array.devices.tau_ref_s[1, 3]) / (tau[0, 2] / array.devices.tau_ref_s[0, 2])
        assert ratio == pytest.approx(math.exp((v[0, 2] - v[1, 3]) / array.card.bias.bias_efold_v), rel=1e-9)
        # bias power: the integral of V^2 G over the wait, G = g_lt + g_st(t) (exp decay integrated exactly)
        g_st_integral = g0 * tau * (1 - np.exp(-wait_s / tau))
        expected_j = float(np.sum(v**2 * (g_lt * wait_s + g_st_integral)))
        assert fw.lines.bias_energy_j - energy0 == pytest.approx(expected_j, rel=1e-3)
        # a read under the bias measures the device at read_v alone (not bias + read_v)
        got = xbar.read_row(0, 0.2).i_a
        np.testing.assert_allclose(got, 0.2 * array.devices.conductance_siemens()[0], rtol=0.1)
    assert fw.lines.row_v.tolist() == [0.0, 0.0]  # closing the session reset the lines to 0 V


def test_a_row_left_unbiased_decays_at_zero_volts() -> None:
    with open_controller("xbarsim://1x2?seed=6", LIMITS) as xbar:
        xbar.set_compliance(1e-6)
        xbar.pulse_row(0, [1.5, 1.5], 1e-4)
        fw, array = sim_firmware(1, 2, 6), sim_array(1, 2, 6)
        fw.lines.settle()
        g0 = array.devices.g_fast_siemens.copy()
        xbar.wait(0.5)
        fw.lines.settle()
        tau0 = _tau_law(array.devices.tau_ref_s, np.zeros((1, 2)), array.card)
        np.testing.assert_allclose(array.devices.g_fast_siemens, g0 * np.exp(-0.5 / tau0), rtol=1e-6)
        assert fw.lines.bias_energy_j == 0.0


def test_the_firmware_refuses_to_act_on_instrument_errors_cleanly() -> None:
    with open_controller("xbarsim://2x3?seed=7", LIMITS) as xbar, pytest.raises(InstrumentError):
        xbar._ask("BIAS 0.5 0,0,0")  # malformed on purpose, bypassing the driver's checks
