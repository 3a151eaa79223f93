"""Simulated Keithley 2636B (2600B series), channel A, speaking the TSP subset the driver uses.

Scripts are emulated at the level the driver relies on: ``loadscript NAME`` ... ``endscript`` stores the
text, ``NAME.run()`` defines the functions the text declares, and only defined functions can be called
(else a TSP runtime error, as on the instrument). The Lua bodies are not interpreted: the known hwloop
functions (script ``hwloop_v1`` of earlier hwloop versions and ``hwloop_v2``) are executed natively on
the virtual clock, doing what their text does.

What the reference manual says and the driver depends on is modelled:

* settings, loaded scripts and the error queue outlive driver sessions; ``reset()`` resets settings but
  not scripts or the error queue (``errorqueue.clear()`` / ``*CLS`` empty it);
* a script function runs as one command: the parser takes nothing else until it returns (the commands
  wait in the input queue, ``smua.abort()`` too); a device clear ends the command and empties the
  queues, but the SMU's sweep goes on until ``smua.abort()``;
* ``smua.trigger.source.limiti`` (the sweep source limit, default 0 = ``smua.LIMIT_AUTO``) replaces the
  normal current limit from the source action to the end-pulse action when it is not 0
  (``smua.LIMIT_OFF`` disables the limit); only ``reset()`` restores it;
* one reading takes NPLC / line frequency (plus 10 % with autozero AUTO) plus 0.1 ms; AUTOZERO_ONCE takes
  two integrations and then leaves autozero off;
* trigger-timer events that reach the measure event detector while it is already set are dropped (an
  overrun, flagged in ``status.operation.instrument.smua.trigger_overrun`` bit MEAS = 8): a train then
  never reaches its count and waits for ever;
* ``format.data = format.REAL32`` makes ``printbuffer`` answer in binary.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable

import numpy as np

from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DeviceArray
from drivers.sim.emulator import DEFAULT_LINE_FREQUENCY_HZ, NEVER, SmuEmulator, Steps, train_steps
from drivers.sim.faults import Faults

_ASSIGN = re.compile(r"^([\w.]+)\s*=\s*(\S+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
_DEFINED = re.compile(r"^function\s+(\w+)\s*\(", re.MULTILINE)
_NIL_CHECK = re.compile(r"^print\((\w+) ~= nil\)$")
_PRINTBUFFER = re.compile(
    r"^printbuffer\(1,\s*(\d+),\s*smua\.nvbuffer1\.readings,\s*smua\.nvbuffer1\.timestamps\)$"
)
MAX_ABS_VOLTAGE_V = 202.0
LIMIT_RANGE_A = (1e-9, 1.515)  # DC (10.1 A only in pulse regions, not used here)
NPLC_RANGE = (0.001, 25.0)
OVERRUN_MEAS = 8  # bit B3 of status.operation.instrument.smua.trigger_overrun
CONSTANTS = {
    "smua.OUTPUT_ON": 1.0,
    "smua.OUTPUT_OFF": 0.0,
    "smua.OUTPUT_DCVOLTS": 1.0,
    "smua.OUTPUT_DCAMPS": 0.0,
    "smua.LIMIT_AUTO": 0.0,
    "smua.LIMIT_OFF": math.inf,
    "smua.AUTOZERO_OFF": 0.0,
    "smua.AUTOZERO_ONCE": 1.0,
    "smua.AUTOZERO_AUTO": 2.0,
    "smua.DELAY_OFF": 0.0,
    "smua.DELAY_AUTO": -1.0,
    "format.ASCII": 1.0,
    "format.REAL32": 4.0,
    "format.REAL64": 8.0,
}


def _num(x: float) -> str:
    return f"{x:.5e}"


class K2600Emulator(SmuEmulator):
    """A Keithley 2636B with one simulated device on channel A."""

    idn = "Keithley Instruments Inc., Model 2636B, 4471120, 4.0.4"

    def __init__(
        self,
        clock: VirtualClock,
        device: DeviceArray,
        faults: Faults | None = None,
        line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
    ) -> None:
        self.scripts: dict[str, str] = {}  # loaded scripts survive reset(), as on the instrument
        self.functions: set[str] = set()
        self._loading: tuple[str, list[str]] | None = None
        super().__init__(clock, device, faults, line_frequency_hz)

    def reset_state(self) -> None:
        super().reset_state()
        self.buffer: list[tuple[float, float]] = []
        self.nplc = 1.0
        self.autozero = "AUTO"
        self.sweep_limit_a = 0.0  # smua.trigger.source.limiti; 0 = LIMIT_AUTO
        self.in_sweep_pulse = False
        self.format_data = "ASCII"
        self.source_delay_s = 0.0
        self.measure_delay_s = -1.0
        self.overrun_at_s: float | None = None
        self.prepared: tuple[str, Callable[[], Steps]] | None = None  # what hwloop_run_v2() starts

    def dispatch(self, command: str) -> str | None:
        if self._loading is not None:
            name, lines = self._loading
            if command == "endscript":
                self.scripts[name] = "\n".join(lines)
                self._loading = None
            else:
                lines.append(command)
            return None
        if command.startswith("loadscript "):
            self._loading = (command.split()[1], [])
            return None
        return self._statement(command)

    # -- timing and limits ---------------------------------------------------------------------
    def integration_s(self) -> float:
        """NPLC / line frequency (s)."""
        return self.nplc / self.line_frequency_hz

    def reading_time_s(self) -> float:
        return self.integration_s() * (1.1 if self.autozero == "AUTO" else 1.0) + self.measure_overhead_s

    def effective_limit_a(self) -> float:
        if self.in_sweep_pulse and self.sweep_limit_a != 0.0:
            return self.sweep_limit_a
        return self.limit_a

    def _statement(self, command: str) -> str | None:
        simple = {
            "*IDN?": lambda: self.idn,
            "*OPC?": self.opc,
            "*CLS": self.errors.clear,
            "reset()": self._reset,
            "errorqueue.clear()": self.errors.clear,
            "smua.abort()": self.abort,
            "print(errorqueue.count)": lambda: _num(len(self.errors)),
            "print(errorqueue.next())": self._next_error,
            "print(localnode.linefreq)": lambda: _num(self.line_frequency_hz),
            "print(smua.source.limiti)": lambda: _num(self.limit_a),
            "print(smua.source.levelv)": lambda: _num(self.level_v),
            "print(smua.source.output)": lambda: _num(1.0 if self.output_on else 0.0),
            "print(smua.trigger.source.limiti)": lambda: _num(self.sweep_limit_a),
            "print(smua.measure.nplc)": lambda: _num(self.nplc),
            "print(smua.measure.i())": lambda: _num(self.measure()[1]),
            "print(status.operation.instrument.smua.trigger_overrun.event)": self._overrun_event,
        }
        if command in simple:
            reply = simple[command]()
            return reply if isinstance(reply, str) else None
        if m := _ASSIGN.match(command):
            self._assign(m.group(1), m.group(2))
            return None
        if m := _NIL_CHECK.match(command):
            return "true" if m.group(1) in self.functions else "false"
        if m := _PRINTBUFFER.match(command):
            return self._printbuffer(command, int(m.group(1)))
        if command.endswith(".run()") and command[: -len(".run()")] in self.scripts:
            self.functions |= set(_DEFINED.findall(self.scripts[command[: -len(".run()")]]))
            return None
        if m := _CALL.match(command):
            self._call(m.group(1), m.group(2))
            return None
        self.error(-285, f"TSP Syntax error at line 1: unexpected symbol near '{command[:20]}'")
        return None

    def _reset(self) -> None:
        self.abort()
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()

    def _next_error(self) -> str:
        if not self.errors:
            return "0\tQueue Is Empty\t0\t0"
        code, message = self.errors.pop(0)
        return f"{code}\t{message}\t2\t0"

    def _overrun_event(self) -> str:
        """Reading an event register returns it and clears it."""
        hit = self.overrun_at_s is not None and self.overrun_at_s <= self.now_s()
        if hit:
            self.overrun_at_s = None
        return _num(OVERRUN_MEAS if hit else 0)

    def _value(self, text: str) -> float:
        return CONSTANTS[text] if text in CONSTANTS else float(text)

    def _out_of_range(self, what: str, value: float, low: float) -> None:
        """The 2600B's range errors: 1101 "Parameter too large", 1102 "Parameter too small"."""
        if abs(value) < low:
            self.error(1102, f"Parameter too small; {what} {value:g}")
        else:
            self.error(1101, f"Parameter too large; {what} {value:g}")

    def _assign(self, name: str, text: str) -> None:
        try:
            value = self._value(text)
        except ValueError:
            self.error(-285, f"TSP Syntax error: unexpected symbol near '{text[:20]}'")
            return
        if name == "smua.source.limiti":
            if LIMIT_RANGE_A[0] <= value <= LIMIT_RANGE_A[1]:
                self.limit_a = value
            else:
                self._out_of_range("limiti", value, LIMIT_RANGE_A[0])
        elif name == "smua.source.levelv":
            if abs(value) <= MAX_ABS_VOLTAGE_V:
                self.set_source(level_v=value)
            else:
                self._out_of_range("levelv", value, 0.0)
        elif name == "smua.source.output":
            self.set_source(output_on=value == 1.0)
        elif name == "smua.trigger.source.limiti":
            self.sweep_limit_a = value
        elif name == "smua.measure.nplc":
            if NPLC_RANGE[0] <= value <= NPLC_RANGE[1]:
                self.nplc = value
            else:
                self._out_of_range("nplc", value, NPLC_RANGE[0])
        elif name == "smua.measure.autozero":
            self._set_autozero(value)
        elif name == "format.data":
            self.format_data = "ASCII" if value == 1.0 else "REAL"
        elif name == "smua.source.delay":
            self.source_delay_s = value
        elif name == "smua.measure.delay":
            self.measure_delay_s = value
        elif name != "smua.source.func":
            self.error(-286, f"TSP Runtime error: cannot assign {name}")

    def _set_autozero(self, value: float) -> None:
        if value == 1.0:  # ONCE: a reference and a zero measurement, then off
            self.hold_for(2 * self.integration_s())
            self.autozero = "OFF"
        else:
            self.autozero = "AUTO" if value == 2.0 else "OFF"

    def _printbuffer(self, command: str, count: int) -> str | None:
        if not 1 <= count <= len(self.buffer):
            self.error(-286, "TSP Runtime error: index out of range")
            return ""
        t0 = self.buffer[0][0]
        if self.format_data != "ASCII":
            values = [x for t, i in self.buffer[:count] for x in (i, t - t0)]
            self.emit_raw(command, b"#0" + struct.pack(f"<{len(values)}f", *values))
            return None
        return ", ".join(f"{_num(i)}, {_num(t - t0)}" for t, i in self.buffer[:count])

    # -- the hwloop script functions ------------------------------------------------------------
    def _call(self, name: str, arg_text: str) -> None:
        if name not in self.functions:
            self.error(-286, f"TSP Runtime error: attempt to call global '{name}' (a nil value)")
            return
        try:
            args = [float(a) for a in arg_text.split(",")] if arg_text.strip() else []
            if name == "hwloop_pulse_v1":
                amplitude, width = args
                self.start(name, self._pulse(amplitude, width), blocking=True)
            elif name == "hwloop_train_v1":
                level, every, count = args
                self.start(name, self._train(level, every, int(count)), blocking=True)
            elif name == "hwloop_pulse_setup_v2":
                amplitude, width, limit = args
                self.set_source(level_v=0.0)
                self.source_delay_s = 0.0
                self.sweep_limit_a = limit
                self.set_source(output_on=True)
                self.prepared = ("hwloop_pulse_v2", lambda: self._pulse(amplitude, width))
            elif name == "hwloop_train_setup_v2":
                level, every, count, nplc = args
                if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
                    self._out_of_range("nplc", nplc, NPLC_RANGE[0])
                    return
                self.nplc = nplc
                self.measure_delay_s = 0.0
                self._set_autozero(1.0)
                self.format_data = "ASCII"
                self.buffer = []
                self.set_source(level_v=level, output_on=True)
                self.overrun_at_s = None
                self.prepared = ("hwloop_train_v2", lambda: self._train(level, every, int(count)))
            elif name == "hwloop_run_v2":
                if self.prepared is None:
                    self.error(-286, "TSP Runtime error: nothing set up to run")
                    return
                label, steps = self.prepared
                self.start(label, steps(), blocking=True)
            else:
                self.error(-286, f"TSP Runtime error: '{name}' is not simulated")
        except ValueError:
            self.error(-286, f"TSP Runtime error: bad arguments to '{name}'")

    def _pulse(self, amplitude: float, width: float) -> Steps:
        """Source action to ``amplitude`` with the sweep limit switched in, a timer of ``width``, then the
        end-pulse action back to the idle level (0 V) and the normal limit."""
        t = self.now_s()
        self.set_source(level_v=0.0, output_on=True, at_s=t)
        self.in_sweep_pulse = True
        self.set_source(level_v=amplitude, at_s=t)
        t_end = t + self.source_delay_s + width
        try:
            yield t_end
        except GeneratorExit:  # smua.abort(): the end-pulse action happens now
            t_end = min(max(self.now_s(), t), t_end)
        finally:
            self.set_source(level_v=0.0, at_s=t_end)
            self.in_sweep_pulse = False

    def _train(self, level: float, every: float, count: int) -> Steps:
        """Readings triggered by a timer every ``every`` s (the first at the arm event), each through the
        measure event detector: an event arriving while the detector is set is dropped (overrun)."""
        t0 = self.now_s()
        self.set_source(level_v=level, output_on=True, at_s=t0)
        self.buffer = []
        rt = self.reading_time_s()
        starts: list[float] = []
        free_at, latched = t0, False
        for k in range(count):
            event = t0 + k * every
            if latched and free_at <= event:
                starts.append(free_at)
                free_at, latched = free_at + rt, False
            if free_at <= event:
                starts.append(event)
                free_at = event + rt
            elif not latched:
                latched = True
            elif self.overrun_at_s is None:
                self.overrun_at_s = event
        if latched:
            starts.append(free_at)
        yield from train_steps(self, np.asarray(starts), self.buffer)
        if len(starts) < count:  # the SMU waits for measure events the timer will never send
            yield NEVER
