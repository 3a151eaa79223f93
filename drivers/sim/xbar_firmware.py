"""Firmware of the simulated crossbar controller: ``docs/crossbar-controller-protocol.md``, v3, v2 or v1.

Idle lines sit at the line biases (v3 ``BIAS``; 0 V after power-up and ``RST``, and always on v1/v2), so
between commands device (r, c) relaxes at tau(row_v[r] - col_v[c]) and draws the bias power
V^2 G (counted in ``ArrayLines.bias_energy_j``). A pulse or read drives only the addressed devices at the
commanded voltage; the others keep relaxing at their bias. Each command costs ``LATENCY_S`` of virtual time
(one serial round trip), a pulse its width, a read the card's read time.

The firmware is the controller, not the link: it persists across connections (``sim_firmware``), so
its settings (ILIM, selection), an armed command and a partial line left by a crashed host are still
there when the next session opens the port, as on hardware.

Protocol 2 (default) is strict: framed lines with a CRC, the strict number grammar, two-phase commands
(``ECHO`` before ``GO``), the resync rules (longest line, inter-byte timeout, a frame starts at the last
``@`` of a line). Protocol 1 is modelled as v1 firmwares are commonly written: C ``strtod`` parsing
(``inf``, ``nan`` and trailing characters accepted), no line limit, a partial line kept until its ``\\n``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

from drivers.sim.array_lines import ArrayLines, Drive
from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray
from drivers.xbar_protocol import (
    ARM_TIMEOUT_S,
    ARMED_COMMANDS,
    INTER_BYTE_TIMEOUT_S,
    MAX_BLOCK_READS,
    MAX_LINE_BYTES,
    FrameError,
    echo_list_number,
    echo_number,
    frame,
    parse_int,
    parse_ints,
    parse_number,
    parse_numbers,
    quantise_bias,
    read_block_rows_per_frame,
    unframe,
)

FIRMWARE_VERSIONS = {1: "1.0.0", 2: "2.0.0", 3: "3.1.0"}
MAX_ABS_V = 10.0  # the controller's own hardware range
MIN_WIDTH_S = 1e-6  # the pulse timer's resolution
MAX_WIDTH_S = 1.0
MIN_ILIM_A = 1e-9
MAX_ILIM_A = 0.1
LATENCY_S = 1e-3
MAX_ABS_BIAS_V = 2.5  # the line-bias DACs' range (v3)
BIAS_DAC_BITS = 12
BIAS_LSB_V = 2 * MAX_ABS_BIAS_V / 2**BIAS_DAC_BITS  # 1.22 mV: one code of the bias DACs
READ_LSB_A = 1e-12  # v3.1: one code of the read ADC (READBLOCK replies carry codes of this step)
MAX_PULSE_COUNT = 16  # v3.1: most pulses one PULSEBLOCK entry may ask for
BLOCK_COMMANDS = ("BIAS", "BIAS?", "READBLOCK", "PULSEBLOCK")  # v3 only (the block ones since 3.1)
_STRTOD = re.compile(r"\s*([+-]?(?:inf(?:inity)?|nan|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))", re.IGNORECASE)


class FirmwareError(Exception):
    """An ``ERR <CODE> <message>`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"ERR {code} {message}")


class Armed(NamedTuple):
    seq: int
    t_s: float
    keyword: str
    args: tuple[Any, ...]
    text: str


class Exchange(NamedTuple):
    """One line the firmware took in: the command text whose result ``reply`` carries (for faults to
    match on; for a ``GO`` the armed command's text) and the reply line (None: no reply)."""

    subject: str
    reply: str | None


class XbarFirmware:
    """The controller behind ``xbarsim://``: takes bytes, answers lines, drives a ``SimArray``."""

    def __init__(self, array: SimArray, faults: Faults | None = None, protocol: int = 2) -> None:
        self.array = array
        self.faults = faults or Faults()
        self.protocol = protocol
        self.selected: tuple[int, int] | None = None
        self.ilim_a: float | None = None
        self.armed: Armed | None = None
        self.discarded_bytes = 0  # bytes dropped by the resync rules
        self._line = bytearray()
        self._overflow = False
        self._t_last_byte_s = array.clock.now_s()
        self.lines = ArrayLines(array, self.faults)

    @property
    def faults(self) -> Faults:
        """The faults in force (set by each connection from its URL)."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        if hasattr(self, "lines"):
            self.lines.faults = faults

    @property
    def scope(self) -> list[Drive]:
        """Every drive applied to the array (what an oscilloscope on the lines shows)."""
        return self.lines.scope

    # -- bytes in, lines out -----------------------------------------------------------------------
    def receive(self, data: bytes, first_byte_s: float | None = None) -> list[Exchange]:
        """Take ``data`` from the host; one ``Exchange`` per complete line it finished. ``first_byte_s``:
        when the first of these bytes arrived (virtual s; default now), for the inter-byte timeout."""
        now = self.array.clock.now_s()
        first = now if first_byte_s is None else first_byte_s
        if self.protocol >= 2 and self._line and first - self._t_last_byte_s > INTER_BYTE_TIMEOUT_S:
            self.discarded_bytes += len(self._line)  # resync: a partial line followed by silence is dropped
            self._line.clear()
        self._t_last_byte_s = now
        out: list[Exchange] = []
        *complete, rest = data.split(b"\n")
        for k, piece in enumerate([*complete, rest]):
            self._take(piece)
            if k == len(complete):
                break  # the rest has no line end yet: it waits in the buffer
            raw = bytes(self._line).removesuffix(b"\r")
            self._line.clear()
            if self._overflow:
                self._overflow = False
                self.armed = None
                out.append(Exchange("", frame(0, f"ERR FRAME line longer than {MAX_LINE_BYTES} bytes")))
                continue
            out.append(self.handle_line(raw.decode("ascii", errors="replace")))
        return out

    def _take(self, piece: bytes) -> None:
        """Append bytes of one line to the buffer, dropping what goes past the longest line (v2)."""
        room = MAX_LINE_BYTES - 1 - len(self._line) if self.protocol >= 2 else len(piece)
        if len(piece) > room:
            self._overflow = True
            self.discarded_bytes += len(piece) - room
            piece = piece[:room]
        self._line += piece

    def handle_line(self, line: str) -> Exchange:
        """The exchange for one complete line (without its terminator)."""
        self.array.clock.sleep(LATENCY_S)
        if self.protocol < 2:
            return Exchange(line.strip(), self._v1(line.strip()))
        armed, self.armed = self.armed, None  # any line but the matching GO disarms
        at = line.rfind("@")
        if at < 0:
            return Exchange(line, self._unframed(line.strip()))
        self.discarded_bytes += at  # resync: whatever precedes the last '@' is a leftover, never executed
        line = line[at:]
        try:
            seq, body = unframe(line)
        except FrameError as exc:
            return Exchange(line, frame(0, f"ERR FRAME {exc}"))
        if seq == 0:
            return Exchange(body, frame(0, "ERR FRAME sequence number 0 is reserved for frame errors"))
        subject, reply = self._v2(seq, body, armed)
        return Exchange(subject, frame(seq, reply))

    # -- protocol 2 ------------------------------------------------------------------------------
    def _unframed(self, line: str) -> str | None:
        if not line:
            return None  # an empty line is a harmless separator
        if line.upper() in ("*IDN?", "VER?"):  # identification stays readable by v1 tools
            return self._cmd_STAR_IDN_Q() if line.upper() == "*IDN?" else self._cmd_VER_Q()
        return "ERR VERSION this controller speaks protocol 2: frame commands as @<seq> <command>*<CRC16>"

    def _v2(self, seq: int, body: str, armed: Armed | None) -> tuple[str, str]:
        words = body.split(" ")
        keyword = words[0].upper()
        try:
            if keyword == "GO":
                if len(words) != 2:
                    raise FirmwareError("SYNTAX", "GO takes one sequence number")
                target = parse_int(words[1])
                if armed is None or armed.seq != target:
                    raise FirmwareError("STATE", f"nothing armed under sequence number {target}")
                if self.array.clock.now_s() - armed.t_s > ARM_TIMEOUT_S:
                    raise FirmwareError(
                        "STATE", f"command {target} expired (GO later than {ARM_TIMEOUT_S:g} s)"
                    )
                return armed.text, self._execute(armed.keyword, armed.args)
            if keyword in BLOCK_COMMANDS and self.protocol < 3:
                raise FirmwareError("SYNTAX", f"unknown command {words[0]!r}")
            if keyword in ARMED_COMMANDS:
                args = self._parse(keyword, words[1:])
                echo = "ECHO " + self._echo(keyword, args)
                if len(frame(seq, echo)) + 1 > MAX_LINE_BYTES:
                    raise FirmwareError("RANGE", f"the echo of {keyword} would exceed {MAX_LINE_BYTES} bytes")
                self.armed = Armed(seq, self.array.clock.now_s(), keyword, args, body)
                return "ARM " + body, echo
            if keyword in ("SEL", "SEL?"):
                raise FirmwareError("SYNTAX", f"{keyword} is protocol 1 only (v2 commands carry row and col)")
            return body, self._dispatch(words, strict=True)
        except FirmwareError as exc:
            return body, str(exc)
        except (TypeError, ValueError):
            return body, f"ERR SYNTAX bad arguments to {words[0]}"

    def _parse(self, keyword: str, args: list[str]) -> tuple[Any, ...]:
        """Parse and check a two-phase command completely, as its execution would (nothing applied)."""
        if keyword == "ILIM":
            (value,) = args
            return (self._ilim(parse_number(value)),)
        if keyword == "BIAS":
            row_text, col_text = args
            rows, cols = tuple(parse_numbers(row_text)), tuple(parse_numbers(col_text))
            if len(rows) != self.array.rows or len(cols) != self.array.cols:
                raise FirmwareError(
                    "SYNTAX",
                    f"BIAS needs {self.array.rows} row and {self.array.cols} column voltages, "
                    f"got {len(rows)} and {len(cols)}",
                )
            for v in (*rows, *cols):
                if not abs(v) <= MAX_ABS_BIAS_V:
                    raise FirmwareError("RANGE", f"bias {v:g} V outside +-{MAX_ABS_BIAS_V:g} V")
            return (rows, cols)
        self._need_ilim()
        if keyword == "READBLOCK":
            row, count, read_v, reads_text = args
            r0, n, reads = self._row(parse_int(row)), parse_int(count), parse_int(reads_text)
            self._rows_span(r0, n)
            if not 1 <= reads <= MAX_BLOCK_READS:
                raise FirmwareError("RANGE", f"READBLOCK of {reads} reads outside [1, {MAX_BLOCK_READS}]")
            most = read_block_rows_per_frame(self.array.cols, self._need_ilim(), READ_LSB_A)
            if n > most:
                raise FirmwareError("RANGE", f"READBLOCK of {n} rows: a reply carries at most {most} rows")
            return (r0, n, self._volts(parse_number(read_v)), reads)
        if keyword == "PULSEBLOCK":
            return self._parse_pulse_block(args)
        if keyword == "PULSE":
            row, col, amplitude, width = args
            return (
                self._row(parse_int(row)),
                self._col(parse_int(col)),
                self._volts(parse_number(amplitude)),
                self._width(parse_number(width)),
            )
        if keyword == "PULSEROW":
            row, width, amplitudes = args
            amps = tuple(self._volts(a) for a in parse_numbers(amplitudes))
            self._check_count(amps)
            return (self._row(parse_int(row)), self._width(parse_number(width)), amps)
        if keyword == "READ":
            row, col, read_v = args
            return (self._row(parse_int(row)), self._col(parse_int(col)), self._volts(parse_number(read_v)))
        row, read_v = args  # READROW
        return (self._row(parse_int(row)), self._volts(parse_number(read_v)))

    def _parse_pulse_block(self, args: list[str]) -> tuple[Any, ...]:
        """``PULSEBLOCK <row0> <rows> <period_s> <amplitudes> <ticks> <counts>``, checked entry by entry."""
        row, count, period, amp_text, tick_text, count_text = args
        r0, n = self._row(parse_int(row)), parse_int(count)
        self._rows_span(r0, n)
        period_s = parse_number(period)
        if not 0 <= period_s <= MAX_WIDTH_S:
            raise FirmwareError("RANGE", f"row period {period_s:g} s outside [0, {MAX_WIDTH_S:g}] s")
        amps = tuple(self._volts(a) for a in parse_numbers(amp_text))
        ticks, counts = tuple(parse_ints(tick_text)), tuple(parse_ints(count_text))
        size = n * self.array.cols
        if not len(amps) == len(ticks) == len(counts) == size:
            raise FirmwareError(
                "SYNTAX",
                f"PULSEBLOCK of {n} rows needs {size} amplitudes, ticks and counts, "
                f"got {len(amps)}, {len(ticks)} and {len(counts)}",
            )
        for k, (a, t, c) in enumerate(zip(amps, ticks, counts, strict=True)):
            where = f"row {r0 + k // self.array.cols} col {k % self.array.cols}"
            if a == 0:
                if t or c:
                    raise FirmwareError(
                        "SYNTAX", f"{where}: amplitude 0 (no pulse) needs ticks 0 and count 0"
                    )
                continue
            if not 1 <= c <= MAX_PULSE_COUNT:
                raise FirmwareError("RANGE", f"{where}: count {c} outside [1, {MAX_PULSE_COUNT}]")
            if not MIN_WIDTH_S <= t * MIN_WIDTH_S <= MAX_WIDTH_S:
                raise FirmwareError(
                    "RANGE", f"{where}: width {t} ticks outside [1, {round(MAX_WIDTH_S / MIN_WIDTH_S)}]"
                )
        return (r0, n, period_s, amps, ticks, counts)

    def _echo(self, keyword: str, args: tuple[Any, ...]) -> str:
        words = [keyword]
        for arg in args:
            if isinstance(arg, tuple) and all(isinstance(a, int) for a in arg):
                words.append(",".join(map(str, arg)))
            elif isinstance(arg, tuple) and keyword == "PULSEBLOCK":
                words.append(",".join(echo_list_number(float(a)) for a in arg))
            elif isinstance(arg, tuple):
                words.append(",".join(echo_number(float(a)) for a in arg))
            elif isinstance(arg, int):
                words.append(str(arg))
            else:
                words.append(echo_number(float(arg)))
        if keyword not in ("ILIM", "BIAS"):
            words += ["ILIM", echo_number(self._need_ilim())]
        return " ".join(words)

    def _execute(self, keyword: str, args: tuple[Any, ...]) -> str:
        if keyword == "ILIM":
            self.ilim_a = float(args[0])
            return "OK"
        if keyword == "BIAS":
            rows, cols = (quantise_bias(np.array(a, dtype=float), BIAS_LSB_V) for a in args)
            self.lines.set_bias(rows, cols)
            return "OK"
        if keyword == "PULSE":
            r, c, amplitude, width = args
            return self._pulse(int(r), int(c), float(amplitude), float(width))
        if keyword == "PULSEROW":
            r, width, amps = args
            return self._pulse_row(int(r), float(width), amps)
        if keyword == "READ":
            r, c, read_v = args
            return self._read_one(int(r), int(c), float(read_v))
        if keyword == "READBLOCK":
            r0, n, read_v, reads = args
            return self._read_block(r0, n, float(read_v), int(reads))
        if keyword == "PULSEBLOCK":
            return self._pulse_block(*args)
        r, read_v = args
        return self._read_row(int(r), float(read_v))

    # -- protocol 1 ------------------------------------------------------------------------------
    def _v1(self, line: str) -> str:
        words = line.split()
        if not words:
            return "ERR SYNTAX empty command"
        try:
            return self._dispatch(words, strict=False)
        except FirmwareError as exc:
            return str(exc)
        except (TypeError, ValueError):
            return f"ERR SYNTAX bad arguments to {words[0]}"

    def _dispatch(self, words: list[str], strict: bool) -> str:
        keyword, args = words[0].upper(), words[1:]
        number = parse_number if strict else _strtod
        index = parse_int if strict else _atoi
        if keyword == "*IDN?":
            return self._cmd_STAR_IDN_Q()
        if keyword == "VER?":
            return self._cmd_VER_Q()
        if keyword == "SIZE?":
            return f"{self.array.rows},{self.array.cols}"
        if keyword == "TIME?":
            return f"{self.array.clock.now_s():.6f}"
        if keyword == "ILIM?":
            return "0" if self.ilim_a is None else f"{self.ilim_a:.6g}"
        if keyword == "RST" and not args:
            self.lines.set_bias(np.zeros(self.array.rows), np.zeros(self.array.cols))  # settles first
            self.selected, self.ilim_a, self.armed = None, None, None
            return "OK"
        if keyword == "LIMITS?" and strict:
            ranges = f"{MAX_ABS_V:g},{MIN_WIDTH_S:g},{MAX_WIDTH_S:g},{MIN_ILIM_A:g},{MAX_ILIM_A:g}"
            v3 = f",{MAX_ABS_BIAS_V:g},{BIAS_LSB_V:.6e},{READ_LSB_A:g},{MAX_PULSE_COUNT}"
            return ranges + (v3 if self.protocol >= 3 else "")
        if keyword == "BIAS?" and strict:
            return ",".join(f"{v:.6e}" for v in (*self.lines.row_v, *self.lines.col_v))
        if strict:
            raise FirmwareError("SYNTAX", f"unknown command {words[0]!r}")
        if keyword == "ILIM":
            (value,) = args
            self.ilim_a = self._ilim(number(value))
            return "OK"
        if keyword == "SEL":
            row, col = args
            self.selected = (self._row(index(row)), self._col(index(col)))
            return "OK"
        if keyword == "SEL?":
            r, c = self._selection()
            return f"{r},{c}"
        if keyword == "PULSE":
            amplitude, width = args
            self._need_ilim()
            r, c = self._selection()
            return self._pulse(r, c, self._volts(number(amplitude)), self._width(number(width)))
        if keyword == "PULSEROW":
            row, width, amplitudes = args
            self._need_ilim()
            amps = tuple(self._volts(number(a)) for a in amplitudes.split(","))
            self._check_count(amps)
            return self._pulse_row(self._row(index(row)), self._width(number(width)), amps)
        if keyword == "READ":
            (read_v,) = args
            self._need_ilim()
            r, c = self._selection()
            return self._read_one(r, c, self._volts(number(read_v)))
        if keyword == "READROW":
            row, read_v = args
            self._need_ilim()
            return self._read_row(self._row(index(row)), self._volts(number(read_v)))
        raise FirmwareError("SYNTAX", f"unknown command {words[0]!r}")

    # -- physics -------------------------------------------------------------------------------
    def _pulse(self, r: int, c: int, amplitude_v: float, width_s: float) -> str:
        volts = self.lines.bias_v[r].copy()  # the row's other devices keep their bias
        volts[c] = amplitude_v
        self.lines.drive(volts, width_s, "pulse", row=r)
        return "OK"

    def _pulse_row(self, r: int, width_s: float, amps: tuple[float, ...]) -> str:
        volts = np.array(amps, dtype=float)
        volts = np.where(volts == 0, self.lines.bias_v[r], volts)  # 0: not pulsed, the device keeps its bias
        self.lines.drive(volts, width_s, "pulse", row=r)
        return "OK"

    def _read_one(self, r: int, c: int, read_v: float) -> str:
        volts = self.lines.bias_v[r].copy()
        volts[c] = read_v
        t = self.array.clock.now_s()
        current = self._compliance(self.lines.read(volts, row=r)[c : c + 1], f"row {r} col {c}")
        return f"{t:.6f},{current[0]:.6e}"

    def _read_block(self, r0: int, n: int, read_v: float, reads: int = 1) -> str:
        """Rows r0 .. r0 + n - 1 read one after another, each ``reads`` times back to back as READROW
        reads it, averaged: ``<lsb_a>``, the n rows' start times, then the n x cols mean currents as
        integer codes of ``READ_LSB_A``, row-major."""
        times, codes = [], []
        volts = np.full(self.array.cols, read_v)
        for r in range(r0, r0 + n):
            times.append(f"{self.array.clock.now_s():.6f}")
            current = np.mean(
                [self._compliance(self.lines.read(volts, row=r), f"row {r}") for _ in range(reads)], axis=0
            )
            codes.append(",".join(str(int(c)) for c in np.rint(current / READ_LSB_A)))
        return f"{READ_LSB_A:g}," + ",".join(times) + "," + ",".join(codes)

    def _pulse_block(
        self,
        r0: int,
        n: int,
        period_s: float,
        amps: tuple[float, ...],
        ticks: tuple[int, ...],
        counts: tuple[int, ...],
    ) -> str:
        """Each row with a pulse in turn, its entries at once (each column its own amplitude, width and
        count: ``count`` pulses one pulse-timer tick apart); a row's pulses start ``period_s`` after the
        previous pulsed row's, or when its pulses end if later. Rows without a pulse take no time."""
        cols = self.array.cols
        a = np.array(amps, dtype=float).reshape(n, cols)
        w = np.array(ticks, dtype=float).reshape(n, cols) * MIN_WIDTH_S
        c = np.array(counts, dtype=int).reshape(n, cols)
        last: float | None = None
        for k in range(n):
            if not c[k].any():
                continue
            if last is not None:
                self.array.clock.sleep(last + period_s - self.array.clock.now_s())
            last = self.array.clock.now_s()
            self.lines.pulse_train(r0 + k, a[k], w[k], c[k], MIN_WIDTH_S)
        return "OK"

    def _read_row(self, r: int, read_v: float) -> str:
        volts = np.full(self.array.cols, read_v)
        t = self.array.clock.now_s()
        current = self._compliance(self.lines.read(volts, row=r), f"row {r}")
        return f"{t:.6f}," + ",".join(f"{i:.6e}" for i in current)

    # -- checks --------------------------------------------------------------------------------
    def _need_ilim(self) -> float:
        if self.ilim_a is None:
            raise FirmwareError("STATE", "set ILIM before pulsing or reading")
        return self.ilim_a

    def _selection(self) -> tuple[int, int]:
        if self.selected is None:
            raise FirmwareError("STATE", "no device selected (SEL row col)")
        return self.selected

    def _rows_span(self, r0: int, n: int) -> None:
        if not 1 <= n <= self.array.rows - r0:
            raise FirmwareError("RANGE", f"{n} rows from row {r0} outside 0..{self.array.rows - 1}")

    def _row(self, row: int) -> int:
        if not 0 <= row < self.array.rows:
            raise FirmwareError("RANGE", f"row {row} outside 0..{self.array.rows - 1}")
        return row

    def _col(self, col: int) -> int:
        if not 0 <= col < self.array.cols:
            raise FirmwareError("RANGE", f"column {col} outside 0..{self.array.cols - 1}")
        return col

    def _check_count(self, amps: tuple[float, ...]) -> None:
        if len(amps) != self.array.cols:
            raise FirmwareError("SYNTAX", f"PULSEROW needs {self.array.cols} amplitudes, got {len(amps)}")

    @staticmethod
    def _volts(v: float) -> float:
        if not abs(v) <= MAX_ABS_V:
            raise FirmwareError("RANGE", f"{v:g} V outside +-{MAX_ABS_V:g} V")
        return v

    def _width(self, w: float) -> float:
        ok = MIN_WIDTH_S <= w <= MAX_WIDTH_S if self.protocol >= 2 else 0 < w <= MAX_WIDTH_S
        if not ok:
            raise FirmwareError("RANGE", f"pulse width {w:g} s outside [{MIN_WIDTH_S:g}, {MAX_WIDTH_S:g}] s")
        return w

    @staticmethod
    def _ilim(i: float) -> float:
        if not MIN_ILIM_A <= i <= MAX_ILIM_A:
            raise FirmwareError("RANGE", f"ILIM {i:g} A outside [{MIN_ILIM_A:g}, {MAX_ILIM_A:g}] A")
        return i

    def _compliance(self, current: np.ndarray, where: str) -> np.ndarray:
        limit = self._need_ilim()
        over = np.abs(current) > limit
        if over.any():
            raise FirmwareError("COMPLIANCE", f"{where}: current limited at {limit:g} A")
        return current

    def _cmd_STAR_IDN_Q(self) -> str:
        a = self.array
        return f"HWLOOP,XBAR-SIM,{a.rows}x{a.cols}-seed{a.seed},{FIRMWARE_VERSIONS[self.protocol]}"

    def _cmd_VER_Q(self) -> str:
        return FIRMWARE_VERSIONS[self.protocol]


def _strtod(text: str) -> float:
    """C ``strtod`` as v1 firmwares use it: the longest numeric prefix (inf, nan included), the rest
    ignored; ValueError only when there is no number at all."""
    m = _STRTOD.match(text)
    if m is None:
        raise ValueError(f"no number in {text!r}")
    return float(m.group(1))


def _atoi(text: str) -> int:
    """C ``atoi``-like parsing of an index (leading digits; the rest ignored)."""
    m = re.match(r"\s*([+-]?\d+)", text)
    if m is None:
        raise ValueError(f"no integer in {text!r}")
    return int(m.group(1))
