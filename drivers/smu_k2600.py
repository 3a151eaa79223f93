"""Keithley 2600B series (2601B..2636B), channel A, over TSP.

The pulse and read-train sequences are TSP functions in one script, loaded into the instrument once
per session (``loadscript`` ... ``endscript``, then ``run()`` defines the functions) and afterwards
called with validated arguments only. The functions source nothing but their arguments and 0 V.
Loaded scripts survive ``reset()``, so the script is checked for (and loaded) once per session.

Each sequence is a setup function that sets every setting the sequence depends on (the sweep source
limit ``smua.trigger.source.limiti`` to the user's compliance, source and measure delays, the integration
time, autozero once, ``format.data`` ASCII, the reading buffer, the trigger stimuli) with the output
left as it is; then the driver reads the error queue, and only then switches the output on and calls
``hwloop_run_v3()``, which arms and waits (``waitcomplete()``). So a refused setting never sources.

Read trains store readings with timestamps in ``smua.nvbuffer1`` (2600B reference manual, "Reading
buffers" and ``bufferVar.*``): the buffer is cleared, then set to fill once (``smua.FILL_ONCE``: a full
buffer discards new readings, it never wraps), no source values, timestamps on, and a timestamp
resolution chosen for the train: 1 us, doubled until 2^32 steps cover the train (the instrument rounds
the resolution to a power of 2 us and its timestamps are unique for 71 minutes at 1 us). Its
``capacity``, which timestamps reduce, is read back and a longer train refused before the output goes
on. ``format.asciiprecision`` = 12 prints a timestamp of up to 2^32 steps to a hundredth of a step (the
default of 6 digits would quantise timestamps past 10 s to 100 us). Readings are paced by
``trigger.timer[1]``, whose events are dropped (overrun) if one arrives while the measure event detector
is still set; the interval is therefore refused below one reading time, and if a train still does not
finish in time the driver clears the device, aborts, and reports the overrun register.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from drivers.control import control, parse_bool
from drivers.errors import (
    InstrumentError,
    InstrumentRejected,
    InstrumentStateError,
    InstrumentTimeout,
    ProtocolError,
)
from drivers.safety import HardwareLimits
from drivers.smu import (
    Smu,
    compliance_within_limits,
    forget_compliance,
    output_requires_compliance,
    remember_compliance,
    voltage_within_limits,
)

SCRIPT_NAME = "hwloop_v3"
SCRIPT = """\
function hwloop_pulse_setup_v3(amplitude, width, limit)
  smua.source.func = smua.OUTPUT_DCVOLTS
  smua.source.levelv = 0
  smua.source.delay = 0
  smua.trigger.source.limiti = limit
  smua.trigger.source.listv({amplitude})
  smua.trigger.source.action = smua.ENABLE
  smua.trigger.measure.action = smua.DISABLE
  smua.trigger.endpulse.action = smua.SOURCE_IDLE
  smua.trigger.arm.stimulus = 0
  smua.trigger.source.stimulus = 0
  trigger.timer[1].reset()
  trigger.timer[1].delay = width
  trigger.timer[1].count = 1
  trigger.timer[1].passthrough = false
  trigger.timer[1].stimulus = smua.trigger.SOURCE_COMPLETE_EVENT_ID
  smua.trigger.endpulse.stimulus = trigger.timer[1].EVENT_ID
  smua.trigger.arm.count = 1
  smua.trigger.count = 1
end
function hwloop_train_setup_v3(level, every, count, nplc, resolution)
  smua.source.func = smua.OUTPUT_DCVOLTS
  smua.measure.nplc = nplc
  smua.measure.delay = 0
  smua.measure.autozero = smua.AUTOZERO_ONCE
  format.data = format.ASCII
  format.asciiprecision = 12
  smua.nvbuffer1.clear()
  smua.nvbuffer1.appendmode = 0
  smua.nvbuffer1.collectsourcevalues = 0
  smua.nvbuffer1.collecttimestamps = 1
  smua.nvbuffer1.timestampresolution = resolution
  smua.nvbuffer1.fillmode = smua.FILL_ONCE
  smua.source.levelv = level
  trigger.timer[1].reset()
  trigger.timer[1].delay = every
  trigger.timer[1].count = math.max(count - 1, 1)
  trigger.timer[1].passthrough = true
  trigger.timer[1].stimulus = smua.trigger.ARMED_EVENT_ID
  smua.trigger.arm.stimulus = 0
  smua.trigger.source.action = smua.DISABLE
  smua.trigger.measure.i(smua.nvbuffer1)
  smua.trigger.measure.action = smua.ENABLE
  smua.trigger.measure.stimulus = trigger.timer[1].EVENT_ID
  smua.trigger.endpulse.action = smua.SOURCE_HOLD
  smua.trigger.arm.count = 1
  smua.trigger.count = count
  local overrun = status.operation.instrument.smua.trigger_overrun.event  -- reading clears it
end
function hwloop_run_v3()
  smua.trigger.initiate()
  waitcomplete()
end"""
OVERRUN_EVENT = "print(status.operation.instrument.smua.trigger_overrun.event)"
OVERRUN_MEAS = 8  # bit B3: the measure event detector was already set when a trigger arrived
FINEST_TIMESTAMP_S = 1e-6  # bufferVar.timestampresolution: finest (and default) resolution
TIMESTAMP_STEPS = 2**32  # "unique timestamps for up to 71 minutes" at 1 us: 2^32 us = 71.6 min


def timestamp_resolution_s(duration_s: float) -> float:
    """The finest timestamp resolution (s; 1 us times a power of 2, as the instrument rounds it) whose
    2^32 steps cover a train of ``duration_s`` (s), so its timestamps never roll over."""
    span = duration_s / (TIMESTAMP_STEPS * FINEST_TIMESTAMP_S)  # > 1: 1 us steps would roll over
    doublings = math.ceil(math.log2(span)) if span > 1 else 0
    return FINEST_TIMESTAMP_S * 2**doublings


class Keithley2600B(Smu):
    """Keithley 2600B series SMU, channel A, sourcing voltage and measuring current (TSP)."""

    model: ClassVar[str] = "Keithley 2600B"
    idn_pattern: ClassVar[str] = "Model 26"
    abort_command: ClassVar[str] = "smua.abort()"
    clear_status_command: ClassVar[str] = "errorqueue.clear()"
    line_frequency_query: ClassVar[str] = "print(localnode.linefreq)"
    nplc_command: ClassVar[str] = "smua.measure.nplc = {:.6g}"
    # each limit's source (or how to measure it): docs/instruments.md, "Hardware limits the drivers use"
    hardware: ClassVar[HardwareLimits] = HardwareLimits(
        instrument="Keithley 2600B",
        max_abs_voltage_v=202.0,  # 200 V range (2601B/02B/04B: 40 V; the instrument refuses beyond)
        min_compliance_a=1e-9,
        max_compliance_a=1.515,  # DC region (3 A on the 2601B/02B/04B)
        min_pulse_width_s=100e-6,  # minimum programmable pulse width
        max_pulse_width_s=100_000.0,  # trigger timer delay
        min_nplc=0.001,
        max_nplc=25.0,
    )
    read_overhead_s: ClassVar[float] = 0.2e-3  # A/D, buffer and trigger time per reading, upper bound
    # The specifications' buffer size with timestamps and source values (> 60,000 samples); the train's
    # own buffer configuration (no source values) is checked against ``buffer_capacity`` read back.
    max_train_points: ClassVar[int] = 60_000

    compliance_a = control(
        "print(smua.source.limiti)",
        "smua.source.limiti = {:.6g}",
        "Current limit while sourcing voltage (A).",
        validator=compliance_within_limits,
        on_set=remember_compliance,
        on_unknown=forget_compliance,
    )
    level_v = control(
        "print(smua.source.levelv)",
        "smua.source.levelv = {:.6g}",
        "Source level (V).",
        validator=voltage_within_limits,
    )
    output_enabled = control(
        "print(smua.source.output)",
        "smua.source.output = {}",
        "Output state; ON needs compliance set first.",
        validator=output_requires_compliance,
        parse=parse_bool,
        to_wire={True: "smua.OUTPUT_ON", False: "smua.OUTPUT_OFF"},
    )

    buffer_capacity = control(
        "print(smua.nvbuffer1.capacity)",
        None,
        "Readings smua.nvbuffer1 can hold with its present collection settings (timestamps reduce it).",
        parse=lambda reply: int(float(reply)),
    )

    _script_loaded = False  # whether this session has checked / loaded the hwloop script

    def _reset_commands(self) -> list[str]:
        return ["reset()", "errorqueue.clear()", "smua.source.func = smua.OUTPUT_DCVOLTS"]

    def set_compliance(self, current_a: float) -> None:
        """Select the DC voltage source, then set the current limit (A)."""
        self._checked_compliance(current_a)
        self._begin()
        self.transport.write("smua.source.func = smua.OUTPUT_DCVOLTS")
        super().set_compliance(current_a)

    def _check_errors(self) -> None:
        reply = self.transport.query("print(errorqueue.count)")
        try:
            count = int(float(reply))
        except ValueError:
            raise ProtocolError(f"{self.transport.name}: unreadable error count {reply[:60]!r}") from None
        if count:
            code, _, message = self.transport.query("print(errorqueue.next())").partition("\t")
            raise InstrumentRejected(
                f"{self.transport.name} reported error {code.strip()}: {message.split(chr(9))[0]}"
            )

    def _measure_current(self, timeout_s: float) -> float:
        reply = self.transport.query("print(smua.measure.i())", timeout_s=timeout_s)
        return float(self._parse_floats(reply, "current")[0])

    def _ensure_script(self) -> None:
        if self._script_loaded:
            return
        present = self.transport.query("print(hwloop_run_v3 ~= nil)").strip().lower()
        if present != "true":
            self.transport.write(f"loadscript {SCRIPT_NAME}")
            for line in SCRIPT.splitlines():
                self.transport.write(line)
            self.transport.write("endscript")
            self.transport.write(f"{SCRIPT_NAME}.run()")
        self._script_loaded = True

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        self._ensure_script()
        limit = self.compliance_set_a
        assert limit is not None  # Smu.pulse checked it
        self.transport.write(f"hwloop_pulse_setup_v3({amplitude_v:.6g}, {width_s:.6g}, {limit:.6g})")
        self._check_errors()  # before the output goes on: a refused setting must not fire with the old one
        self.output_enabled = True
        self._expect_output_on_at_zero("before the pulse")
        self.transport.write("hwloop_run_v3()")
        self._wait_complete(width_s)

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        self._ensure_script()
        t = self.transport
        duration = self._train_duration_s(every_s, count)
        resolution = timestamp_resolution_s(duration)
        t.write(
            f"hwloop_train_setup_v3({read_v:.6g}, {every_s:.6g}, {count}, {self.nplc:.6g}, {resolution:.6g})"
        )
        self._check_errors()  # before the output goes on
        capacity = self.buffer_capacity
        if count > capacity:
            raise InstrumentStateError(
                f"{t.name}: smua.nvbuffer1 holds {capacity} readings with timestamps; a train of {count} "
                f"would lose readings (take fewer)"
            )
        self.output_enabled = True
        t.write("hwloop_run_v3()")
        try:
            self._wait_complete(duration)
        except InstrumentTimeout:
            self._raise_if_overrun()
            raise
        reply = t.query(f"printbuffer(1, {count}, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps)")
        values = self._parse_floats(reply, "buffer data")
        return values[1::2].copy(), values[0::2].copy()

    def _raise_if_overrun(self) -> None:
        """After a train that did not finish: free the instrument, stop the sweep, and name an overrun."""
        t = self.transport
        t.clear()  # ends the waiting script command and drops its late *OPC? reply
        t.write(self.abort_command)
        register = int(float(t.query(OVERRUN_EVENT)))
        if register & OVERRUN_MEAS:
            raise InstrumentError(
                f"{t.name}: trigger overrun: readings took longer than the read interval, timer events "
                f"were dropped and the train could not finish (raise the interval or lower the NPLC)"
            )
