"""Simulated Keithley 2636B (2600B series), channel A, speaking the TSP subset the driver uses.

Scripts are emulated at the level the driver relies on: ``loadscript NAME`` ... ``endscript`` stores the
text, ``NAME.run()`` defines the functions the text declares, and only defined functions can be called
(else a TSP runtime error, as on the instrument). The Lua bodies are not interpreted: the known hwloop
functions (scripts ``hwloop_v1`` and ``hwloop_v2`` of earlier hwloop versions, and ``hwloop_v3``) are
executed natively on the virtual clock, doing what their text does.

``K2600Emulator(model="2611B")`` picks the model (default 2636B); its voltage and current-limit ranges
follow the model (``MODELS``).

What the reference manual says and the driver depends on is modelled, each rule with its section of the
*Series 2600B Reference Manual* (2600BS-901-01; "RM" below) or the 2600B specifications:

* settings, loaded scripts and the error queue outlive driver sessions; ``reset()`` resets settings but
  not scripts or the error queue (``errorqueue.clear()`` / ``*CLS`` empty it) (RM: ``reset()``,
  "Error queue", "Loading a script");
* a script function runs as one command: the parser takes nothing else until it returns (the commands
  wait in the input queue, ``smua.abort()`` too); a device clear ends the command and empties the
  queues, but the SMU's sweep goes on until ``smua.abort()`` (RM: "Remote command interface",
  ``waitcomplete()``, ``smuX.abort()``);
* ``smua.trigger.source.limiti`` (the sweep source limit, default 0 = ``smua.LIMIT_AUTO``) replaces the
  normal current limit from the source action to the end-pulse action when it is not 0
  (``smua.LIMIT_OFF`` disables the limit); only ``reset()`` restores it (RM: ``smuX.trigger.source.limitY``);
* one reading takes NPLC / line frequency (plus 10 % with autozero AUTO) plus 0.1 ms; AUTOZERO_ONCE takes
  two integrations and then leaves autozero off (RM: ``smuX.measure.nplc``, ``smuX.measure.autozero``; the
  10 % and 0.1 ms are this simulation's estimates, unverified);
* ``smua.nvbuffer1`` (``NvBuffer``) has a capacity that timestamps and source values reduce, fill modes
  (FILL_ONCE discards readings past the capacity, FILL_WINDOW wraps at ``fillcount``), a timestamp
  resolution rounded to a power of 2 us, timestamps that roll over after 2^32 steps, and attributes that
  only change on an empty buffer and that ``reset()`` leaves alone (RM: "Reading buffers", ``bufferVar.*``;
  specifications: "Reading buffers"; constants below);
* ``print`` and ``printbuffer`` print ``format.asciiprecision`` significant digits (default 6) (RM:
  ``format.asciiprecision``);
* trigger-timer events that reach the measure event detector while it is already set are dropped (an
  overrun, flagged in ``status.operation.instrument.smua.trigger_overrun`` bit MEAS = 8): a train then
  never reaches its count and waits for ever (RM: "Triggering", event detectors; "Status model",
  trigger overrun registers);
* ``format.data = format.REAL32`` makes ``printbuffer`` answer in binary (RM: ``format.data``);
* a 2601B..2614B refuses a current limit below 10 nA with 1102 (``MODELS``; RM: "Error summary").
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterable

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
# Per model: largest |source level| (V) and the current-limit range smua.source.limiti accepts (A), DC.
# Limit minimum: 10 nA on the 2601B..2614B, 100 pA on the 2634B..2636B (the models' lowest current
# ranges; QCoDeS Keithley 2600 driver, _ilimit_minmax). Maximum: 3 A on the 40 V models, 1.5 A on the
# 200 V models (2600B specifications, DC regions). Levels: the largest voltage range (40 V / 200 V)
# plus 1 % over-range (unverified: measure on the bench with smua.source.levelv and the error queue).
MODELS: dict[str, tuple[float, tuple[float, float]]] = {
    "2601B": (40.4, (10e-9, 3.0)),
    "2602B": (40.4, (10e-9, 3.0)),
    "2604B": (40.4, (10e-9, 3.0)),
    "2611B": (202.0, (10e-9, 1.5)),
    "2612B": (202.0, (10e-9, 1.5)),
    "2614B": (202.0, (10e-9, 1.5)),
    "2634B": (202.0, (100e-12, 1.5)),
    "2635B": (202.0, (100e-12, 1.5)),
    "2636B": (202.0, (100e-12, 1.5)),
}
NPLC_RANGE = (0.001, 25.0)
ASCII_PRECISION_RANGE = (1, 16)  # format.asciiprecision: "must be a number between 1 and 16"; default 6
FILL_ONCE, FILL_WINDOW = 0, 1
# Reading-buffer memory: the specifications give "> 140,000 samples" without timestamps and source values
# and "> 60,000" with both; each of the two needs "four extra bytes of storage per reading" (reference
# manual, bufferVar.collectsourcevalues / collecttimestamps). 6 bytes a reading and 840,000 bytes meet all
# three: 140,000 bare, 84,000 with timestamps, 60,000 with both. The instrument's capacity may be larger
# (unverified: measure on the bench with print(smua.nvbuffer1.capacity) for each collection setting).
BUFFER_BYTES = 840_000
READING_BYTES = 6
COLLECTION_BYTES = 4
FINEST_TIMESTAMP_S = 1e-6  # bufferVar.timestampresolution: "minimum 1 us", default 1e-6
TIMESTAMP_STEPS = 2**32  # "unique timestamps for up to 71 minutes" at 1 us: a 32-bit count of steps
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
    "smua.FILL_ONCE": float(FILL_ONCE),
    "smua.FILL_WINDOW": float(FILL_WINDOW),
    "format.ASCII": 1.0,
    "format.REAL32": 4.0,
    "format.REAL64": 8.0,
}


def _num(x: float, precision: int = 6) -> str:
    """A number as ``print`` gives it with ``format.asciiprecision`` significant digits."""
    return f"{x:.{precision - 1}e}"


class NvBuffer:
    """``smua.nvbuffer1`` (2600B reference manual, "Reading buffers" and the ``bufferVar.*`` attributes).

    ``stored`` holds (timestamp s, reading A) in buffer index order, as ``printbuffer`` returns them.
    """

    def __init__(self) -> None:
        self.appendmode = False
        self.collectsourcevalues = False  # "initialized to off" when the buffer is created
        self.collecttimestamps = False
        self.timestampresolution_s = FINEST_TIMESTAMP_S
        self.fillmode = FILL_ONCE
        self.fillcount = 0  # "If the value is 0, then the capacity of the buffer is used"
        self.stored: list[tuple[float, float]] = []
        self._t0: float | None = None
        self._next = 0

    def capacity(self) -> int:
        """Readings the buffer holds: timestamps and source values each need four more bytes a reading."""
        per_reading = READING_BYTES + COLLECTION_BYTES * (self.collecttimestamps + self.collectsourcevalues)
        return BUFFER_BYTES // per_reading

    def clear(self) -> None:
        """``bufferVar.clear()``: readings gone, attributes kept."""
        self.stored = []
        self._t0 = None
        self._next = 0

    def set_resolution(self, seconds: float) -> None:
        """ "The value specified ... will be rounded to an even power of 2 us" (e.g. 0.001 -> 0.001024 s)."""
        self.timestampresolution_s = FINEST_TIMESTAMP_S * 2.0 ** round(
            math.log2(seconds / FINEST_TIMESTAMP_S)
        )

    def extend(self, readings: Iterable[tuple[float, float]]) -> None:
        """Store readings (instrument time s, current A) by the fill mode; timestamps count resolution
        steps from the first reading since the last clear, modulo 2^32."""
        window = (
            self.capacity()
            if self.fillmode == FILL_ONCE
            else min(self.fillcount or self.capacity(), self.capacity())
        )
        for t_s, i_a in readings:
            if self._t0 is None:
                self._t0 = t_s
            steps = math.floor((t_s - self._t0) / self.timestampresolution_s + 1e-9) % TIMESTAMP_STEPS
            entry = (steps * self.timestampresolution_s, i_a)
            if len(self.stored) < window:
                self.stored.append(entry)
            elif self.fillmode == FILL_WINDOW:  # "new readings are added after the last one ... wrap"
                self.stored[self._next % window] = entry
            # FILL_ONCE on a full buffer: "new readings are discarded"
            self._next = (self._next + 1) % window if self.fillmode == FILL_WINDOW else self._next


class K2600Emulator(SmuEmulator):
    """A Keithley 2636B with one simulated device on channel A."""

    idn = "Keithley Instruments Inc., Model 2636B, 4471120, 4.0.4"

    def __init__(
        self,
        clock: VirtualClock,
        device: DeviceArray,
        faults: Faults | None = None,
        line_frequency_hz: float = DEFAULT_LINE_FREQUENCY_HZ,
        model: str = "2636B",
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown 2600B model {model!r}; one of {', '.join(MODELS)}")
        self.model = model
        self.idn = f"Keithley Instruments Inc., Model {model}, 4471120, 4.0.4"
        self.max_abs_voltage_v, self.limit_range_a = MODELS[model]
        # "Affected by: Not applicable" (bufferVar.timestampresolution): reset() leaves the buffer's
        # attributes alone; modelled the same for its other attributes (unverified).
        self.nvbuffer = NvBuffer()
        self.scripts: dict[str, str] = {}  # loaded scripts survive reset(), as on the instrument
        self.functions: set[str] = set()
        self._loading: tuple[str, list[str]] | None = None
        super().__init__(clock, device, faults, line_frequency_hz)

    def reset_state(self) -> None:
        super().reset_state()
        self.buffer: list[tuple[float, float]] = []  # every reading of the last train (ground truth)
        self.ascii_precision = 6  # format.asciiprecision: "Affected by: Instrument reset", default 6
        self.nplc = 1.0
        self.autozero = "AUTO"
        self.sweep_limit_a = 0.0  # smua.trigger.source.limiti; 0 = LIMIT_AUTO
        self.in_sweep_pulse = False
        self.format_data = "ASCII"
        self.source_delay_s = 0.0
        self.measure_delay_s = -1.0
        self.overrun_at_s: float | None = None
        self.prepared: tuple[str, Callable[[], Steps]] | None = None  # what hwloop_run_v3() starts

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

    def storing_text(self) -> bool:
        return self._loading is not None

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
            "print(errorqueue.count)": lambda: self._print(len(self.errors)),
            "print(errorqueue.next())": self._next_error,
            "print(localnode.linefreq)": lambda: self._print(self.line_frequency_hz),
            "print(smua.source.limiti)": lambda: self._print(self.limit_a),
            "print(smua.source.levelv)": lambda: self._print(self.level_v),
            "print(smua.source.output)": lambda: self._print(1.0 if self.output_on else 0.0),
            "print(smua.trigger.source.limiti)": lambda: self._print(self.sweep_limit_a),
            "print(smua.measure.nplc)": lambda: self._print(self.nplc),
            "print(smua.measure.i())": lambda: self._print(self.measure()[1]),
            "print(status.operation.instrument.smua.trigger_overrun.event)": self._overrun_event,
            "print(format.asciiprecision)": lambda: self._print(self.ascii_precision),
            "print(smua.nvbuffer1.capacity)": lambda: self._print(self.nvbuffer.capacity()),
            "print(smua.nvbuffer1.n)": lambda: self._print(len(self.nvbuffer.stored)),
            "print(smua.nvbuffer1.timestampresolution)": lambda: self._print(
                self.nvbuffer.timestampresolution_s
            ),
            "print(smua.nvbuffer1.fillmode)": lambda: self._print(self.nvbuffer.fillmode),
            "print(smua.nvbuffer1.collecttimestamps)": lambda: self._print(self.nvbuffer.collecttimestamps),
            "smua.nvbuffer1.clear()": self.nvbuffer.clear,
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
        return self._print(OVERRUN_MEAS if hit else 0)

    def _print(self, value: float) -> str:
        """What ``print(value)`` returns: ``format.asciiprecision`` significant digits."""
        return _num(float(value), self.ascii_precision)

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
        if name.startswith("smua.nvbuffer1."):
            self._assign_buffer(name.removeprefix("smua.nvbuffer1."), value)
        elif name == "smua.source.limiti":
            # the model's current-limit range; outside it 1101 / 1102 and the old limit stays (MODELS)
            if self.limit_range_a[0] <= value <= self.limit_range_a[1]:
                self.limit_a = value
            else:
                self._out_of_range("limiti", value, self.limit_range_a[0])
        elif name == "format.asciiprecision":
            if ASCII_PRECISION_RANGE[0] <= value <= ASCII_PRECISION_RANGE[1] and value == int(value):
                self.ascii_precision = int(value)
            else:
                self._out_of_range("asciiprecision", value, ASCII_PRECISION_RANGE[0])
        elif name == "smua.source.levelv":
            if abs(value) <= self.max_abs_voltage_v:
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

    def _assign_buffer(self, attribute: str, value: float) -> None:
        """``smua.nvbuffer1.<attribute> = value`` (2600B reference manual, ``bufferVar.*``)."""
        buffer = self.nvbuffer
        if attribute in {"collectsourcevalues", "collecttimestamps", "timestampresolution"} and buffer.stored:
            # "This value can only be changed with an empty buffer" (error code unverified)
            self.error(-221, f"Settings conflict; clear smua.nvbuffer1 before changing {attribute}")
            return
        if attribute == "timestampresolution":
            if value < FINEST_TIMESTAMP_S:
                self._out_of_range("timestampresolution", value, FINEST_TIMESTAMP_S)
                return
            buffer.set_resolution(value)
        elif attribute in {"appendmode", "collectsourcevalues", "collecttimestamps"}:
            setattr(buffer, attribute, value != 0.0)
        elif attribute == "fillmode" and value in (FILL_ONCE, FILL_WINDOW):
            buffer.fillmode = int(value)
        elif attribute == "fillcount" and value >= 0:
            buffer.fillcount = int(value)
        else:
            self.error(-286, f"TSP Runtime error: cannot assign smua.nvbuffer1.{attribute} = {value:g}")

    def _set_autozero(self, value: float) -> None:
        if value == 1.0:  # ONCE: a reference and a zero measurement, then off
            self.hold_for(2 * self.integration_s())
            self.autozero = "OFF"
        else:
            self.autozero = "AUTO" if value == 2.0 else "OFF"

    def _printbuffer(self, command: str, count: int) -> str | None:
        """Readings and timestamps 1..count as stored, at ``format.asciiprecision`` digits (or binary)."""
        stored = self.nvbuffer.stored
        if not 1 <= count <= len(stored):
            self.error(-286, "TSP Runtime error: index out of range")
            return ""
        if self.format_data != "ASCII":
            values = [x for t, i in stored[:count] for x in (i, t)]
            self.emit_raw(command, b"#0" + struct.pack(f"<{len(values)}f", *values))
            return None
        p = self.ascii_precision
        return ", ".join(f"{_num(i, p)}, {_num(t, p)}" for t, i in stored[:count])

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
            elif name == "hwloop_pulse_setup_v2":  # hwloop's previous script: turns the output on itself
                amplitude, width, limit = args
                self.set_source(level_v=0.0)
                self.source_delay_s = 0.0
                self.sweep_limit_a = limit
                self.set_source(output_on=True)
                self.prepared = ("hwloop_pulse_v2", lambda: self._pulse(amplitude, width))
            elif name == "hwloop_train_setup_v2":  # leaves resolution, fill mode and precision as they are
                level, every, count, nplc = args
                if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
                    self._out_of_range("nplc", nplc, NPLC_RANGE[0])
                    return
                self.nplc = nplc
                self.measure_delay_s = 0.0
                self._set_autozero(1.0)
                self.format_data = "ASCII"
                self.nvbuffer.clear()
                self._assign_buffer("appendmode", 0.0)
                self._assign_buffer("collecttimestamps", 1.0)
                self.set_source(level_v=level, output_on=True)
                self.overrun_at_s = None
                self.prepared = ("hwloop_train_v2", lambda: self._train(level, every, int(count)))
            elif name == "hwloop_pulse_setup_v3":
                amplitude, width, limit = args
                self.set_source(level_v=0.0)
                self.source_delay_s = 0.0
                self.sweep_limit_a = limit
                self.prepared = ("hwloop_pulse_v3", lambda: self._pulse(amplitude, width, turn_on=False))
            elif name == "hwloop_train_setup_v3":
                level, every, count, nplc, resolution = args
                if not NPLC_RANGE[0] <= nplc <= NPLC_RANGE[1]:
                    self._out_of_range("nplc", nplc, NPLC_RANGE[0])
                    return
                self.nplc = nplc
                self.measure_delay_s = 0.0
                self._set_autozero(1.0)
                self.format_data = "ASCII"
                self.ascii_precision = 12
                self.nvbuffer.clear()
                for attribute, value in (
                    ("appendmode", 0.0),
                    ("collectsourcevalues", 0.0),
                    ("collecttimestamps", 1.0),
                    ("timestampresolution", resolution),
                    ("fillmode", float(FILL_ONCE)),
                ):
                    self._assign_buffer(attribute, value)
                self.set_source(level_v=level)
                self.overrun_at_s = None
                self.prepared = (
                    "hwloop_train_v3",
                    lambda: self._train(level, every, int(count), turn_on=False),
                )
            elif name in {"hwloop_run_v2", "hwloop_run_v3"}:
                if self.prepared is None:
                    self.error(-286, "TSP Runtime error: nothing set up to run")
                    return
                label, steps = self.prepared
                self.start(label, steps(), blocking=True)
            else:
                self.error(-286, f"TSP Runtime error: '{name}' is not simulated")
        except ValueError:
            self.error(-286, f"TSP Runtime error: bad arguments to '{name}'")

    def _pulse(self, amplitude: float, width: float, turn_on: bool = True) -> Steps:
        """Source action to ``amplitude`` with the sweep limit switched in, a timer of ``width``, then the
        end-pulse action back to the idle level (0 V) and the normal limit. ``turn_on``: the script
        function switches the output on first (``hwloop_pulse_v1``); else the output stays as it is."""
        t = self.now_s()
        self.set_source(level_v=0.0, output_on=True if turn_on else None, at_s=t)
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

    def _train(self, level: float, every: float, count: int, turn_on: bool = True) -> Steps:
        """Readings triggered by a timer every ``every`` s (the first at the arm event), each through the
        measure event detector: an event arriving while the detector is set is dropped (overrun). Each
        reading goes to ``smua.nvbuffer1`` by its fill mode; ``buffer`` keeps them all (ground truth)."""
        t0 = self.now_s()
        self.set_source(level_v=level, output_on=True if turn_on else None, at_s=t0)
        self.buffer = []
        if (
            not self.nvbuffer.appendmode
        ):  # "a new measurement to this buffer overwrites the previous contents"
            self.nvbuffer.clear()
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
        yield from train_steps(self, np.asarray(starts), _Both(self.buffer, self.nvbuffer))
        if len(starts) < count:  # the SMU waits for measure events the timer will never send
            yield NEVER


class _Both:
    """A reading sink feeding two others (the ground-truth list and the reading buffer)."""

    def __init__(self, *sinks: list[tuple[float, float]] | NvBuffer) -> None:
        self.sinks = sinks

    def extend(self, readings: Iterable[tuple[float, float]], /) -> None:
        readings = list(readings)
        for sink in self.sinks:
            sink.extend(readings)
