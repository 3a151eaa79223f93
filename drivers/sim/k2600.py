"""Simulated Keithley 2636B (2600B series), channel A, speaking the TSP subset the driver uses.

Scripts are emulated faithfully at the level the driver relies on: ``loadscript NAME`` ... ``endscript``
stores the text, ``NAME.run()`` defines the functions the text declares, and only defined functions
can be called (else a TSP runtime error, as on the instrument). The Lua bodies are not interpreted:
the known hwloop functions are executed natively on the virtual clock.
"""

from __future__ import annotations

import re

from drivers.sim.clock import VirtualClock
from drivers.sim.devices import DeviceArray
from drivers.sim.emulator import SmuEmulator
from drivers.sim.faults import Faults

_ASSIGN = re.compile(r"^smua\.source\.(limiti|levelv|output|func)\s*=\s*(\S+)$")
_CALL = re.compile(r"^(\w+)\((.*)\)$")
_DEFINED = re.compile(r"^function\s+(\w+)\s*\(", re.MULTILINE)
_NIL_CHECK = re.compile(r"^print\((\w+) ~= nil\)$")
_PRINTBUFFER = re.compile(
    r"^printbuffer\(1,\s*(\d+),\s*smua\.nvbuffer1\.readings,\s*smua\.nvbuffer1\.timestamps\)$"
)


def _num(x: float) -> str:
    return f"{x:.5e}"


class K2600Emulator(SmuEmulator):
    """A Keithley 2636B with one simulated device on channel A."""

    idn = "Keithley Instruments Inc., Model 2636B, 4471120, 4.0.4"

    def __init__(self, clock: VirtualClock, device: DeviceArray, faults: Faults | None = None) -> None:
        self.scripts: dict[str, str] = {}  # loaded scripts survive reset(), as on the instrument
        self.functions: set[str] = set()
        self._loading: tuple[str, list[str]] | None = None
        super().__init__(clock, device, faults)

    def reset_state(self) -> None:
        super().reset_state()
        self.buffer: list[tuple[float, float]] = []

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

    def _statement(self, command: str) -> str | None:
        simple = {
            "*IDN?": lambda: self.idn,
            "*OPC?": lambda: "1",
            "reset()": self._reset,
            "errorqueue.clear()": self.errors.clear,
            "smua.abort()": lambda: None,  # sequences complete instantly in virtual time
            "print(errorqueue.count)": lambda: _num(len(self.errors)),
            "print(errorqueue.next())": self._next_error,
            "print(smua.source.limiti)": lambda: _num(self.limit_a),
            "print(smua.source.levelv)": lambda: _num(self.level_v),
            "print(smua.source.output)": lambda: _num(1.0 if self.output_on else 0.0),
            "print(smua.measure.i())": lambda: _num(self.measure()[1]),
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
            return self._printbuffer(int(m.group(1)))
        if command.endswith(".run()") and command[: -len(".run()")] in self.scripts:
            self.functions |= set(_DEFINED.findall(self.scripts[command[: -len(".run()")]]))
            return None
        if m := _CALL.match(command):
            self._call(m.group(1), m.group(2))
            return None
        self.error(-285, f"TSP Syntax error at line 1: unexpected symbol near '{command[:20]}'")
        return None

    def _reset(self) -> None:
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()

    def _next_error(self) -> str:
        if not self.errors:
            return "0\tQueue Is Empty\t0\t0"
        code, message = self.errors.pop(0)
        return f"{code}\t{message}\t2\t0"

    def _assign(self, name: str, value: str) -> None:
        if name == "limiti":
            self.limit_a = float(value)
        elif name == "levelv":
            self.set_source(level_v=float(value))
        elif name == "output":
            self.set_source(output_on=value == "smua.OUTPUT_ON")

    def _printbuffer(self, count: int) -> str:
        if not 1 <= count <= len(self.buffer):
            self.error(-286, "TSP Runtime error: index out of range")
            return ""
        t0 = self.buffer[0][0]
        return ", ".join(f"{_num(i)}, {_num(t - t0)}" for t, i in self.buffer[:count])

    def _call(self, name: str, arg_text: str) -> None:
        if name not in self.functions:
            self.error(-286, f"TSP Runtime error: attempt to call global '{name}' (a nil value)")
            return
        args = [float(a) for a in arg_text.split(",")]
        if name == "hwloop_pulse_v1":
            amplitude, width = args
            self.set_source(level_v=0.0, output_on=True)
            self.set_source(level_v=amplitude)
            self.hold_for(width)
            self.set_source(level_v=0.0)
        elif name == "hwloop_train_v1":
            level, every, count = args
            self.set_source(level_v=level, output_on=True)
            self.buffer = self.measure_train(int(count), max(every, self.aperture_s))
        else:
            self.error(-286, f"TSP Runtime error: '{name}' is not simulated")
