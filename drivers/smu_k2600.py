"""Keithley 2600B series (2601B..2636B), channel A, over TSP.

The pulse and read-train sequences are TSP functions in one script, loaded into the instrument once
per session (``loadscript`` ... ``endscript``, then ``run()`` defines the functions) and afterwards
called with validated arguments only. The functions source nothing but their arguments and 0 V.
Timestamps come from ``smua.nvbuffer1.timestamps``; readings are spaced by ``trigger.timer[1]``.
Loaded scripts survive ``reset()``, so the script is checked for (and loaded) once per session.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from drivers.control import control, parse_bool
from drivers.errors import InstrumentError, ProtocolError
from drivers.smu import (
    Smu,
    compliance_within_limits,
    output_requires_compliance,
    remember_compliance,
    voltage_within_limits,
)

SCRIPT_NAME = "hwloop_v1"
SCRIPT = """\
function hwloop_pulse_v1(amplitude, width)
  smua.source.levelv = 0
  smua.trigger.source.listv({amplitude})
  smua.trigger.source.action = smua.ENABLE
  smua.trigger.measure.action = smua.DISABLE
  smua.trigger.endpulse.action = smua.SOURCE_IDLE
  trigger.timer[1].delay = width
  trigger.timer[1].count = 1
  trigger.timer[1].passthrough = false
  trigger.timer[1].stimulus = smua.trigger.SOURCE_COMPLETE_EVENT_ID
  smua.trigger.endpulse.stimulus = trigger.timer[1].EVENT_ID
  smua.trigger.arm.count = 1
  smua.trigger.count = 1
  smua.source.output = smua.OUTPUT_ON
  smua.trigger.initiate()
  waitcomplete()
end
function hwloop_train_v1(level, every, count)
  smua.nvbuffer1.clear()
  smua.nvbuffer1.collecttimestamps = 1
  smua.source.levelv = level
  smua.source.output = smua.OUTPUT_ON
  trigger.timer[1].delay = every
  trigger.timer[1].count = math.max(count - 1, 1)
  trigger.timer[1].passthrough = true
  trigger.timer[1].stimulus = smua.trigger.ARMED_EVENT_ID
  smua.trigger.source.action = smua.DISABLE
  smua.trigger.measure.i(smua.nvbuffer1)
  smua.trigger.measure.action = smua.ENABLE
  smua.trigger.measure.stimulus = trigger.timer[1].EVENT_ID
  smua.trigger.endpulse.action = smua.SOURCE_HOLD
  smua.trigger.arm.count = 1
  smua.trigger.count = count
  smua.trigger.initiate()
  waitcomplete()
end"""


class Keithley2600B(Smu):
    """Keithley 2600B series SMU, channel A, sourcing voltage and measuring current (TSP)."""

    model: ClassVar[str] = "Keithley 2600B"
    idn_pattern: ClassVar[str] = "Model 26"
    abort_command: ClassVar[str] = "smua.abort()"

    compliance_a = control(
        "print(smua.source.limiti)",
        "smua.source.limiti = {:.6g}",
        "Current limit while sourcing voltage (A).",
        validator=compliance_within_limits,
        on_set=remember_compliance,
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

    _script_loaded = False  # whether this session has checked / loaded the hwloop script

    def _reset_commands(self) -> list[str]:
        return ["reset()", "errorqueue.clear()", "smua.source.func = smua.OUTPUT_DCVOLTS"]

    def set_compliance(self, current_a: float) -> None:
        """Select the DC voltage source, then set the current limit (A)."""
        self.limits.check_compliance(current_a)
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
            raise InstrumentError(
                f"{self.transport.name} reported error {code.strip()}: {message.split(chr(9))[0]}"
            )

    def _measure_current(self) -> float:
        return float(self._parse_floats(self.transport.query("print(smua.measure.i())"), "current")[0])

    def _ensure_script(self) -> None:
        if self._script_loaded:
            return
        present = self.transport.query("print(hwloop_pulse_v1 ~= nil)").strip().lower()
        if present != "true":
            self.transport.write(f"loadscript {SCRIPT_NAME}")
            for line in SCRIPT.splitlines():
                self.transport.write(line)
            self.transport.write("endscript")
            self.transport.write(f"{SCRIPT_NAME}.run()")
        self._script_loaded = True

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        self._ensure_script()
        self.transport.write(f"hwloop_pulse_v1({amplitude_v:.6g}, {width_s:.6g})")
        self._wait_complete(width_s)

    def _read_train(self, read_v: float, every_s: float, count: int) -> tuple[np.ndarray, np.ndarray]:
        self._ensure_script()
        t = self.transport
        t.write(f"hwloop_train_v1({read_v:.6g}, {every_s:.6g}, {count})")
        self._wait_complete(count * every_s)
        reply = t.query(f"printbuffer(1, {count}, smua.nvbuffer1.readings, smua.nvbuffer1.timestamps)")
        values = self._parse_floats(reply, "buffer data")
        return values[1::2].copy(), values[0::2].copy()
