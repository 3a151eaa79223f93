"""Keithley 2450 SourceMeter: SCPI, hardware-timed pulses and read trains through the trigger model.

Pulse: a two-entry source configuration list. A configuration-list entry stores the source settings in
force, the output state (``:OUTP``) and the output-off mode (``:OUTP:SMOD``) included (2450 reference
manual, ":OUTPut[1][:STATe]" and "smu.source.offmode": "Where saved: Source configuration list"), and
recalling it restores them. So entry 1 is the amplitude stored with the output **off** (nothing is
sourced while it is stored) and entry 2 is 0 V stored with the output **on**; the trigger model recalls
entry 1 (output off, at the user's off mode; level = amplitude), switches the output on, waits
``width_s`` and recalls entry 2: the pulse ends with the output on at 0 V, as on the 2600B and B2900.
The source auto delay (1 ms, up to 50 ms on the nA ranges) is stored in each entry too and would hold
the amplitude that much longer than asked, so auto delay is switched off and the delay set to 0 first.
Configuration lists outlive sessions (until ``*RST`` or power-off) and creating an existing one is error
-222, so a session's first pulse asks the catalog whether the list is there and deletes it first; the
list's size is checked before the trigger model is armed, so a stale list is never run.
Read train: the size of ``defbuffer1`` (``:TRAC:POIN?``; it fills continuously, so a longer train would
overwrite its first readings) is read and a longer train refused before anything sources; integration
``nplc`` set explicitly, autozero once then off, source readback off, then
MEASURE -> DELAY -> BRANCH back ``count`` times, readings with relative timestamps in ``defbuffer1``. The
delay is ``every_s`` minus the integration time, so readings are ``every_s`` plus the instrument's
per-reading overhead (well under a millisecond) apart; use the returned instrument timestamps, never the
nominal interval.
Errors are read before ``:INIT``: a setting the instrument refused stops the sequence before it runs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from drivers.control import control, parse_bool
from drivers.errors import InstrumentError, InstrumentStateError, ProtocolError
from drivers.safety import HardwareLimits
from drivers.smu import (
    Smu,
    compliance_within_limits,
    forget_compliance,
    output_requires_compliance,
    remember_compliance,
    voltage_within_limits,
)

PULSE_LIST = "HWLOOP_PULSE"
PULSE_LIST_SIZE = 2  # [amplitude, 0 V]
BUFFER = "defbuffer1"
MAX_CATALOG_NAMES = 1000  # a catalog walk longer than this is a misbehaving link, not an instrument


def _scpi_string(reply: str) -> str:
    """A SCPI string reply without its quotes ('"NAME"' or 'NAME' -> 'NAME'; '""' -> '')."""
    return reply.strip().strip('"')


def _count(reply: str) -> int:
    return int(float(reply))


class Keithley2450(Smu):
    """Keithley 2450 sourcing voltage, measuring current (SCPI command set)."""

    model: ClassVar[str] = "Keithley 2450"
    idn_pattern: ClassVar[str] = "MODEL 2450"
    abort_command: ClassVar[str] = ":ABOR"
    # each limit's source (or how to measure it): docs/instruments.md, "Hardware limits the drivers use"
    hardware: ClassVar[HardwareLimits] = HardwareLimits(
        instrument="Keithley 2450",
        max_abs_voltage_v=210.0,
        min_compliance_a=1e-9,
        max_compliance_a=1.05,
        min_pulse_width_s=50e-6,  # trigger-model timing resolution and source settling, conservatively
        max_pulse_width_s=10_000.0,  # longest constant delay block
        min_nplc=0.01,
        max_nplc=10.0,
    )
    read_overhead_s: ClassVar[float] = 0.5e-3  # A/D, buffer, trigger-model time per reading (upper bound)
    max_train_points: ClassVar[int] = 100_000  # defbuffer1's default size; its actual size is read back

    compliance_a = control(
        ":SOUR:VOLT:ILIM?",
        ":SOUR:VOLT:ILIM {:.6g}",
        "Current limit while sourcing voltage (A).",
        validator=compliance_within_limits,
        on_set=remember_compliance,
        on_unknown=forget_compliance,
    )
    level_v = control(
        ":SOUR:VOLT?", ":SOUR:VOLT {:.6g}", "Source level (V).", validator=voltage_within_limits
    )
    output_enabled = control(
        ":OUTP?",
        ":OUTP {}",
        "Output relay state; ON needs compliance set first.",
        validator=output_requires_compliance,
        parse=parse_bool,
        to_wire={True: "ON", False: "OFF"},
    )

    source_list_catalog = control(
        ":SOUR:CONF:LIST:CAT?",
        None,
        "Next stored source configuration list name; '' after the last (the walk then starts over).",
        parse=_scpi_string,
    )
    pulse_list_size = control(
        f':SOUR:CONF:LIST:SIZE? "{PULSE_LIST}"',
        None,
        "Configuration indexes in the pulse list.",
        parse=_count,
    )

    buffer_capacity = control(
        f':TRAC:POIN? "{BUFFER}"',
        None,
        "Readings defbuffer1 holds (it fills continuously: a longer train would overwrite its start).",
        parse=_count,
    )

    # Whether the pulse list is on the instrument: None = unknown (ask the catalog), else known.
    _list_created: bool | None = None

    def reset(self) -> None:
        """``*RST`` (output off, configuration lists gone); compliance must be set again."""
        super().reset()
        self._list_created = False

    def reconnect(self) -> None:
        """Reopen a dropped link; the instrument may have been power-cycled, so ask for the list again."""
        self._list_created = None
        super().reconnect()

    def _pulse_list_stored(self) -> bool:
        """Whether the instrument holds the pulse list, from ``CATalog?`` walks (one name per query).

        The walk's position is the instrument's and outlives sessions: the first walk may start where an
        earlier session stopped, so if it misses the list a second, complete walk decides.
        """
        for _ in range(2):
            names = set()
            for _ in range(MAX_CATALOG_NAMES):
                name = self.source_list_catalog
                if not name:
                    break
                names.add(name)
            else:
                raise ProtocolError(f"{self.transport.name}: configuration list catalog does not end")
            if PULSE_LIST in names:
                return True
        return False

    def _reset_commands(self) -> list[str]:
        return ["*RST", "*CLS", ":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"']  # *RST keeps the error queue

    def set_compliance(self, current_a: float) -> None:
        """Select voltage source / current measure, then set the current limit (A)."""
        self._checked_compliance(current_a)
        self._begin()
        self.transport.write(":SOUR:FUNC VOLT")
        self.transport.write(':SENS:FUNC "CURR"')
        super().set_compliance(current_a)

    def _check_errors(self) -> None:
        self._scpi_check_errors(":SYST:ERR?")

    def _measure_current(self, timeout_s: float) -> float:
        reply = self.transport.query(":MEAS:CURR?", timeout_s=timeout_s)
        return float(self._parse_floats(reply, "current")[0])

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        t = self.transport
        self.output_enabled = False
        self.level_v = 0.0
        t.write(":SOUR:VOLT:DEL:AUTO OFF")  # stored in each list entry: no settling delay in the pulse
        t.write(":SOUR:VOLT:DEL 0")
        if self._list_created is None:
            self._list_created = self._pulse_list_stored()
        if self._list_created:
            t.write(f':SOUR:CONF:LIST:DEL "{PULSE_LIST}"')
        self._list_created = None  # unknown until the new list is verified
        t.write(f':SOUR:CONF:LIST:CRE "{PULSE_LIST}"')
        self.level_v = amplitude_v  # the output is off: nothing is sourced while entry 1 is stored
        t.write(f':SOUR:CONF:LIST:STOR "{PULSE_LIST}"')  # entry 1: amplitude, output off
        self.level_v = 0.0
        self.output_enabled = True
        t.write(f':SOUR:CONF:LIST:STOR "{PULSE_LIST}"')  # entry 2: 0 V, output on (how the pulse ends)
        size = self.pulse_list_size
        self._list_created = True
        if size != PULSE_LIST_SIZE:  # not the list just stored: never arm the trigger model on it
            self._check_errors()
            raise InstrumentError(
                f"{t.name}: pulse list {PULSE_LIST} has {size} entries, expected {PULSE_LIST_SIZE}"
            )
        t.write(':TRIG:LOAD "Empty"')
        t.write(f':TRIG:BLOC:CONF:REC 1, "{PULSE_LIST}", 1')
        t.write(":TRIG:BLOC:SOUR:STAT 2, ON")
        t.write(f":TRIG:BLOC:DEL:CONS 3, {width_s:.6g}")
        t.write(f':TRIG:BLOC:CONF:NEXT 4, "{PULSE_LIST}"')
        self._expect_output_on_at_zero("before the pulse")
        self._check_errors()  # before arming: a refused setting must not fire with the old one
        t.write(":INIT")
        self._wait_complete(width_s)

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        t = self.transport
        delay = max(every_s - self.integration_s(), 0.0)  # readings at least every_s apart
        capacity = self.buffer_capacity  # before anything sources
        if count > capacity:
            raise InstrumentStateError(
                f"{t.name}: {BUFFER} holds {capacity} readings; a train of {count} would overwrite its "
                f"first readings (take fewer, or enlarge it with :TRAC:POIN)"
            )
        t.write(f":SENS:CURR:NPLC {self.nplc:.6g}")
        t.write(":SENS:CURR:AZER OFF")
        t.write(":SOUR:VOLT:READ:BACK OFF")
        self.level_v = read_v
        self.output_enabled = True
        t.write(":SENS:AZER:ONCE")
        t.write(f':TRAC:CLE "{BUFFER}"')
        t.write(':TRIG:LOAD "Empty"')
        t.write(f':TRIG:BLOC:MEAS 1, "{BUFFER}"')
        t.write(f":TRIG:BLOC:DEL:CONS 2, {delay:.6g}")
        t.write(f":TRIG:BLOC:BRAN:COUN 3, {count}, 1")
        self._check_errors()
        t.write(":INIT")
        self._wait_complete(self._train_duration_s(every_s, count))
        values = self._parse_floats(t.query(f':TRAC:DATA? 1, {count}, "{BUFFER}", READ, REL'), "buffer data")
        return values[1::2].copy(), values[0::2].copy()
