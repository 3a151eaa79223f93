"""Simulated Keithley 2450: SCPI with configuration lists and the trigger model (short command forms).

Implements the commands the ``Keithley2450`` driver uses (and their queries); anything else goes onto
the error queue as -113 "Undefined header", as the real instrument does. Like the instrument, the
configuration lists (and the catalog's walk position) belong to the emulator, not to a session: they
outlive driver sessions until ``*RST``, and creating a list that exists is error -222.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.sim.emulator import SmuEmulator

MAX_TRIGGER_STEPS = 1_000_000  # a runaway trigger model stops here instead of hanging the simulation


def _unquote(text: str) -> str:
    return text.strip().strip('"')


def _on(text: str) -> bool:
    return text.strip().upper() in {"ON", "1"}


class K2450Emulator(SmuEmulator):
    """A Keithley 2450 with one simulated device on its terminals."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04455001,1.7.12b"

    def reset_state(self) -> None:
        super().reset_state()
        self.config_lists: dict[str, list[float]] = {}
        self.catalog_walk: list[str] | None = None  # names CATalog? has still to return; None: not walking
        self.list_index: dict[str, int] = {}
        self.blocks: dict[int, tuple[str, list[str]]] = {}
        self.buffer: list[tuple[float, float]] = []

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

    # -- SCPI handlers -----------------------------------------------------------------------------
    def _idn(self, args: list[str]) -> str:
        return self.idn

    def _rst(self, args: list[str]) -> None:
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()

    def _opc(self, args: list[str]) -> str:
        return "1"

    def _err(self, args: list[str]) -> str:
        if not self.errors:
            return '0,"No error;0;0 0"'
        code, message = self.errors.pop(0)
        return f'{code},"{message}"'

    def _noop(self, args: list[str]) -> None:
        return None

    def _ilim(self, args: list[str]) -> None:
        self.limit_a = float(args[0])

    def _ilim_q(self, args: list[str]) -> str:
        return f"{self.limit_a:.6e}"

    def _volt(self, args: list[str]) -> None:
        self.set_source(level_v=float(args[0]))

    def _volt_q(self, args: list[str]) -> str:
        return f"{self.level_v:.6e}"

    def _outp(self, args: list[str]) -> None:
        self.set_source(output_on=_on(args[0]))

    def _outp_q(self, args: list[str]) -> str:
        return "1" if self.output_on else "0"

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
        self.config_lists[_unquote(args[0])].append(self.level_v)

    def _trig_load(self, args: list[str]) -> None:
        if _unquote(args[0]).upper() != "EMPTY":
            self.error(-224, "Only the Empty trigger model is simulated")
        self.blocks = {}

    def _trace_clear(self, args: list[str]) -> None:
        self.buffer = []

    def _trace_data(self, args: list[str]) -> str:
        start, stop = int(args[0]), int(args[1])
        if not (1 <= start <= stop <= len(self.buffer)):
            self.error(-222, "Data out of range")
            return ""
        t0 = self.buffer[0][0]
        out = []
        for t, i in self.buffer[start - 1 : stop]:
            out += [f"{i:.6e}", f"{t - t0:.9f}"]
        return ",".join(out)

    def _initiate(self, args: list[str]) -> None:
        kinds = [self.blocks[b][0] for b in sorted(self.blocks)]
        if kinds == ["MEASURE", "DELAY", "BRANCH_COUNTER"] and self.blocks[3][1][1] == "1":
            # the read-train loop: the same timing as the interpreter below, evaluated in one go
            delay, count = float(self.blocks[2][1][0]), int(self.blocks[3][1][0])
            self.buffer += self.measure_train(max(count, 1), delay + self.aperture_s)
            self.hold_for(delay)
            return
        counters: dict[int, int] = {}
        block, steps = 1, 0
        while block in self.blocks and steps < MAX_TRIGGER_STEPS:
            kind, b_args = self.blocks[block]
            steps += 1
            block += 1
            if kind == "RECALL":
                name, index = _unquote(b_args[0]), int(b_args[1])
                self.list_index[name] = index
                self.set_source(level_v=self.config_lists[name][index - 1])
            elif kind == "NEXT":
                name = _unquote(b_args[0])
                index = self.list_index.get(name, 0) % len(self.config_lists[name]) + 1
                self.list_index[name] = index
                self.set_source(level_v=self.config_lists[name][index - 1])
            elif kind == "SOURCE_STATE":
                self.set_source(output_on=_on(b_args[0]))
            elif kind == "DELAY":
                self.hold_for(float(b_args[0]))
            elif kind == "MEASURE":
                self.buffer.append(self.measure())
            elif kind == "BRANCH_COUNTER":
                target, to_block = int(b_args[0]), int(b_args[1])
                counters[block - 1] = counters.get(block - 1, 0) + 1
                if counters[block - 1] < target:
                    block = to_block


def _block(kind: str) -> Callable[[K2450Emulator, list[str]], None]:
    """Handler of a ``:TRIG:BLOC:...`` command: store block number -> (kind, remaining arguments)."""

    def add(emulator: K2450Emulator, args: list[str]) -> None:
        emulator.blocks[int(args[0])] = (kind, args[1:])

    return add


_COMMANDS: dict[str, Callable[[K2450Emulator, list[str]], str | None]] = {
    "*IDN?": K2450Emulator._idn,
    "*RST": K2450Emulator._rst,
    "*OPC?": K2450Emulator._opc,
    ":SYST:ERR?": K2450Emulator._err,
    ":SOUR:FUNC": K2450Emulator._noop,
    ":SENS:FUNC": K2450Emulator._noop,
    ":SOUR:VOLT:ILIM": K2450Emulator._ilim,
    ":SOUR:VOLT:ILIM?": K2450Emulator._ilim_q,
    ":SOUR:VOLT": K2450Emulator._volt,
    ":SOUR:VOLT?": K2450Emulator._volt_q,
    ":OUTP": K2450Emulator._outp,
    ":OUTP?": K2450Emulator._outp_q,
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
    ":TRIG:BLOC:DEL:CONS": _block("DELAY"),
    ":TRIG:BLOC:MEAS": _block("MEASURE"),
    ":TRIG:BLOC:BRAN:COUN": _block("BRANCH_COUNTER"),
    ":TRAC:CLE": K2450Emulator._trace_clear,
    ":TRAC:DATA?": K2450Emulator._trace_data,
    ":INIT": K2450Emulator._initiate,
    ":ABOR": K2450Emulator._noop,  # sequences complete instantly in virtual time: nothing left to abort
}
