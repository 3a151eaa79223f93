"""Simulated Keithley 2450: SCPI with configuration lists and the trigger model (short command forms).

Implements the commands the ``Keithley2450`` driver uses (and their queries); anything else goes onto
the error queue as -113 "Undefined header", as the real instrument does. What the reference manual says
and the driver depends on is modelled, each rule with its section of the *Model 2450 Reference Manual*
(2450-901-01; "RM" below):

* settings, configuration lists (and the catalog's walk position) and the error queue belong to the
  instrument and outlive driver sessions; ``*RST`` resets settings and deletes lists but leaves the error
  queue (only ``*CLS`` / reading it empties it); creating a list that exists is error -222 (RM: "Where
  saved" / "Affected by" of each command; ``*RST``; ``:SOURce:CONFiguration:LIST:CREate``);
* a configuration-list entry stores the source settings in force when it is stored (level, current limit,
  source delay and auto delay, readback) **and the output state and output-off mode** (2450 reference
  manual, ":OUTPut[1][:STATe]" and ":OUTPut[1]:<function>:SMODe" / "smu.source.offmode": "Where saved:
  Source configuration list"), and recalling it restores them all: recalling an entry stored with the
  output off switches the output off;
* the output-off mode (``:OUTP:SMOD``, default NORMal; "Instrument reset" restores it) decides what an
  output that is off does (normal: 0 V; high impedance: the relay opens): at the device it is 0 V either
  way;
* source delay: when the output goes on, or its level changes, during the trigger model the source
  holds for the source delay before the next block; with auto delay on the delay depends on the current
  range (50 ms on 10/100 nA, 3 ms on 1 uA, 2 ms on 10 uA, 1 ms from 100 uA up; the range is taken as the
  one holding the current limit, a simplification of autorange) (RM: "Source delay",
  ``:SOURce:VOLTage:DELay:AUTO``);
* one reading takes NPLC / line frequency, plus 10 % with autozero on, plus 0.5 ms with source readback
  on, plus 0.1 ms; ``:SENS:AZER:ONCE`` takes two integrations (reference and zero) (RM:
  ``:SENSe:CURRent:NPLCycles``, "Automatic reference measurements"; the 10 %, 0.5 ms and 0.1 ms are
  this simulation's estimates, unverified);
* ``defbuffer1`` holds ``:TRAC:POIN`` readings (100,000 by default) and fills continuously: past its
  size the oldest readings are overwritten (RM: ``:TRACe:POINts``, ``:TRACe:FILL:MODE``);
* out-of-range values are error -222 and leave the old value in force (RM: "Error summary"; ranges of
  ``:SOURce:VOLTage``, ``:ILIMit``, ``:NPLCycles``, ``:DELay``);
* the trigger model runs on the virtual clock; ``*OPC?`` answers when it has ended, and holds the
  commands after it until then; ``:ABOR`` stops it (RM: "Trigger model", ``*OPC``, ``:ABORt``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from drivers.sim.emulator import SmuEmulator, Steps, train_steps

MAX_TRIGGER_STEPS = 1_000_000  # a runaway trigger model stops here instead of hanging the simulation
CURRENT_RANGES_A = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
AUTO_DELAY_S = {1e-8: 50e-3, 1e-7: 50e-3, 1e-6: 3e-3, 1e-5: 2e-3}  # voltage source; 1 ms from 100 uA up
MAX_ABS_VOLTAGE_V = 210.0
LIMIT_RANGE_A = (1e-9, 1.05)
NPLC_RANGE = (0.01, 10.0)
MAX_DELAY_S = 10_000.0
DEFBUFFER1_POINTS = 100_000  # defbuffer1's default capacity (:TRAC:POIN?); unverified: ask the instrument


def _unquote(text: str) -> str:
    return text.strip().strip('"')


def _on(text: str) -> bool:
    value = text.strip().upper()
    if value not in {"ON", "1", "OFF", "0"}:
        raise ValueError(text)
    return value in {"ON", "1"}


class K2450Emulator(SmuEmulator):
    """A Keithley 2450 with one simulated device on its terminals."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04455001,1.7.12b"

    def reset_state(self) -> None:
        super().reset_state()
        self.nplc = 1.0
        self.autozero = True
        self.readback = True
        self.source_delay_s = 0.0
        self.source_delay_auto = True
        self.off_mode = "NORM"  # :OUTP:SMOD: NORMal, HIMPedance, ZERO, GUARd
        self.config_lists: dict[str, list[dict[str, Any]]] = {}
        self.catalog_walk: list[str] | None = None  # names CATalog? has still to return; None: not walking
        self.list_index: dict[str, int] = {}
        self.blocks: dict[int, tuple[str, list[str]]] = {}
        self.buffer: list[tuple[float, float]] = []
        self.buffer_points = DEFBUFFER1_POINTS

    def list_levels(self) -> dict[str, list[float]]:
        """Every stored configuration list as its entries' source levels (V)."""
        return {name: [e["level_v"] for e in entries] for name, entries in self.config_lists.items()}

    def dispatch(self, command: str) -> str | None:
        header, _, rest = command.partition(" ")
        header = header.upper()
        args = [a.strip() for a in rest.split(",")] if rest else []
        handler = _COMMANDS.get(header)
        if handler is None:
            self.error(-113, f"Undefined header; {command[:40]}")
            return None
        try:
            return handler(self, args)
        except (ValueError, IndexError, KeyError):
            self.error(-109, f"Missing or bad parameter; {command[:40]}")
            return None

    # -- timing ----------------------------------------------------------------------------------
    def integration_s(self) -> float:
        """NPLC / line frequency (s)."""
        return self.nplc / self.line_frequency_hz

    def reading_time_s(self) -> float:
        return (
            self.integration_s() * (1.1 if self.autozero else 1.0)
            + (0.5e-3 if self.readback else 0.0)
            + self.measure_overhead_s
        )

    def current_range_a(self) -> float:
        """The current range holding the present limit (A)."""
        return next((r for r in CURRENT_RANGES_A if r >= self.limit_a * (1 - 1e-9)), CURRENT_RANGES_A[-1])

    def source_delay(self) -> float:
        """The source delay in force (s): the auto delay of the range, or the fixed delay."""
        if self.source_delay_auto:
            return AUTO_DELAY_S.get(self.current_range_a(), 1e-3)
        return self.source_delay_s

    def _in_range(self, value: float, low: float, high: float, what: str) -> bool:
        if low <= value <= high and np.isfinite(value):
            return True
        self.error(-222, f"Parameter data out of range; {what} {value:g}")
        return False

    # -- SCPI handlers -----------------------------------------------------------------------------
    def _idn(self, args: list[str]) -> str:
        return self.idn

    def _rst(self, args: list[str]) -> None:
        self.abort()
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()

    def _cls(self, args: list[str]) -> None:
        self.errors.clear()

    def _opc(self, args: list[str]) -> str | None:
        return self.opc()

    def _err(self, args: list[str]) -> str:
        if not self.errors:
            return '0,"No error;0;0 0"'
        code, message = self.errors.pop(0)
        return f'{code},"{message}"'

    def _lfr(self, args: list[str]) -> str:
        return f"{self.line_frequency_hz:g}"

    def _noop(self, args: list[str]) -> None:
        return None

    def _ilim(self, args: list[str]) -> None:
        if self._in_range(float(args[0]), *LIMIT_RANGE_A, "current limit"):
            self.limit_a = float(args[0])

    def _ilim_q(self, args: list[str]) -> str:
        return f"{self.limit_a:.6e}"

    def _volt(self, args: list[str]) -> None:
        if self._in_range(abs(float(args[0])), 0.0, MAX_ABS_VOLTAGE_V, "source level"):
            self.set_source(level_v=float(args[0]))

    def _volt_q(self, args: list[str]) -> str:
        return f"{self.level_v:.6e}"

    def _nplc(self, args: list[str]) -> None:
        if self._in_range(float(args[0]), *NPLC_RANGE, "NPLC"):
            self.nplc = float(args[0])

    def _nplc_q(self, args: list[str]) -> str:
        return f"{self.nplc:g}"

    def _azer(self, args: list[str]) -> None:
        self.autozero = _on(args[0])

    def _azer_q(self, args: list[str]) -> str:
        return "1" if self.autozero else "0"

    def _azer_once(self, args: list[str]) -> None:
        self.hold_for(2 * self.integration_s())  # a reference and a zero measurement

    def _readback(self, args: list[str]) -> None:
        self.readback = _on(args[0])

    def _readback_q(self, args: list[str]) -> str:
        return "1" if self.readback else "0"

    def _delay(self, args: list[str]) -> None:
        if self._in_range(float(args[0]), 0.0, MAX_DELAY_S, "source delay"):
            self.source_delay_s = float(args[0])

    def _delay_q(self, args: list[str]) -> str:
        return f"{self.source_delay_s:.6e}"

    def _delay_auto(self, args: list[str]) -> None:
        self.source_delay_auto = _on(args[0])

    def _delay_auto_q(self, args: list[str]) -> str:
        return "1" if self.source_delay_auto else "0"

    def _outp(self, args: list[str]) -> None:
        self.set_source(output_on=_on(args[0]))

    def _outp_q(self, args: list[str]) -> str:
        return "1" if self.output_on else "0"

    def _off_mode(self, args: list[str]) -> None:
        mode = args[0].strip().upper()[:4]
        if mode not in {"NORM", "HIMP", "ZERO", "GUAR"}:
            raise ValueError(mode)
        self.off_mode = mode

    def _off_mode_q(self, args: list[str]) -> str:
        return self.off_mode

    def _meas_curr(self, args: list[str]) -> str:
        return f"{self.measure()[1]:.6e}"

    def _list_create(self, args: list[str]) -> None:
        name = _unquote(args[0])
        if name in self.config_lists:
            self.error(-222, f"Configuration list {name} already exists")
            return
        self.config_lists[name] = []

    def _list_catalog(self, args: list[str]) -> str:
        """One stored list name per query, then an empty string; the next query starts a new walk."""
        if self.catalog_walk is None:
            self.catalog_walk = list(self.config_lists)
        if not self.catalog_walk:
            self.catalog_walk = None
            return '""'
        return f'"{self.catalog_walk.pop(0)}"'

    def _list_size(self, args: list[str]) -> str:
        return str(len(self.config_lists[_unquote(args[0])]))

    def _list_delete(self, args: list[str]) -> None:
        self.config_lists.pop(_unquote(args[0]))

    def _list_store(self, args: list[str]) -> None:
        self.config_lists[_unquote(args[0])].append(
            {
                "level_v": self.level_v,
                "limit_a": self.limit_a,
                "source_delay_s": self.source_delay_s,
                "source_delay_auto": self.source_delay_auto,
                "readback": self.readback,
                "output_on": self.output_on,
                "off_mode": self.off_mode,
            }
        )

    def _trig_load(self, args: list[str]) -> None:
        if _unquote(args[0]).upper() != "EMPTY":
            self.error(-224, "Only the Empty trigger model is simulated")
        self.blocks = {}

    def _delay_block(self, args: list[str]) -> None:
        if self._in_range(float(args[1]), 0.0, MAX_DELAY_S, "trigger delay"):
            self.blocks[int(args[0])] = ("DELAY", args[1:])

    def _trace_points(self, args: list[str]) -> None:
        self.buffer_points = int(float(args[0]))

    def _trace_points_q(self, args: list[str]) -> str:
        return str(self.buffer_points)

    def _trace_clear(self, args: list[str]) -> None:
        self.buffer = []

    def _trace_data(self, args: list[str]) -> str:
        """Readings start..stop of defbuffer1. It fills continuously (2450 reference manual,
        :TRACe:FILL:MODE, default CONT for defbuffer1): past its size the oldest readings are gone."""
        start, stop = int(args[0]), int(args[1])
        stored = self.buffer[-self.buffer_points :]
        if not (1 <= start <= stop <= len(stored)):
            self.error(-222, "Data out of range")
            return ""
        t0 = stored[0][0]
        out = []
        for t, i in stored[start - 1 : stop]:
            out += [f"{i:.6e}", f"{t - t0:.9f}"]
        return ",".join(out)

    def _abort(self, args: list[str]) -> None:
        self.abort()

    def _initiate(self, args: list[str]) -> None:
        if self.operation is not None:
            self.error(-213, "Init ignored; trigger model already running")
            return
        kinds = [self.blocks[b][0] for b in sorted(self.blocks)]
        if kinds == ["MEASURE", "DELAY", "BRANCH_COUNTER"] and self.blocks[3][1][1] == "1":
            # the read-train loop: the same timing as the interpreter below, evaluated in chunks
            delay, count = float(self.blocks[2][1][0]), max(int(self.blocks[3][1][0]), 1)
            t0 = self.now_s()
            times = t0 + np.arange(count) * (self.reading_time_s() + delay)
            self.start("read train", self._train(times, delay))
            return
        self.start("trigger model", self._trigger_model(self.now_s()))

    def _train(self, times: np.ndarray, delay_s: float) -> Steps:
        yield from train_steps(self, times, self.buffer)
        yield float(times[-1]) + self.reading_time_s() + delay_s

    def _source_change(
        self, t: float, *, level_v: float | None = None, output_on: bool | None = None
    ) -> float:
        """Apply a source change at ``t`` inside the trigger model; returns when the next block may run
        (after the source delay, if the output is on and its level or state changed)."""
        before = (self.output_on, self.level_v)
        self.set_source(level_v=level_v, output_on=output_on, at_s=t)
        changed = (self.output_on, self.level_v) != before
        return t + (self.source_delay() if self.output_on and changed else 0.0)

    def _recall(self, t: float, name: str, index: int) -> float:
        entry = self.config_lists[name][index - 1]
        self.list_index[name] = index
        self.limit_a = entry["limit_a"]
        self.source_delay_s = entry["source_delay_s"]
        self.source_delay_auto = entry["source_delay_auto"]
        self.readback = entry["readback"]
        self.off_mode = entry["off_mode"]
        return self._source_change(t, level_v=entry["level_v"], output_on=entry["output_on"])

    def _trigger_model(self, t: float) -> Steps:
        counters: dict[int, int] = {}
        block, steps = 1, 0
        while block in self.blocks and steps < MAX_TRIGGER_STEPS:
            kind, b_args = self.blocks[block]
            steps += 1
            block += 1
            if kind == "RECALL":
                t = self._recall(t, _unquote(b_args[0]), int(b_args[1]))
            elif kind == "NEXT":
                name = _unquote(b_args[0])
                t = self._recall(t, name, self.list_index.get(name, 0) % len(self.config_lists[name]) + 1)
            elif kind == "SOURCE_STATE":
                t = self._source_change(t, output_on=_on(b_args[0]))
            elif kind == "DELAY":
                t += float(b_args[0])
            elif kind == "MEASURE":
                yield t
                self.buffer.append(self.reading_at(t))
                t += self.reading_time_s()
            elif kind == "BRANCH_COUNTER":
                target, to_block = int(b_args[0]), int(b_args[1])
                counters[block - 1] = counters.get(block - 1, 0) + 1
                if counters[block - 1] < target:
                    block = to_block
            yield t
        self.settle(t)


def _block(kind: str) -> Callable[[K2450Emulator, list[str]], None]:
    """Handler of a ``:TRIG:BLOC:...`` command: store block number -> (kind, remaining arguments)."""

    def add(emulator: K2450Emulator, args: list[str]) -> None:
        emulator.blocks[int(args[0])] = (kind, args[1:])

    return add


_COMMANDS: dict[str, Callable[[K2450Emulator, list[str]], str | None]] = {
    "*IDN?": K2450Emulator._idn,
    "*RST": K2450Emulator._rst,
    "*CLS": K2450Emulator._cls,
    "*OPC?": K2450Emulator._opc,
    ":SYST:ERR?": K2450Emulator._err,
    ":SYST:LFR?": K2450Emulator._lfr,
    ":SOUR:FUNC": K2450Emulator._noop,
    ":SENS:FUNC": K2450Emulator._noop,
    ":SENS:CURR:NPLC": K2450Emulator._nplc,
    ":SENS:CURR:NPLC?": K2450Emulator._nplc_q,
    ":SENS:CURR:AZER": K2450Emulator._azer,
    ":SENS:CURR:AZER?": K2450Emulator._azer_q,
    ":SENS:AZER:ONCE": K2450Emulator._azer_once,
    ":SOUR:VOLT:READ:BACK": K2450Emulator._readback,
    ":SOUR:VOLT:READ:BACK?": K2450Emulator._readback_q,
    ":SOUR:VOLT:DEL": K2450Emulator._delay,
    ":SOUR:VOLT:DEL?": K2450Emulator._delay_q,
    ":SOUR:VOLT:DEL:AUTO": K2450Emulator._delay_auto,
    ":SOUR:VOLT:DEL:AUTO?": K2450Emulator._delay_auto_q,
    ":SOUR:VOLT:ILIM": K2450Emulator._ilim,
    ":SOUR:VOLT:ILIM?": K2450Emulator._ilim_q,
    ":SOUR:VOLT": K2450Emulator._volt,
    ":SOUR:VOLT?": K2450Emulator._volt_q,
    ":OUTP": K2450Emulator._outp,
    ":OUTP?": K2450Emulator._outp_q,
    ":OUTP:SMOD": K2450Emulator._off_mode,
    ":OUTP:SMOD?": K2450Emulator._off_mode_q,
    ":MEAS:CURR?": K2450Emulator._meas_curr,
    ":SOUR:CONF:LIST:CAT?": K2450Emulator._list_catalog,
    ":SOUR:CONF:LIST:SIZE?": K2450Emulator._list_size,
    ":SOUR:CONF:LIST:CRE": K2450Emulator._list_create,
    ":SOUR:CONF:LIST:DEL": K2450Emulator._list_delete,
    ":SOUR:CONF:LIST:STOR": K2450Emulator._list_store,
    ":TRIG:LOAD": K2450Emulator._trig_load,
    ":TRIG:BLOC:CONF:REC": _block("RECALL"),
    ":TRIG:BLOC:CONF:NEXT": _block("NEXT"),
    ":TRIG:BLOC:SOUR:STAT": _block("SOURCE_STATE"),
    ":TRIG:BLOC:DEL:CONS": K2450Emulator._delay_block,
    ":TRIG:BLOC:MEAS": _block("MEASURE"),
    ":TRIG:BLOC:BRAN:COUN": _block("BRANCH_COUNTER"),
    ":TRAC:CLE": K2450Emulator._trace_clear,
    ":TRAC:POIN": K2450Emulator._trace_points,
    ":TRAC:POIN?": K2450Emulator._trace_points_q,
    ":TRAC:DATA?": K2450Emulator._trace_data,
    ":INIT": K2450Emulator._initiate,
    ":ABOR": K2450Emulator._abort,
}
