"""Issue 22: the simulated SMUs keep the state their manuals say they keep, and the drivers trust nothing
they have not read back.

Each test names the bench fault it proves fixed. Ground truth is the simulated instrument's documented
state (output state, limit in force, reading buffer) and what reached the device's terminals, never the
driver's own record. Every test here failed against the drivers before issue 22 (see the report).
"""

from __future__ import annotations

import numpy as np
import pytest
import pyvisa

from drivers import InstrumentError, SafetyError, SafetyLimits, open_instrument
from drivers.errors import InstrumentTimeout, ProtocolError
from drivers.sim import Faults, SimLab, SimVisaLibrary

pytestmark = pytest.mark.timeout(120)

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
HOSTS = ["k2450.sim", "k2636b.sim", "b2912a.sim"]
LIMIT_COMMAND = {
    "k2450.sim": ":SOUR:VOLT:ILIM",
    "k2636b.sim": "smua.source.limiti",
    "b2912a.sim": ":SENS:CURR:PROT",
}


def resource(host: str) -> str:
    return f"TCPIP::{host}::INSTR"


def raw_session(lab: SimLab, host: str) -> pyvisa.resources.MessageBasedResource:
    """Another program on the same instrument (no driver)."""
    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
    inst = rm.open_resource(resource(host), read_termination="\n", write_termination="\n")
    inst.timeout = 5000
    return inst


def record_holds(monkeypatch: pytest.MonkeyPatch, lab: SimLab, host: str) -> list[tuple[float, float]]:
    """(volts, seconds) of every interval the device is held at, as the emulator integrates it."""
    device = lab.device(host)
    held: list[tuple[float, float]] = []
    hold = device.hold

    def recording(volts, duration_s):
        if duration_s > 0:
            held.append((float(volts), float(duration_s)))
        hold(volts, duration_s)

    monkeypatch.setattr(device, "hold", recording)
    return held


def high_time_s(held: list[tuple[float, float]], threshold_v: float = 0.5) -> float:
    return sum(seconds for volts, seconds in held if abs(volts) >= threshold_v)


# -- fault 1: the 2450's configuration lists store the output state ------------------------------------
def test_1_sim_recalling_an_entry_stored_with_the_output_off_switches_it_off(monkeypatch) -> None:
    """2450 reference manual, :OUTPut[:STATe]: "Where saved: Source configuration list". With the output
    switched on *before* the recall of an entry stored with the output off, the instrument delivers no
    pulse: the recall opens the output again."""
    lab = SimLab(seed=1)
    held = record_holds(monkeypatch, lab, "k2450.sim")
    inst = raw_session(lab, "k2450.sim")
    for command in (
        ":SOUR:VOLT:DEL:AUTO OFF",
        ':SOUR:CONF:LIST:CRE "P"',
        ":SOUR:VOLT 1",  # output off (power-on state)
        ':SOUR:CONF:LIST:STOR "P"',
        ':TRIG:LOAD "Empty"',
        ":TRIG:BLOC:SOUR:STAT 1, ON",
        ':TRIG:BLOC:CONF:REC 2, "P", 1',
        ":TRIG:BLOC:DEL:CONS 3, 0.001",
        ":INIT",
    ):
        inst.write(command)
    assert inst.query("*OPC?") == "1"
    assert high_time_s(held) == 0.0
    assert inst.query(":OUTP?") == "0"


def test_1_k2450_pulse_ends_with_the_output_on_at_0v_as_documented(monkeypatch) -> None:
    """``Smu.pulse``: the output is on at 0 V after the pulse, on every SMU. Before issue 22 the 2450's
    pulse list stored both entries with the output off, so the pulse ended with the output off (in
    high-impedance off mode: the relay opened on the falling edge)."""
    lab = SimLab(seed=1)
    emulator = lab.instrument("k2450.sim")
    other = raw_session(lab, "k2450.sim")
    other.write(":OUTP:SMOD HIMP")  # the user's off mode: hwloop leaves it alone
    held = record_holds(monkeypatch, lab, "k2450.sim")
    with open_instrument(resource("k2450.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.2, 2e-4)
        assert emulator.output_on and emulator.level_v == 0.0
        assert [v for v, _ in held if abs(v) >= 0.5] == [1.2]
        assert high_time_s(held) == pytest.approx(2e-4, rel=1e-9)
        assert emulator.off_mode == "HIMP"
        smu.wait(0.01)
        smu.pulse(1.2, 2e-4)  # the second pulse of a session is the same pulse
        assert high_time_s(held) == pytest.approx(4e-4, rel=1e-9)
        assert emulator.output_on and emulator.level_v == 0.0


@pytest.mark.parametrize("host", HOSTS)
def test_1_a_pulse_whose_output_does_not_go_on_is_reported_not_taken_for_done(monkeypatch, host) -> None:
    """A pulse reads the output state back before it arms: an output relay that did not close (the sim
    made to ignore "output on") is an error, no pulse is armed, and the output ends off."""
    lab = SimLab(seed=3)
    emulator = lab.instrument(host)
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        set_source = emulator.set_source

        def relay_stuck_open(*, level_v=None, output_on=None, at_s=None):
            set_source(level_v=level_v, output_on=None if output_on else output_on, at_s=at_s)

        monkeypatch.setattr(emulator, "set_source", relay_stuck_open)
        with pytest.raises(InstrumentError, match="output should be on at 0 V"):
            smu.pulse(1.0, 1e-4)
        assert not any("pulse" in name or "trigger" in name for name, _, _ in emulator.history)
        assert not emulator.output_on and emulator.level_v == 0.0


# -- fault 2: a limit recorded before it is known to be in force ---------------------------------------
@pytest.mark.parametrize("host", HOSTS)
def test_2_a_refused_compliance_is_not_recorded(host) -> None:
    """After a -222 / 1102 refusal the instrument keeps its old limit (manuals); so must the driver."""
    lab = SimLab(seed=2)
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        lab.inject(host, Faults(reject_on=LIMIT_COMMAND[host]))
        with pytest.raises(InstrumentError, match="reported error"):
            smu.set_compliance(5e-4)
        lab.inject(host, Faults())
        assert smu.compliance_a == pytest.approx(1e-4)  # what the instrument has in force
        assert smu.compliance_set_a == pytest.approx(1e-4)  # what the driver believes


def test_2_k2611b_refuses_1na_and_the_pulse_keeps_the_limit_in_force() -> None:
    """2601B..2614B: the smallest current limit is 10 nA (1 nA on those models is error 1102). The 2600B
    pulse's sweep limit comes from the recorded compliance, so a recorded-but-refused 1 nA would run the
    pulse at 1 nA while the instrument's limit is 100 uA."""
    lab = SimLab(seed=2, models={"k2636b.sim": "2611B"})
    emulator = lab.instrument("k2636b.sim")
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        with pytest.raises(InstrumentError, match="1102"):
            smu.set_compliance(1e-9)
        assert smu.compliance_set_a == pytest.approx(1e-4)
        smu.pulse(1.0, 1e-4)
        assert emulator.sweep_limit_a == pytest.approx(emulator.limit_a) == pytest.approx(1e-4)


def test_2_b2900_compliance_below_the_models_range_is_refused_and_not_recorded() -> None:
    lab = SimLab(seed=2)
    with open_instrument(resource("b2912a.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        with pytest.raises(InstrumentError, match="-222"):
            smu.set_compliance(1e-11)  # inside the family's envelope, below the B2912A's range
        assert smu.compliance_set_a == pytest.approx(1e-4) == pytest.approx(smu.compliance_a)


# -- fault 3: 2600B timed reads with timestamps --------------------------------------------------------
def ground_truth_t_s(lab: SimLab) -> np.ndarray:
    starts = np.array([t for t, _ in lab.instrument("k2636b.sim").buffer])
    return starts - starts[0]


@pytest.mark.parametrize(
    "leftover",
    [[], ["smua.nvbuffer1.clear()", "smua.nvbuffer1.timestampresolution = 0.001"]],
    ids=["default-precision", "leftover-resolution"],
)
def test_3_k2600_timestamps_are_neither_quantised_by_print_precision_nor_by_a_leftover_resolution(
    leftover,
) -> None:
    """A 20 s train: 6 printed digits quantise timestamps past 10 s to 100 us; a resolution left at 1 ms by
    another program (rounded to 1.024 ms) quantises every timestamp. Both must be set by the driver."""
    lab = SimLab(seed=3)
    other = raw_session(lab, "k2636b.sim")
    for command in leftover:
        other.write(command)
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.1
        train = smu.read_train(0.1, 0.050123, 400)  # timestamps with more than 6 digits
    np.testing.assert_allclose(train.t_s, ground_truth_t_s(lab), rtol=0, atol=2e-6)


def test_3_k2600_train_longer_than_the_buffer_is_refused_before_anything_sources() -> None:
    """Past its capacity a FILL_ONCE buffer discards readings: the failure showed only after the whole
    train. The 2600B specifications guarantee > 60,000 readings with timestamps and source values."""
    lab = SimLab(seed=3)
    emulator = lab.instrument("k2636b.sim")
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.001
        with pytest.raises(InstrumentError, match="buffer"):
            smu.read_train(0.1, 3e-4, 90_000)
        assert emulator.history == [] and not emulator.output_on


def test_3_k2600_train_is_checked_against_the_capacity_read_back(monkeypatch) -> None:
    """An instrument whose buffer holds fewer readings than the specification (here 6,000 with
    timestamps): the driver reads ``smua.nvbuffer1.capacity`` and refuses before the output goes on."""
    import drivers.sim.k2600 as k2600

    monkeypatch.setattr(k2600, "BUFFER_BYTES", 6_000 * 10)
    lab = SimLab(seed=3)
    emulator = lab.instrument("k2636b.sim")
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.01
        with pytest.raises(InstrumentError, match="holds 6000 readings"):
            smu.read_train(0.1, 1e-3, 6_001)
        assert not any("train" in name for name, _, _ in emulator.history)
        assert not emulator.output_on
        assert len(smu.read_train(0.1, 1e-3, 6_000).t_s) == 6_000


def test_3_k2600_leftover_window_fill_mode_does_not_wrap_the_train() -> None:
    lab = SimLab(seed=3)
    other = raw_session(lab, "k2636b.sim")
    for command in ("smua.nvbuffer1.fillmode = smua.FILL_WINDOW", "smua.nvbuffer1.fillcount = 50"):
        other.write(command)
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.1
        train = smu.read_train(0.1, 0.01, 80)
    np.testing.assert_allclose(train.t_s, ground_truth_t_s(lab), rtol=0, atol=2e-6)


def test_3_k2600_train_longer_than_71_minutes_keeps_increasing_timestamps() -> None:
    """At 1 us the timestamps are unique for 71 minutes (2^32 us), then roll over: the driver picks a
    resolution that covers the train."""
    lab = SimLab(seed=3)
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.1
        train = smu.read_train(0.1, 1.0, 4_400)
    assert np.all(np.diff(train.t_s) > 0)
    np.testing.assert_allclose(train.t_s, ground_truth_t_s(lab), rtol=0, atol=4e-6)


def test_3_timestamps_that_do_not_increase_are_an_error_and_the_output_goes_off(monkeypatch) -> None:
    import drivers.smu_k2600 as smu_k2600

    monkeypatch.setattr(smu_k2600, "timestamp_resolution_s", lambda duration_s: 1e-6)  # rolls over
    lab = SimLab(seed=3)
    emulator = lab.instrument("k2636b.sim")
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.1
        with pytest.raises(ProtocolError, match="timestamps do not increase"):
            smu.read_train(0.1, 1.0, 4_400)
        assert not emulator.output_on and emulator.level_v == 0.0


# -- the two smaller faults ------------------------------------------------------------------------------
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("operation", ["pulse", "read_train"])
def test_a_failed_pulse_or_train_takes_the_output_to_0v_and_off_itself(host, operation) -> None:
    """An ``*OPC?`` that never answers: the output is at 0 V and off as the exception arrives, not only
    when the ``with`` block is left."""
    lab = SimLab(seed=4)
    emulator = lab.instrument(host)
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.nplc = 0.1
        lab.inject(host, Faults(timeout_on="*OPC?"))
        with pytest.raises(InstrumentTimeout):
            if operation == "pulse":
                smu.pulse(1.0, 1e-4)
            else:
                smu.read_train(0.1, 0.01, 10)
        assert not emulator.output_on and emulator.level_v == 0.0


def test_k2600_pulse_reads_the_error_queue_before_the_output_goes_on(monkeypatch) -> None:
    lab = SimLab(seed=4)
    emulator = lab.instrument("k2636b.sim")
    execute = emulator.execute
    output_at_error_reads: list[bool] = []

    def spying(command: str) -> None:
        if command == "print(errorqueue.count)":
            output_at_error_reads.append(emulator.output_on)
        execute(command)

    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu._ensure_script()
        assert not emulator.output_on
        monkeypatch.setattr(emulator, "execute", spying)
        smu.pulse(1.0, 1e-4)
    assert output_at_error_reads[0] is False  # the pre-arm read: the output was still off


def test_refused_requests_still_send_nothing_after_the_changes() -> None:
    lab = SimLab(seed=4)
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        before = len(smu.transport.log)
        with pytest.raises(SafetyError):
            smu.set_compliance(2e-3)  # beyond the user's limit
        assert len(smu.transport.log) == before


def test_3_k2450_train_longer_than_defbuffer1_is_refused_before_anything_sources() -> None:
    """defbuffer1 fills continuously: a train longer than its size (here left at 50 by another program)
    would overwrite its first readings. The driver reads the size (:TRAC:POIN?) first."""
    lab = SimLab(seed=3)
    emulator = lab.instrument("k2450.sim")
    raw_session(lab, "k2450.sim").write(':TRAC:POIN 50, "defbuffer1"')
    with open_instrument(resource("k2450.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-3)
        smu.nplc = 0.1
        with pytest.raises(InstrumentError, match="holds 50 readings"):
            smu.read_train(0.1, 0.01, 80)
        assert emulator.history == [] and not emulator.output_on
        assert len(smu.read_train(0.1, 0.01, 50).t_s) == 50


@pytest.mark.parametrize("duration_s", [1e-3, 10.0, 4294.0, 4296.0, 3e4, 1e6])
def test_3_the_timestamp_resolution_is_the_finest_that_covers_the_train(duration_s) -> None:
    from drivers.smu_k2600 import timestamp_resolution_s

    resolution = timestamp_resolution_s(duration_s)
    steps_in_us = resolution / 1e-6
    assert steps_in_us == 2 ** round(np.log2(steps_in_us))  # 1 us times a power of 2
    assert 2**32 * resolution >= duration_s  # no rollover within the train
    assert resolution == 1e-6 or 2**32 * resolution / 2 < duration_s  # and none finer would do
