"""Issue 13, SMU half: what would fail on a real bench, against a simulated lab as strict as the manuals.

Each test names the problem it proves fixed (1-6). Ground truth is the simulated instrument's own
documented behaviour (source delay, sweep limit, trigger overrun, error queue, device clear), observed at
the device's terminals: every interval the device is held at a voltage, as the emulator integrates it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import pyvisa

from drivers import InstrumentError, SafetyError, SafetyLimits, open_instrument
from drivers.sim import Faults, SimLab, SimVisaLibrary
from drivers.transport import VisaTransport

pytestmark = pytest.mark.timeout(120)  # a hang fails the test instead of the suite

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
HOSTS = ["k2450.sim", "k2636b.sim", "b2912a.sim"]


def resource(host: str) -> str:
    return f"TCPIP::{host}::INSTR"


def record_holds(monkeypatch: pytest.MonkeyPatch, lab: SimLab, host: str) -> list[tuple[float, float, float]]:
    """(volts, seconds, current limit in force A) of every interval the device is held at."""
    emulator = lab.instrument(host)
    device = emulator.device
    held: list[tuple[float, float, float]] = []
    hold = device.hold

    def recording_hold(volts, duration_s):
        if duration_s > 0:
            held.append((float(volts), float(duration_s), emulator.effective_limit_a()))
        hold(volts, duration_s)

    monkeypatch.setattr(device, "hold", recording_hold)
    return held


def pulses(held: list[tuple[float, float, float]], threshold_v: float = 0.5) -> list[tuple[float, float]]:
    """Merge consecutive holds above ``threshold_v`` into pulses: (level V, total duration s)."""
    out: list[tuple[float, float]] = []
    previous_high = False
    for volts, seconds, _ in held:
        high = abs(volts) >= threshold_v
        if high and previous_high and out[-1][0] == volts:
            out[-1] = (volts, out[-1][1] + seconds)
        elif high:
            out.append((volts, seconds))
        previous_high = high
    return out


def raw_session(lab: SimLab, host: str) -> pyvisa.resources.MessageBasedResource:
    """Another program on the same instrument (no driver, no device clear)."""
    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
    inst = rm.open_resource(resource(host), read_termination="\n", write_termination="\n")
    inst.timeout = 5000
    return inst


def sent(smu) -> list[str]:
    return [entry.text for entry in smu.transport.log if entry.direction == ">"]


# -- problem 3: pulses longer than asked ------------------------------------------------------------
def test_3_k2450_pulse_lasts_its_width_not_width_plus_the_source_auto_delay(monkeypatch) -> None:
    """2450 reference manual: with source auto delay on (the power-on default) the source settles 1 ms
    (100 uA range) before the trigger model goes on; stored in the pulse list, that stretched a 100 us
    pulse past the 1 ms safety limit. The pulse must last its width."""
    lab = SimLab(seed=3)
    emulator = lab.instrument("k2450.sim")
    assert emulator.source_delay_auto and emulator.source_delay() == pytest.approx(1e-3)  # as shipped
    held = record_holds(monkeypatch, lab, "k2450.sim")
    with open_instrument(resource("k2450.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.5, 100e-6)
    assert [level for level, _ in pulses(held)] == [1.5]
    assert pulses(held)[0][1] == pytest.approx(100e-6, rel=1e-9)
    assert all(
        e["source_delay_auto"] is False and e["source_delay_s"] == 0
        for e in emulator.config_lists["HWLOOP_PULSE"]
    )


def test_3_k2600_pulse_runs_under_the_users_compliance_not_a_stale_sweep_limit(monkeypatch) -> None:
    """2600B reference manual: smua.trigger.source.limiti, when not 0 (LIMIT_AUTO), replaces the normal
    limit from the source action to the end pulse; only reset() restores it. A program that left it at
    LIMIT_OFF (or 1 A) turned the user's compliance off during every pulse."""
    lab = SimLab(seed=3)
    other = raw_session(lab, "k2636b.sim")
    other.write("smua.trigger.source.limiti = smua.LIMIT_OFF")
    other.close()
    held = record_holds(monkeypatch, lab, "k2636b.sim")
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-5)
        smu.pulse(1.5, 200e-6)
    during = [limit for volts, _, limit in held if abs(volts) >= 0.5]
    assert during, "the device saw no pulse"
    assert all(limit == pytest.approx(1e-5) for limit in during)
    assert pulses(held) == [(1.5, pytest.approx(200e-6, rel=1e-9))]


# -- problem 4: errors read after the pulse fired -----------------------------------------------------
def test_4_b2900_width_below_its_minimum_is_refused_before_anything_is_sent(monkeypatch) -> None:
    """B2900: the minimum programmable pulse width is 50 us. The instrument rejects 20 us (-222) and keeps
    its old width (1 ms here), so sending it and arming fired a 1 ms pulse."""
    lab = SimLab(seed=4)
    held = record_holds(monkeypatch, lab, "b2912a.sim")
    with open_instrument(resource("b2912a.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        before = len(sent(smu))
        with pytest.raises(SafetyError, match=r"pulse width 2e-05 s is below the Keysight B2900's minimum"):
            smu.pulse(1.5, 20e-6)
        assert sent(smu)[before:] == []
    assert pulses(held) == []


@pytest.mark.parametrize(
    ("host", "refused"), [("k2450.sim", ":TRIG:BLOC:DEL:CONS"), ("b2912a.sim", ":SOUR:PULS:WIDT")]
)
def test_4_a_setting_the_instrument_refuses_stops_the_pulse_before_it_fires(
    monkeypatch, host, refused
) -> None:
    """Whatever the instrument refuses (here the pulse width, error -222) is read from the error queue
    before the sequence is armed: the old value never fires."""
    lab = SimLab(seed=4)
    held = record_holds(monkeypatch, lab, host)
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        lab.inject(host, Faults(reject_on=refused))
        with pytest.raises(InstrumentError, match="-222"):
            smu.pulse(1.5, 100e-6)
        assert not any(c.startswith(":INIT") for c in sent(smu))
    assert pulses(held) == []
    assert not lab.instrument(host).output_on


# -- problem 6: Ctrl-C while the instrument is busy ---------------------------------------------------
def interrupt_during_opc(monkeypatch, lab: SimLab, after_s: float) -> list[float]:
    """Make the next ``*OPC?`` wait be interrupted (KeyboardInterrupt) after ``after_s`` of virtual time;
    returns a list that receives the virtual time of the interrupt."""
    when: list[float] = []
    real_receive = VisaTransport._receive

    def receive(self, timeout_s):
        if self.log and self.log[-1].text == "*OPC?" and not when:
            lab.clock.sleep(after_s)  # the host waits, the instrument runs ...
            when.append(lab.clock.now_s())
            raise KeyboardInterrupt  # ... and the user presses Ctrl-C
        return real_receive(self, timeout_s)

    monkeypatch.setattr(VisaTransport, "_receive", receive)
    return when


@pytest.mark.parametrize("host", HOSTS)
def test_6_ctrl_c_during_a_read_train_turns_the_output_off_at_once(monkeypatch, host) -> None:
    """Ctrl-C while the instrument runs a 3 s train: a 2600B script function holds the parser, an
    unanswered *OPC? holds a SCPI instrument's; abort / 0 V / off would wait behind them. A device clear
    first frees the parser, so the output is off right away, and the late *OPC? reply is gone."""
    lab = SimLab(seed=6)
    emulator = lab.instrument(host)
    when = interrupt_during_opc(monkeypatch, lab, after_s=1.0)
    with pytest.raises(KeyboardInterrupt), open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.read_train(0.1, 0.05, 60)
    assert when, "the train was not interrupted"
    assert not emulator.output_on and emulator.level_v == 0.0
    assert emulator.operation is None  # the sequence was aborted, not left running
    assert lab.clock.now_s() - when[0] < 0.05  # off within milliseconds of the interrupt, not at 3 s
    monkeypatch.undo()
    other = raw_session(lab, host)  # the next program's first query gets its own answer
    assert other.query("*IDN?") == emulator.idn
    other.close()


# -- problem 1: read-train timeouts from the measurement time -----------------------------------------
@pytest.mark.parametrize("host", HOSTS)
def test_1_an_interval_shorter_than_one_reading_is_refused_naming_the_shortest(monkeypatch, host) -> None:
    """README example --every 1e-3 --count 1000 at NPLC 1: a reading takes 20 ms on 50 Hz mains, so the
    train takes > 20 s, not 1 s (it timed out after 3.5 s). Refused before anything sources, naming the
    shortest interval; a train at that interval then runs to the end, readings at least that far apart."""
    lab = SimLab(seed=1)
    held = record_holds(monkeypatch, lab, host)
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        before = len(sent(smu))
        with pytest.raises(SafetyError, match=r"read interval 0.001 s is shorter than one reading") as info:
            smu.read_train(0.1, 1e-3, 1000)
        assert sent(smu)[before:] in ([], [smu.line_frequency_query])
        assert held == [] or all(v == 0.0 for v, _, _ in held)
        shortest = float(re.search(r"shortest possible interval is ([0-9.e-]+) s", str(info.value)).group(1))
        assert 1 / 50 <= shortest < 1 / 50 + 2e-3  # one 50 Hz cycle plus a bounded overhead
        start = lab.clock.now_s()
        train = smu.read_train(0.1, shortest, 1000)
    assert len(train.t_s) == 1000
    assert np.all(np.diff(train.t_s) >= shortest * (1 - 1e-9))
    assert train.t_s[-1] >= 999 * shortest and lab.clock.now_s() - start > 20.0


NPLC_10 = {
    "k2450.sim": ":SENS:CURR:NPLC 10",
    "k2636b.sim": "smua.measure.nplc = 10",
    "b2912a.sim": ":SENS:CURR:NPLC 10",
}


@pytest.mark.parametrize("host", HOSTS)
def test_1_the_integration_time_is_set_and_the_timeout_follows_it(host) -> None:
    """An earlier program left NPLC 10 (0.2 s per reading). The session's NPLC (1) is set by the train
    itself, so 100 readings 30 ms apart take 3 s, not 20 s (which the interval-based timeout cut off);
    and a deliberate NPLC 10 gets a timeout derived from it."""
    lab = SimLab(seed=1)
    other = raw_session(lab, host)
    other.write(NPLC_10[host])
    other.close()
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        fast = smu.read_train(0.1, 0.03, 100)
        smu.nplc = 10
        slow = smu.read_train(0.1, 0.25, 50)
    np.testing.assert_allclose(np.diff(fast.t_s), 0.03, rtol=0.02)  # not 0.2 s: NPLC 1 was in force
    assert slow.t_s[-1] >= 49 * 0.25
    assert np.all(np.diff(slow.t_s) >= 0.2)


# -- problem 2: 2600B read trains that hang -----------------------------------------------------------
def test_2_sim_drops_timer_events_while_the_detector_is_set_and_the_train_never_ends() -> None:
    """2600B reference manual: an event reaching an event detector that is already set is an overrun
    (status.operation.instrument.smua.trigger_overrun bit MEAS = 8) and is lost."""
    lab = SimLab(seed=2)
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu._ensure_script()
    inst = raw_session(lab, "k2636b.sim")
    inst.write("hwloop_train_setup_v3(0.1, 0.005, 20, 1, 1e-06)")  # 5 ms events, 20 ms readings
    inst.write("smua.source.output = smua.OUTPUT_ON")
    inst.write("hwloop_run_v3()")
    inst.timeout = 3000
    with pytest.raises(pyvisa.errors.VisaIOError):
        inst.query("*OPC?")  # never finishes: the timer ran out of events first
    inst.clear()
    inst.write("smua.abort()")
    assert float(inst.query("print(status.operation.instrument.smua.trigger_overrun.event)")) == 8
    assert len(lab.instrument("k2636b.sim").buffer) < 20
    inst.write("smua.source.output = smua.OUTPUT_OFF")
    inst.close()


def test_2_an_overrun_is_reported_and_the_output_goes_off_instead_of_hanging(monkeypatch) -> None:
    """If readings are slower than the driver expects (here: it is told there is no per-reading overhead,
    0.1 ms short), each reading starts 0.1 ms later than its event; the one event the detector holds
    absorbs that for 200 readings, then events are lost and the train cannot finish. The driver must stop
    it, say why, and leave the output off, within its derived timeout."""
    from drivers import Keithley2600B

    monkeypatch.setattr(Keithley2600B, "read_overhead_s", 0.0, raising=False)
    lab = SimLab(seed=2)
    emulator = lab.instrument("k2636b.sim")
    start = lab.clock.now_s()
    smu = open_instrument(resource("k2636b.sim"), LIMITS, sim=lab)
    with pytest.raises(InstrumentError, match="trigger overrun"), smu:
        smu.set_compliance(1e-4)
        smu.read_train(0.1, 0.02, 400)  # NPLC 1 = 20 ms integration, 20.1 ms per reading
    assert lab.clock.now_s() - start < 1.25 * 8.1 + 3  # the derived timeout, not for ever
    assert not emulator.output_on and emulator.operation is None


# -- problem 5: state the sequences depend on, left by someone else -----------------------------------
def test_5_b2900_leftover_arm_count_gives_one_pulse_not_five(monkeypatch) -> None:
    lab = SimLab(seed=5)
    other = raw_session(lab, "b2912a.sim")
    other.write(":ARM:COUN 5")
    other.close()
    held = record_holds(monkeypatch, lab, "b2912a.sim")
    with open_instrument(resource("b2912a.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.5, 100e-6)
    assert pulses(held) == [(1.5, pytest.approx(100e-6, rel=1e-9))]


def test_5_b2900_leftover_list_mode_cannot_replace_the_amplitude(monkeypatch) -> None:
    lab = SimLab(seed=5)
    other = raw_session(lab, "b2912a.sim")
    other.write(":SOUR:LIST:VOLT 1.9")
    other.write(":SOUR:VOLT:MODE LIST")
    other.close()
    held = record_holds(monkeypatch, lab, "b2912a.sim")
    with open_instrument(resource("b2912a.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.0, 100e-6)
    assert pulses(held) == [(1.0, pytest.approx(100e-6, rel=1e-9))]


def test_5_k2600_leftover_binary_format_does_not_break_the_train() -> None:
    lab = SimLab(seed=5)
    other = raw_session(lab, "k2636b.sim")
    other.write("format.data = format.REAL32")
    other.close()
    with open_instrument(resource("k2636b.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        train = smu.read_train(0.1, 0.05, 20)
    assert np.all((train.i_a > 0) & (train.i_a < 1e-6))
    np.testing.assert_allclose(np.diff(train.t_s), 0.05, rtol=1e-4)


@pytest.mark.parametrize("host", HOSTS)
def test_5_an_old_error_in_the_queue_is_not_blamed_on_the_next_command(host) -> None:
    """A program left an error in the queue, and *RST does not empty it (only *CLS or reading does)."""
    lab = SimLab(seed=5)
    other = raw_session(lab, host)
    other.write(":NOT:A:COMMAND" if host != "k2636b.sim" else "not a statement")
    other.write("*RST" if host != "k2636b.sim" else "reset()")
    other.close()
    assert lab.instrument(host).errors  # still queued
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.pulse(1.5, 100e-6)


@pytest.mark.parametrize("host", HOSTS)
def test_6_a_reply_an_earlier_program_left_unread_does_not_answer_the_next_query(host) -> None:
    """A program that crashed between *OPC? and its read left "1" in the instrument's output queue; the
    next session clears the device before its first query."""
    lab = SimLab(seed=6)
    other = raw_session(lab, host)
    other.write("*OPC?")
    other.close()
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        assert smu.identify() == lab.instrument(host).idn


@pytest.mark.parametrize("host", HOSTS)
def test_1_a_single_reading_integrates_over_the_sessions_nplc(host) -> None:
    """read_current sets the integration time too: a leftover NPLC 10 would make it take 0.2 s."""
    lab = SimLab(seed=1)
    other = raw_session(lab, host)
    other.write(NPLC_10[host])
    other.close()
    with open_instrument(resource(host), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.nplc = 0.1
        start = lab.clock.now_s()
        current = smu.read_current(0.1)
        took = lab.clock.now_s() - start
    assert 0 < current < 1e-6
    assert took < 0.02  # 2 ms of integration and a few commands, not 200 ms


def test_5_b2900_leftover_auto_aperture_does_not_set_the_integration() -> None:
    """With auto aperture on, the B2900 picks the integration itself (here one cycle, 20 ms): the train
    switches it off, so its NPLC 0.01 (0.2 ms) readings are 1 ms apart as asked."""
    lab = SimLab(seed=5)
    other = raw_session(lab, "b2912a.sim")
    other.write(":SENS:CURR:APER:AUTO ON")
    other.close()
    with open_instrument(resource("b2912a.sim"), LIMITS, sim=lab) as smu:
        smu.set_compliance(1e-4)
        smu.nplc = 0.01
        train = smu.read_train(0.1, 1e-3, 50)
    np.testing.assert_allclose(np.diff(train.t_s), 1e-3, rtol=1e-6)
