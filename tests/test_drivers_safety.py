"""Safety: every refusal happens before a single command reaches the transport, outputs go to 0 V / off
on any error, and no command ever carries a value beyond the user's limits."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import (
    CrossbarController,
    InstrumentStateError,
    Keithley2450,
    Keithley2600B,
    KeysightB2900,
    SafetyError,
    SafetyLimits,
    open_instrument,
)
from drivers.sim import SimLab
from drivers.sim.clock import VirtualClock
from drivers.testing import ScriptedTransport
from hwloop.errors import HwloopError

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10
)
SMUS = [Keithley2450, Keithley2600B, KeysightB2900]


def silent_smu(driver_cls, compliance=True):
    """A driver on a transport with an empty script: any command at all fails the test."""
    transport = ScriptedTransport([])
    smu = driver_cls(transport, LIMITS, VirtualClock())
    if compliance:
        smu.compliance_set_a = 1e-4
    return smu, transport


@pytest.mark.parametrize("driver_cls", SMUS)
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.pulse(2.5, 1e-4), "pulse amplitude 2.5 V exceeds"),
        (lambda s: s.pulse(-2.01, 1e-4), "exceeds the safety limit of ±2 V"),
        (lambda s: s.pulse(1.0, 2e-3), "pulse width 0.002 s exceeds"),
        (lambda s: s.pulse(1.0, 0.0), "pulse width must be positive"),
        (lambda s: s.pulse(float("nan"), 1e-4), "must be finite"),
        (lambda s: s.set_compliance(5e-3), "compliance 0.005 A exceeds"),
        (lambda s: s.set_compliance(-1e-6), "compliance must be positive"),
        (lambda s: s.source_voltage(3.0), "source level 3 V exceeds"),
        (lambda s: s.read_train(2.5, 1e-3, 10), "read voltage 2.5 V exceeds"),
        (lambda s: s.read_train(0.1, -1e-3, 10), "read interval must be a positive"),
        (lambda s: s.read_train(0.1, 1e-3, 0), "read count must be an integer"),
        (lambda s: setattr(s, "level_v", 2.2), "source level 2.2 V exceeds"),
        (lambda s: setattr(s, "nplc", 1e-5), "NPLC 1e-05 is outside the"),
        (lambda s: setattr(s, "nplc", 1e3), "NPLC 1000 is outside the"),
        (lambda s: s.set_compliance(1e-13), "compliance 1e-13 A is outside the"),
    ],
)
def test_out_of_range_requests_send_nothing(driver_cls, call, message) -> None:
    smu, transport = silent_smu(driver_cls)
    with pytest.raises(SafetyError, match=re.escape(message)):
        call(smu)
    assert transport.sent == []


@pytest.mark.parametrize("driver_cls", SMUS)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: setattr(s, "output_enabled", True),
        lambda s: s.source_voltage(0.5),
        lambda s: s.pulse(1.0, 1e-4),
        lambda s: s.read_train(0.1, 1e-3, 5),
    ],
)
def test_no_output_before_compliance(driver_cls, call) -> None:
    smu, transport = silent_smu(driver_cls, compliance=False)
    with pytest.raises(InstrumentStateError, match="set the compliance"):
        call(smu)
    assert transport.sent == []


@pytest.mark.parametrize(
    ("driver_cls", "width_s", "message"),
    [
        (KeysightB2900, 20e-6, "pulse width 2e-05 s is below the Keysight B2900's minimum of 5e-05 s"),
        (Keithley2600B, 50e-6, "pulse width 5e-05 s is below the Keithley 2600B's minimum of 0.0001 s"),
    ],
)
def test_widths_the_instrument_cannot_make_are_refused_before_sending(driver_cls, width_s, message) -> None:
    """Within the user's limits (<= 1 ms) but below the instrument's minimum programmable pulse width."""
    smu, transport = silent_smu(driver_cls)
    with pytest.raises(SafetyError, match=re.escape(message)):
        smu.pulse(1.0, width_s)
    assert transport.sent == []


def test_limits_are_required_to_open_for_sourcing() -> None:
    with pytest.raises(SafetyError, match="requires SafetyLimits"):
        Keithley2450(ScriptedTransport([]), None, VirtualClock())  # type: ignore[arg-type]
    with pytest.raises(HwloopError, match="requires SafetyLimits"):
        open_instrument("TCPIP::k2450.sim::INSTR", {"max_abs_voltage_v": 1})  # type: ignore[arg-type]


def test_pulse_rate_limit_refuses_too_soon_and_allows_after_waiting() -> None:
    lab = SimLab(seed=2)
    with open_instrument("TCPIP::k2450.sim::INSTR", LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.0, 1e-4)
        sent_before = len(smu.transport.log)
        with pytest.raises(SafetyError, match=r"one pulse every 0.1 s"):
            smu.pulse(1.0, 1e-4)
        assert len(smu.transport.log) == sent_before  # nothing sent
        smu.wait(0.1)
        smu.pulse(1.0, 1e-4)


def test_controller_refusals_send_nothing() -> None:
    transport = ScriptedTransport(  # protocol v2 lines, CRCs worked out by hand (see the protocol tests)
        [
            ("@1 VER?*4524", "@1 2.0.0*186C"),
            ("@2 SIZE?*0109", "@2 2,3*F55D"),
            ("@3 LIMITS?*2FDF", "@3 10,1e-06,1,1e-09,0.1*1D9D"),
        ]
    )
    xbar = CrossbarController(transport, LIMITS, VirtualClock())
    sent = list(transport.sent)
    with pytest.raises(InstrumentStateError):
        xbar.pulse_device(0, 0, 1.0, 1e-4)
    xbar.compliance_set_a = 1e-4
    for call, message in [
        (lambda: xbar.pulse_row(0, [1.0, 2.5, 0.0], 1e-4), "pulse amplitude 2.5 V exceeds"),
        (lambda: xbar.pulse_row(0, [1.0, 1.0], 1e-4), "needs 3 amplitudes"),
        (lambda: xbar.pulse_device(2, 0, 1.0, 1e-4), "row 2 is outside the 2x3 array"),
        (lambda: xbar.read_device(0, 3, 0.1), "column 3 is outside"),
        (lambda: xbar.read_row(0, -2.5), "read voltage -2.5 V exceeds"),
        (lambda: xbar.set_compliance(0.5), "compliance 0.5 A exceeds"),
    ]:
        with pytest.raises(SafetyError, match=re.escape(message)):
            call()
    assert transport.sent == sent


@pytest.mark.parametrize("host", ["k2450.sim", "k2636b.sim", "b2912a.sim"])
@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_outputs_return_to_zero_and_off_on_any_exception(host, exc_type) -> None:
    lab = SimLab(seed=3)
    emulator = lab.instrument(host)
    with pytest.raises(exc_type), open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.source_voltage(1.2)
        assert emulator.output_on and emulator.level_v == pytest.approx(1.2)
        raise exc_type()
    assert not emulator.output_on
    assert emulator.level_v == 0.0


def test_controller_returns_lines_to_zero_on_exception() -> None:
    from drivers.sim.protocol_xbarsim import forget_arrays

    forget_arrays()
    with pytest.raises(KeyboardInterrupt), open_instrument("xbarsim://2x2?seed=9", LIMITS) as xbar:
        xbar.set_compliance(1e-4)
        raise KeyboardInterrupt
    assert xbar.transport.log[-2].text.startswith("@") and " RST*" in xbar.transport.log[-2].text


def _wire_values(host: str, sent: list[str]) -> tuple[list[float], list[float], list[float]]:
    """(levels V, pulse widths s, compliances A) in the commands sent, read the way each instrument does."""
    levels: list[float] = []
    widths: list[float] = []
    limits: list[float] = []
    for c in sent:
        if host == "k2636b.sim":
            if m := re.match(r"hwloop_pulse_setup_v2\((.*)\)$", c):
                amp, width, limit = (float(x) for x in m.group(1).split(","))
                levels.append(amp)
                widths.append(width)
                limits.append(limit)
            elif m := re.match(r"hwloop_train_setup_v2\((.*)\)$", c):
                levels.append(float(m.group(1).split(",")[0]))
            elif m := re.match(r"smua\.source\.(levelv|limiti) = (\S+)$", c):
                (levels if m.group(1) == "levelv" else limits).append(float(m.group(2)))
            continue
        if m := re.match(r":SOUR:VOLT(:TRIG)? (\S+)$", c):
            levels.append(float(m.group(2)))
        elif m := re.match(r":(TRIG:BLOC:DEL:CONS 3,|SOUR:PULS:WIDT) (\S+)$", c):
            widths.append(float(m.group(2)))
        elif m := re.match(r":(SOUR:VOLT:ILIM|SENS:CURR:PROT) (\S+)$", c):
            limits.append(float(m.group(2)))
    return levels, widths, limits


@pytest.mark.parametrize("host", ["k2450.sim", "k2636b.sim", "b2912a.sim"])
@settings(max_examples=25, deadline=None)
@given(
    amplitude=st.floats(-4, 4),
    width=st.floats(1e-6, 3e-3),
    read_v=st.floats(-3, 3),
    compliance=st.floats(1e-7, 3e-3),
)
def test_no_command_ever_exceeds_the_limits(host, amplitude, width, read_v, compliance) -> None:
    """Whatever is asked, every level, duration and compliance on the wire stays within the limits."""
    limits = SafetyLimits(
        max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e6
    )
    with open_instrument(f"TCPIP::{host}::INSTR", limits, sim=SimLab(seed=0)) as smu:
        with contextlib.suppress(SafetyError):
            smu.set_compliance(compliance)
        if smu.compliance_set_a is None:
            smu.set_compliance(1e-4)
        for call in (lambda: smu.pulse(amplitude, width), lambda: smu.read_train(read_v, 0.03, 3)):
            with contextlib.suppress(SafetyError):
                call()
        sent = [e.text for e in smu.transport.log if e.direction == ">"]
    levels, widths, compliances = _wire_values(host, sent)
    assert compliances  # the parsing found the compliance commands
    assert all(abs(v) <= 2.0 for v in levels)
    assert all(w <= 1e-3 for w in widths)
    assert all(0 < i <= 1e-3 for i in compliances)


def test_limits_load_from_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "limits.toml"
    toml.write_text(
        "max_abs_voltage_v = 1.5\nmax_pulse_width_s = 1e-4\nmax_compliance_a = 1e-4\nmax_pulses_per_s = 5\n"
    )
    limits = SafetyLimits.load(toml)
    assert limits.max_abs_voltage_v == 1.5 and limits.max_pulses_per_s == 5
    js = tmp_path / "limits.json"
    js.write_text(json.dumps(limits.model_dump()))
    assert SafetyLimits.load(js) == limits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_abs_voltage_v = -1\nmax_pulse_width_s = 1\nmax_compliance_a = 1e-3\nmax_pulses_per_s = 1\n",
            "greater than 0",
        ),
        (
            "max_abs_voltage_v = 1\nmax_pulse_width_s = 1\nmax_compliance_a = 1e-3\n",
            "max_pulses_per_s: Field required",
        ),
        (
            "max_abs_voltage_v = 1\nmax_pulse_width_s = 1\nmax_compliance_a = 1e-3\n"
            "max_pulses_per_s = 1\nvolts = 3\n",
            "volts",
        ),
        ("max_abs_voltage_v = = 1", "not valid toml"),
    ],
)
def test_bad_limits_files_are_one_clear_error(tmp_path, text, message) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(HwloopError, match=message) as info:
        SafetyLimits.load(path)
    assert "\n" not in str(info.value)
