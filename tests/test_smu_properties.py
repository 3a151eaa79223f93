"""Issue 22, property: random sequences of settings, pulses and read trains, with refusals and timeouts
injected, on each simulated SMU. Whatever happens, the driver's record of the instrument equals the
instrument's state as queried, and after any error in a sequence the output is at 0 V and off.

The simulated instruments are the reference: their state (limit in force, output, stored lists) is read
from the emulator, independently of the driver.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import InstrumentError, SafetyError, SafetyLimits, open_instrument
from drivers.errors import InstrumentStateError
from drivers.sim import Faults, SimLab
from drivers.smu_k2450 import PULSE_LIST

pytestmark = pytest.mark.timeout(300)

LIMITS = SafetyLimits(
    max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=1e3
)
# The 2600B behind k2636b.sim is a 2611B here: its smallest current limit (10 nA) is above the driver's
# family-wide minimum, so the instrument itself refuses some of the compliances drawn below.
MODELS = {"k2636b.sim": "2611B"}
REFUSABLE = {  # command prefixes whose refusal (-222) each host may be made to give
    "k2450.sim": [":SOUR:VOLT:ILIM", ":SOUR:VOLT ", ":SOUR:CONF:LIST:STOR", ":TRIG:BLOC:DEL", ":OUTP ON"],
    "k2636b.sim": ["smua.source.limiti", "smua.source.levelv", "hwloop_pulse_setup", "hwloop_train_setup"],
    "b2912a.sim": [":SENS:CURR:PROT", ":SOUR:VOLT ", ":SOUR:PULS:WIDT", ":TRIG:TIM", ":OUTP ON"],
}
SILENT = {  # queries that may be made to go unanswered
    "k2450.sim": ["*OPC?", ":SYST:ERR?", ":OUTP?"],
    "k2636b.sim": ["*OPC?", "print(errorqueue.count)", "print(smua.nvbuffer1.capacity)"],
    "b2912a.sim": ["*OPC?", ":SYST:ERR?", ":FETC:ARR:TIME?"],
}


def operations(host: str) -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.just("compliance"), st.sampled_from([1e-11, 3e-9, 2e-8, 1e-4, 5e-4, 1e-3])),
        st.tuples(st.just("pulse"), st.sampled_from([-1.5, 0.8, 1.5]), st.sampled_from([1e-4, 5e-4])),
        st.tuples(st.just("train"), st.sampled_from([0.02, 0.05]), st.integers(1, 12)),
        st.tuples(st.just("source"), st.sampled_from([0.0, 0.1, 0.3])),
        st.tuples(st.just("refuse"), st.sampled_from(REFUSABLE[host])),
        st.tuples(st.just("silence"), st.sampled_from(SILENT[host])),
        st.tuples(st.just("heal")),
    )


def run(smu, op: tuple) -> None:
    kind = op[0]
    if kind == "compliance":
        smu.set_compliance(op[1])
    elif kind == "pulse":
        smu.pulse(op[1], op[2])
    elif kind == "train":
        smu.read_train(0.1, op[1], op[2])
    elif kind == "source":
        smu.source_voltage(op[1])


def assert_off_at_zero(emulator, lab: SimLab, host: str, context: object) -> None:
    """Output off (the device sees 0 V) and the level at 0 V, unless the instrument is being made to
    refuse level changes (then the old level stays in force, behind an open output)."""
    assert not emulator.output_on, context
    assert emulator.applied_v == 0.0, context
    refusing_levels = lab.faults.get(host, Faults()).reject_on in {":SOUR:VOLT ", "smua.source.levelv"}
    assert emulator.level_v == 0.0 or refusing_levels, context


def check_sequences(host: str, ops: list[tuple]) -> None:
    lab = SimLab(seed=7, models=MODELS)
    emulator = lab.instrument(host)
    with open_instrument(f"TCPIP::{host}::INSTR", LIMITS, sim=lab) as smu:
        smu.nplc = 0.1
        smu.set_compliance(1e-4)
        for op in ops:
            if op[0] == "refuse":
                lab.inject(host, Faults(reject_on=op[1]))
                continue
            if op[0] == "silence":
                lab.inject(host, Faults(timeout_on=op[1]))
                continue
            if op[0] == "heal":
                lab.inject(host, Faults())
                continue
            smu.wait(0.01)  # the pulse-rate limit
            sent_before = len(smu.transport.log)
            try:
                run(smu, op)
            except (SafetyError, InstrumentStateError) as exc:
                if len(smu.transport.log) == sent_before:  # refused by the driver: nothing was sent
                    continue
                assert_off_at_zero(emulator, lab, host, (op, exc))
            except InstrumentError as exc:
                assert_off_at_zero(emulator, lab, host, (op, exc))
        lab.inject(host, Faults())
        in_force = smu.compliance_a  # queried from the instrument
        assert in_force == pytest.approx(emulator.limit_a)
        if smu.compliance_set_a is not None:  # None: unknown after a lost reply, so set it again
            assert smu.compliance_set_a == pytest.approx(in_force, rel=1e-6)
        if host == "k2450.sim" and smu._list_created is not None:
            assert smu._list_created == (PULSE_LIST in emulator.config_lists)


@pytest.mark.parametrize("host", ["k2450.sim", "k2636b.sim", "b2912a.sim"])
def test_recorded_state_matches_the_instrument_and_errors_leave_the_output_off(host) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=st.lists(operations(host), min_size=1, max_size=10))
    def prop(ops: list[tuple]) -> None:
        check_sequences(host, ops)

    prop()
