"""Keysight B2900 series (B2901A..B2912A), channel 1: SCPI pulse output and timer-triggered reads.

Pulse: pulse shape, fixed voltage mode, base ``:SOUR:VOLT`` 0 V, peak ``:SOUR:VOLT:TRIG``,
``:SOUR:PULS:WIDT`` (50 us .. 100 ks, refused outside before sending), one arm and one automatic trigger
(``:ARM:COUN 1``, ``:TRIG:COUN 1``: a leftover count would give several pulses per ``:INIT``), no trigger
delays. Read train: DC shape with both the immediate and triggered level at the read voltage (so no stale
pulse peak can ever be applied), integration ``nplc``, ASCII data, ``:TRIG:SOUR TIM`` with period
every_s, and ``:FETC:ARR:CURR?`` / ``:FETC:ARR:TIME?`` for the readings and their instrument timestamps.
Errors are read before ``:INIT``: a setting the instrument refused stops the sequence before it runs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from drivers.control import control, parse_bool
from drivers.safety import HardwareLimits
from drivers.smu import (
    Smu,
    compliance_within_limits,
    forget_compliance,
    output_requires_compliance,
    remember_compliance,
    voltage_within_limits,
)


def _width_within_limits(smu: Smu, width_s: float) -> float:
    return smu.hardware.check_pulse(0.0, smu.limits.check_pulse(0.0, width_s)[1])[1]


class KeysightB2900(Smu):
    """Keysight B2900 series SMU, channel 1, sourcing voltage and measuring current (SCPI)."""

    model: ClassVar[str] = "Keysight B2900"
    idn_pattern: ClassVar[str] = ",B29"
    abort_command: ClassVar[str] = ":ABOR (@1)"
    # each limit's source (or how to measure it): docs/instruments.md, "Hardware limits the drivers use"
    hardware: ClassVar[HardwareLimits] = HardwareLimits(
        instrument="Keysight B2900",
        max_abs_voltage_v=210.0,
        min_compliance_a=1e-12,
        max_compliance_a=3.03,  # DC, up to 6 V (less at higher voltages; the instrument refuses beyond)
        min_pulse_width_s=50e-6,  # minimum programmable pulse width
        max_pulse_width_s=100_000.0,
        min_nplc=4e-4,
        max_nplc=100.0,
    )
    read_overhead_s: ClassVar[float] = 0.2e-3  # A/D and trigger time per reading, upper bound
    max_train_points: ClassVar[int] = 100_000  # trace buffer per channel (data sheet: 100,000 points)

    compliance_a = control(
        ":SENS:CURR:PROT?",
        ":SENS:CURR:PROT {:.6g}",
        "Current compliance (A).",
        validator=compliance_within_limits,
        on_set=remember_compliance,
        on_unknown=forget_compliance,
    )
    level_v = control(
        ":SOUR:VOLT?",
        ":SOUR:VOLT {:.6g}",
        "Immediate (DC / pulse base) level (V).",
        validator=voltage_within_limits,
    )
    triggered_level_v = control(
        ":SOUR:VOLT:TRIG?",
        ":SOUR:VOLT:TRIG {:.6g}",
        "Level applied on a trigger: the pulse peak in pulse shape (V).",
        validator=voltage_within_limits,
    )
    pulse_width_s = control(
        ":SOUR:PULS:WIDT?", ":SOUR:PULS:WIDT {:.6g}", "Pulse width (s).", validator=_width_within_limits
    )
    output_enabled = control(
        ":OUTP?",
        ":OUTP {}",
        "Output state; ON needs compliance set first.",
        validator=output_requires_compliance,
        parse=parse_bool,
        to_wire={True: "ON", False: "OFF"},
    )

    def _reset_commands(self) -> list[str]:
        return ["*RST", "*CLS", ":SOUR:FUNC:MODE VOLT", ':SENS:FUNC "CURR"']  # *RST keeps the error queue

    def set_compliance(self, current_a: float) -> None:
        """Select voltage source / current measure, then set the compliance (A)."""
        self._checked_compliance(current_a)
        self._begin()
        self.transport.write(":SOUR:FUNC:MODE VOLT")
        self.transport.write(':SENS:FUNC "CURR"')
        super().set_compliance(current_a)

    def _check_errors(self) -> None:
        self._scpi_check_errors(":SYST:ERR?")

    def _measure_current(self, timeout_s: float) -> float:
        reply = self.transport.query(":MEAS:CURR? (@1)", timeout_s=timeout_s)
        return float(self._parse_floats(reply, "current")[0])

    def _single_shot(self) -> None:
        """One arm, automatic triggers, no trigger delays (what a previous program may have changed)."""
        t = self.transport
        t.write(":TRIG:TRAN:DEL 0")
        t.write(":TRIG:ACQ:DEL 0")
        t.write(":ARM:SOUR AINT")
        t.write(":ARM:COUN 1")

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        t = self.transport
        duration = width_s + self.reading_time_s()  # the pulse and the acquisition it triggers
        t.write(":SOUR:FUNC:SHAP PULS")
        t.write(":SOUR:VOLT:MODE FIX")
        self.level_v = 0.0
        self.triggered_level_v = amplitude_v
        t.write(":SOUR:PULS:DEL 0")
        self.pulse_width_s = width_s
        t.write(":SENS:CURR:APER:AUTO OFF")
        t.write(f":SENS:CURR:NPLC {self.nplc:.6g}")
        self._single_shot()
        t.write(":TRIG:SOUR AINT")
        t.write(":TRIG:COUN 1")
        self.output_enabled = True
        self._expect_output_on_at_zero("before the pulse")
        self._check_errors()  # before arming: a refused setting must not fire with the old one
        t.write(":INIT (@1)")
        self._wait_complete(duration)

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.transport
        t.write(":SOUR:FUNC:SHAP DC")
        t.write(":SOUR:VOLT:MODE FIX")
        self.level_v = read_v
        self.triggered_level_v = read_v
        t.write(":SENS:CURR:APER:AUTO OFF")
        t.write(f":SENS:CURR:NPLC {self.nplc:.6g}")
        t.write(":FORM:DATA ASC")
        self.output_enabled = True
        self._single_shot()
        t.write(":TRIG:SOUR TIM")
        t.write(f":TRIG:TIM {every_s:.6g}")
        t.write(f":TRIG:COUN {count}")
        self._check_errors()
        t.write(":INIT (@1)")
        self._wait_complete(self._train_duration_s(every_s, count))
        i_a = self._parse_floats(t.query(":FETC:ARR:CURR? (@1)"), "currents")
        t_s = self._parse_floats(t.query(":FETC:ARR:TIME? (@1)"), "timestamps")
        return t_s, i_a
