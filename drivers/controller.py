"""Crossbar controller driver: the line protocol of ``docs/crossbar-controller-protocol.md`` over serial.

Protocol v2 (negotiated when the port opens): every line carries a sequence number and a CRC-16, so a
corrupted line is refused and a late reply is never taken for the answer to a later command. Every
command that acts on the array (``ILIM``, ``PULSE``, ``PULSEROW``, ``READ``, ``READROW``) runs in two
phases: the controller echoes the values it parsed, the driver compares them with what it meant, and
only then sends ``GO``; a misparsed command never executes.

Protocol v3.1 adds block commands: ``read_rows`` (``READBLOCK``: many rows in one frame, the currents as
ADC codes) and ``pulse_block`` (``PULSEBLOCK``: a pulse train per device, its own amplitude, width and
count, many rows in one frame). Every entry of a block is checked before the first byte is sent; the
driver splits a block into as many frames as the 4096-byte line needs.

Protocol v3 adds line biases: ``set_line_bias`` holds every row and column line at an idle voltage
(``BIAS``, two-phase like the others), refused before anything is sent when a line or a device between
two lines exceeds the ``SafetyLimits`` or reaches the card's write threshold. Reads and pulses are taken
as in v2 (the addressed devices see the commanded voltage, not bias plus it); the lines return to the held
bias afterwards. A v2 controller has no bias (``bias_capable`` False).

A v1 controller (no CRC, no echo) stays readable: identify, compliance, reads. Its pulses are refused
unless the user opts in (``allow_v1_pulses=True``, CLI ``--allow-v1-pulses``).

Every request is checked against the ``SafetyLimits``, the array size and the controller's hardware
ranges (``LIMITS?``) before anything is sent; ``ERR`` replies become typed errors
(``ERR COMPLIANCE`` -> ``ComplianceError``).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from drivers.array import Reading, RowReading, RowTrain, host_timed_row_train
from drivers.clock import Clock, WallClock
from drivers.errors import ComplianceError, InstrumentError, InstrumentStateError, ProtocolError, SafetyError
from drivers.safety import PulseRateGuard, SafeOffOnClose, SafetyLimits
from drivers.transport import SerialTransport, Transport
from drivers.xbar_protocol import (
    BIAS_PROTOCOL,
    BLOCK_MINOR,
    MAX_BLOCK_READS,
    MAX_LINE_BYTES,
    SEQ_MODULUS,
    FrameError,
    format_number,
    frame,
    parse_int,
    parse_number,
    parse_numbers,
    quantise_bias,
    read_block_rows_per_frame,
    sent_value,
    unframe,
)

__all__ = ["CrossbarController", "HardwareRanges", "Reading", "RowReading", "RowTrain"]

_V1_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
EchoValue = int | float | str | tuple[float, ...]


class HardwareRanges(NamedTuple):
    """What the controller itself can do (``LIMITS?``): |V| (V), pulse widths (s), ILIM (A), and (v3) the
    line-bias range |V| and its DAC step (V); 0 and 0 on a controller without line biases; (v3.1) the
    read ADC's step (A) of ``READBLOCK`` replies and the most pulses a ``PULSEBLOCK`` entry may ask for."""

    max_abs_v: float
    min_width_s: float
    max_width_s: float
    min_ilim_a: float
    max_ilim_a: float
    max_abs_bias_v: float = 0.0
    bias_lsb_v: float = 0.0
    read_lsb_a: float = 0.0
    max_pulse_count: float = 0.0


V1_RANGES = HardwareRanges(math.inf, 0.0, 1.0, 0.0, math.inf)  # v1 only promises widths in (0, 1] s


class CrossbarController(SafeOffOnClose):
    """A serial crossbar controller addressing ``rows`` x ``cols`` devices; use as a context manager.

    ``allow_v1_pulses``: pulse a controller that speaks only protocol v1 (no CRC, no echo) anyway.
    """

    model = "crossbar controller"

    def __init__(
        self,
        transport: Transport,
        limits: SafetyLimits,
        clock: Clock | None = None,
        *,
        allow_v1_pulses: bool = False,
    ) -> None:
        if not isinstance(limits, SafetyLimits):
            raise SafetyError("opening an instrument for sourcing requires SafetyLimits")
        self.transport = transport
        self.limits = limits
        self.clock: Clock = clock or WallClock()
        self.allow_v1_pulses = allow_v1_pulses
        self.compliance_set_a: float | None = None
        self.stale_replies = 0  # late replies to earlier commands, recognised by their sequence number
        self._rate = PulseRateGuard(limits, self.clock)
        self._seq = 0
        self._v1_idn = ""
        self._v1_suspect = False
        self.version = "1"
        transport.open()
        if isinstance(transport, SerialTransport):
            transport.max_line_bytes = MAX_LINE_BYTES
        self.protocol = self._negotiate()
        self.rows, self.cols = self._size()
        self.hardware = self._hardware_ranges()
        self.row_bias_v = np.zeros(self.rows)  # the line biases this session set (V); RST: all 0 V
        self.col_bias_v = np.zeros(self.cols)

    # -- protocol plumbing -------------------------------------------------------------------
    def _negotiate(self) -> int:
        """3 or 2 if the controller answers a framed ``VER?`` (its major version), 1 if it answers only the
        unframed one."""
        reply = self._v2_exchange("VER?", negotiating=True)
        if reply is not None:
            if not reply.startswith(("2.", "3.")):
                raise ProtocolError(
                    f"{self.transport.name}: framed VER? answered {reply[:40]!r}, not 2.x or 3.x"
                )
            self.version = reply
            return int(reply[0])
        version = self.transport.query("VER?").strip()
        if not version.startswith("1."):
            raise ProtocolError(
                f"{self.transport.name}: controller answers VER? with {version[:40]!r} but not in protocol v2"
            )
        self._v1_idn = self.transport.query("*IDN?").strip()  # the resync marker of a v1 link
        return 1

    def _v2_exchange(self, body: str, negotiating: bool = False) -> str | None:
        """Send ``body`` framed with the next sequence number; return the payload of the reply carrying
        that number. Late replies (other numbers) are skipped; a damaged reply is a ``ProtocolError``."""
        self._seq = self._seq % (SEQ_MODULUS - 1) + 1
        seq, line = self._seq, frame(self._seq, body)
        if len(line) + 1 > MAX_LINE_BYTES:
            raise InstrumentError(
                f"{self.transport.name}: command of {len(line) + 1} bytes exceeds the protocol's "
                f"{MAX_LINE_BYTES}-byte line"
            )
        self.transport.write(line)
        deadline = time.monotonic() + self.transport.timeout_s
        while True:
            reply = self.transport.read(max(deadline - time.monotonic(), 1e-3)).strip()
            if not reply.startswith("@"):
                if negotiating:
                    return None
                raise ProtocolError(f"{self.transport.name}: unframed reply {reply[:60]!r} to {body!r}")
            try:
                got, payload = unframe(reply)
            except FrameError as exc:
                raise ProtocolError(f"{self.transport.name}: damaged reply to {body!r}: {exc}") from None
            if got == seq:
                return payload
            if got == 0:
                raise ProtocolError(
                    f"{self.transport.name}: the controller could not read {body!r}: {payload}"
                )
            self.stale_replies += 1  # a late answer to an earlier command: never this command's answer

    def _ask(self, command: str) -> str:
        """Send one command; return its value reply, raising typed errors for ``ERR`` replies."""
        reply = (self._v2_exchange(command) or "") if self.protocol >= 2 else self._v1_exchange(command)
        if reply.startswith("ERR"):
            code, _, message = reply[3:].strip().partition(" ")
            if code == "COMPLIANCE":
                raise ComplianceError(f"{self.transport.name}: {message} (stuck-on or shorted device?)")
            raise InstrumentError(f"{self.transport.name} refused {_short(command)!r}: {code} {message}")
        return reply

    def _v1_exchange(self, command: str) -> str:
        """One v1 command and its reply. v1 lines carry no sequence number, so after a failed exchange
        (a reply may still be on its way) the link is resynchronised on ``*IDN?`` first: every line up
        to the identification string is discarded, so a late reply never answers this command."""
        if self._v1_suspect:
            self.transport.write("*IDN?")
            deadline = time.monotonic() + self.transport.timeout_s
            while self.transport.read(max(deadline - time.monotonic(), 1e-3)).strip() != self._v1_idn:
                self.stale_replies += 1
            self._v1_suspect = False
        try:
            return self.transport.query(command).strip()
        except InstrumentError:
            self._v1_suspect = True
            raise

    def _ok(self, reply: str, command: str) -> None:
        if reply != "OK":
            raise ProtocolError(f"{self.transport.name}: expected OK to {command!r}, got {reply[:60]!r}")

    def _act(self, command: str, expected: Sequence[EchoValue]) -> str:
        """Two-phase command (v2): arm it, check the controller's echo against ``expected`` (the command's
        arguments as sent, then ILIM), and only then ``GO``; returns the GO's reply."""
        echo = self._ask(command)
        armed = self._seq
        if not _echo_matches(echo, command.split(" ", 1)[0], expected):
            raise ProtocolError(
                f"{self.transport.name}: the controller parsed {command!r} as {echo[:120]!r}, not as sent "
                "(ILIM included); nothing was executed"
            )
        try:
            return self._ask(f"GO {armed}")
        except ComplianceError:
            raise
        except InstrumentError as exc:
            if f"refused 'GO {armed}'" not in str(exc):
                raise
            reason = str(exc).partition(f"refused 'GO {armed}': ")[2]
            raise InstrumentError(
                f"{self.transport.name} refused {_short(command)!r} at GO: {reason}"
            ) from None

    def _numbers(self, reply: str, n: int, command: str) -> np.ndarray:
        try:
            if self.protocol >= 2:  # the whole reply in one pass of the strict grammar
                values = np.array(parse_numbers(reply), dtype=float)
            else:
                values = np.array([_parse_v1_number(x) for x in reply.split(",")], dtype=float)
        except ValueError:
            raise ProtocolError(f"{self.transport.name}: cannot parse numbers from {reply[:60]!r}") from None
        if len(values) != n:
            raise ProtocolError(
                f"{self.transport.name}: expected {n} values to {command!r}, got {len(values)}"
            )
        return values

    def _size(self) -> tuple[int, int]:
        rows, cols = self._numbers(self._ask("SIZE?"), 2, "SIZE?")
        return int(rows), int(cols)

    def _hardware_ranges(self) -> HardwareRanges:
        if self.protocol < 2:
            return V1_RANGES
        n = 9 if self.block_capable else 7 if self.protocol >= BIAS_PROTOCOL else 5
        return HardwareRanges(*(float(x) for x in self._numbers(self._ask("LIMITS?"), n, "LIMITS?")))

    @property
    def bias_capable(self) -> bool:
        """Whether the controller can hold line biases (protocol v3); a v2 controller's lines idle at 0 V."""
        return self.protocol >= BIAS_PROTOCOL

    @property
    def block_capable(self) -> bool:
        """Whether the controller has the block commands ``READBLOCK`` / ``PULSEBLOCK`` (protocol v3.1+)."""
        if self.protocol < BIAS_PROTOCOL:
            return False
        minor = self.version.split(".")[1] if self.version.count(".") >= 1 else "0"
        return self.protocol > BIAS_PROTOCOL or (minor.isdigit() and int(minor) >= BLOCK_MINOR)

    def _require_block(self, what: str) -> None:
        if not self.block_capable:
            raise InstrumentStateError(
                f"{self.transport.name} speaks crossbar protocol {self.version}: no {what} "
                "(block commands need v3.1)"
            )

    def _echo_ilim(self) -> list[EchoValue]:
        assert self.compliance_set_a is not None
        return ["ILIM", sent_value(self.compliance_set_a)]

    def _check_address(self, row: int, col: int | None = None) -> None:
        if not (isinstance(row, int | np.integer) and 0 <= row < self.rows):
            raise SafetyError(f"row {row!r} is outside the {self.rows}x{self.cols} array")
        if col is not None and not (isinstance(col, int | np.integer) and 0 <= col < self.cols):
            raise SafetyError(f"column {col!r} is outside the {self.rows}x{self.cols} array")

    def _require_compliance(self) -> None:
        if self.compliance_set_a is None:
            raise InstrumentStateError(f"{self.transport.name}: set the compliance before pulsing or reading")

    def _check_hardware(self, volts: float, width_s: float | None = None) -> None:
        hw = self.hardware
        if abs(volts) > hw.max_abs_v:
            raise SafetyError(f"{volts:g} V is beyond the controller's hardware range of ±{hw.max_abs_v:g} V")
        if width_s is not None and not hw.min_width_s <= width_s <= hw.max_width_s:
            raise SafetyError(
                f"pulse width {width_s:g} s is outside the controller's hardware range "
                f"[{hw.min_width_s:g}, {hw.max_width_s:g}] s"
            )

    def check_pulses_allowed(self) -> None:
        """Raise ``SafetyError`` if this session may not pulse (a v1 controller without the opt-in)."""
        self._check_v1_pulse()

    def _check_v1_pulse(self) -> None:
        if self.protocol < 2 and not self.allow_v1_pulses:
            raise SafetyError(
                f"{self.transport.name} speaks crossbar protocol v1 (no CRC, no echo before acting): one "
                "corrupted byte can change a pulse's amplitude or width. Update its firmware to v2, or opt "
                "in with allow_v1_pulses=True (CLI: --allow-v1-pulses)"
            )

    # -- operations --------------------------------------------------------------------------
    def identify(self) -> str:
        """The controller's identification string."""
        return self._ask("*IDN?")

    def firmware_version(self) -> str:
        """The firmware version string."""
        return self._ask("VER?")

    def reset(self) -> None:
        """All lines to 0 V, selection cleared, compliance cleared (must be set again)."""
        self._ok(self._ask("RST"), "RST")
        self.compliance_set_a = None
        self.row_bias_v, self.col_bias_v = np.zeros(self.rows), np.zeros(self.cols)

    def set_line_bias(
        self,
        row_v: Sequence[float] | np.ndarray,
        col_v: Sequence[float] | np.ndarray,
        *,
        write_threshold_v: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hold every row line at ``row_v`` and every column line at ``col_v`` (V) between commands, so
        device (r, c) idles at row_v[r] - col_v[c]. ``write_threshold_v``: the devices' pulse threshold
        (V, from their card); a device bias reaching it is refused. Nothing is sent unless every value
        passes the ``SafetyLimits``, the threshold and the controller's bias range (``LIMITS?``).
        Returns the (row, col) voltages the controller holds (on its DAC grid)."""
        if not self.bias_capable:
            raise InstrumentStateError(
                f"{self.transport.name} speaks crossbar protocol v{self.protocol}: no line biases "
                "(its lines idle at 0 V); line biases need a v3 controller"
            )
        if len(row_v) != self.rows or len(col_v) != self.cols:
            raise SafetyError(
                f"set_line_bias needs {self.rows} row and {self.cols} column voltages, "
                f"got {len(row_v)} and {len(col_v)}"
            )
        hw = self.hardware
        rows = quantise_bias(np.asarray(row_v, dtype=float), hw.bias_lsb_v)
        cols = quantise_bias(np.asarray(col_v, dtype=float), hw.bias_lsb_v)
        rows_ok, cols_ok = self.limits.check_line_bias(list(rows), list(cols), write_threshold_v)
        worst = max(map(abs, [*rows_ok, *cols_ok]), default=0.0)
        if worst > hw.max_abs_bias_v:
            raise SafetyError(
                f"line bias {worst:g} V is beyond the controller's bias range of ±{hw.max_abs_bias_v:g} V"
            )
        r_text, c_text = ",".join(map(format_number, rows)), ",".join(map(format_number, cols))
        command = f"BIAS {r_text} {c_text}"
        expected: list[EchoValue] = [
            tuple(float(x) for x in r_text.split(",")),
            tuple(float(x) for x in c_text.split(",")),
        ]
        self._ok(self._act(command, expected), command)
        self.row_bias_v = quantise_bias(np.array(expected[0], dtype=float), hw.bias_lsb_v)
        self.col_bias_v = quantise_bias(np.array(expected[1], dtype=float), hw.bias_lsb_v)
        return self.row_bias_v.copy(), self.col_bias_v.copy()

    def line_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The (row, col) line voltages (V) the controller says it holds (``BIAS?``); zeros on v1/v2."""
        if not self.bias_capable:
            return np.zeros(self.rows), np.zeros(self.cols)
        values = self._numbers(self._ask("BIAS?"), self.rows + self.cols, "BIAS?")
        return values[: self.rows], values[self.rows :]

    def set_compliance(self, current_a: float) -> None:
        """Set the current limit (A) of every read and pulse."""
        current_a = self.limits.check_compliance(current_a)
        hw = self.hardware
        if not hw.min_ilim_a <= current_a <= hw.max_ilim_a:
            raise SafetyError(
                f"compliance {current_a:g} A is outside the controller's hardware range "
                f"[{hw.min_ilim_a:g}, {hw.max_ilim_a:g}] A"
            )
        command = f"ILIM {format_number(current_a)}"
        if self.protocol >= 2:
            self._ok(self._act(command, [sent_value(current_a)]), command)
        else:
            self._ok(self._ask(command), command)
        self.compliance_set_a = current_a

    def select(self, row: int, col: int) -> None:
        """Select the device at (row, col) for v1 ``PULSE`` / ``READ`` (v2 commands carry the address:
        there it only checks it)."""
        self._check_address(row, col)
        if self.protocol < 2:
            self._ok(self._ask(f"SEL {row} {col}"), "SEL")

    def pulse_device(self, row: int, col: int, amplitude_v: float, width_s: float) -> None:
        """One voltage pulse (V, s) on the device at (row, col)."""
        amplitude_v, width_s = self.limits.check_pulse(amplitude_v, width_s)
        self._check_address(row, col)
        self._require_compliance()
        self._check_hardware(amplitude_v, width_s)
        self._check_v1_pulse()
        self._rate.check()
        amp, width = format_number(amplitude_v), format_number(width_s)
        if self.protocol >= 2:
            self._rate.record()
            command = f"PULSE {row} {col} {amp} {width}"
            expected = [int(row), int(col), float(amp), float(width), *self._echo_ilim()]
            self._ok(self._act(command, expected), command)
            return
        self.select(row, col)
        self._rate.record()
        self._ok(self._ask(f"PULSE {amp} {width}"), "PULSE")

    def pulse_row(self, row: int, amplitudes_v: Sequence[float], width_s: float) -> None:
        """Pulse every device of ``row`` at once, column j with ``amplitudes_v[j]`` (V; 0 = no pulse)."""
        self._check_address(row)
        if len(amplitudes_v) != self.cols:
            raise SafetyError(
                f"pulse_row needs {self.cols} amplitudes (one per column), got {len(amplitudes_v)}"
            )
        checked = [self.limits.check_pulse(a, width_s)[0] for a in amplitudes_v]
        width_s = self.limits.check_pulse(0.0, width_s)[1]
        self._require_compliance()
        for a in checked:
            self._check_hardware(a, width_s)
        self._check_v1_pulse()
        self._rate.check()
        self._rate.record()
        amps = [format_number(a) for a in checked]
        command = f"PULSEROW {row} {format_number(width_s)} " + ",".join(amps)
        if self.protocol >= 2:
            expected = [int(row), sent_value(width_s), tuple(float(a) for a in amps), *self._echo_ilim()]
            self._ok(self._act(command, expected), command)
        else:
            self._ok(self._ask(command), command)

    def read_device(self, row: int, col: int, read_v: float) -> Reading:
        """Current (A) of the device at (row, col) at ``read_v`` (V), with the controller's timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row, col)
        self._require_compliance()
        self._check_hardware(read_v)
        v = format_number(read_v)
        if self.protocol >= 2:
            command = f"READ {row} {col} {v}"
            reply = self._act(command, [int(row), int(col), float(v), *self._echo_ilim()])
        else:
            self.select(row, col)
            command = f"READ {v}"
            reply = self._ask(command)
        t_s, i_a = self._numbers(reply, 2, command)
        return Reading(float(t_s), float(i_a))

    def read_row(self, row: int, read_v: float) -> RowReading:
        """Currents (A) of every device of ``row`` at ``read_v`` (V), one CSV line, and its timestamp (s)."""
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row)
        self._require_compliance()
        self._check_hardware(read_v)
        command = f"READROW {row} {format_number(read_v)}"
        if self.protocol >= 2:
            reply = self._act(command, [int(row), sent_value(read_v), *self._echo_ilim()])
        else:
            reply = self._ask(command)
        values = self._numbers(reply, self.cols + 1, command)
        return RowReading(float(values[0]), values[1:])

    def read_rows(self, row0: int, count: int, read_v: float, reads: int = 1) -> RowTrain:
        """Currents (A) of rows ``row0`` .. ``row0 + count - 1`` at ``read_v`` (V), shape (count, cols),
        each row read as ``read_row`` reads it, ``reads`` times back to back and averaged on the
        controller, and each row's timestamp (s), in as few ``READBLOCK`` frames as the line limit allows
        (v3.1)."""
        self._require_block("READBLOCK")
        read_v = self.limits.check_voltage(read_v, "read voltage")
        self._check_address(row0)
        if not (isinstance(count, int | np.integer) and 1 <= count <= self.rows - row0):
            raise SafetyError(f"{count!r} rows from row {row0} are outside the {self.rows}x{self.cols} array")
        if not (isinstance(reads, int | np.integer) and 1 <= reads <= MAX_BLOCK_READS):
            raise SafetyError(f"READBLOCK averages 1 to {MAX_BLOCK_READS} reads, got {reads!r}")
        self._require_compliance()
        self._check_hardware(read_v)
        assert self.compliance_set_a is not None
        per_frame = read_block_rows_per_frame(
            self.cols, sent_value(self.compliance_set_a), self.hardware.read_lsb_a
        )
        if per_frame < 1:
            raise InstrumentError(f"{self.transport.name}: one row of {self.cols} codes exceeds a frame")
        times, currents = np.empty(count), np.empty((count, self.cols))
        for start in range(0, count, per_frame):
            n = min(per_frame, count - start)
            command = f"READBLOCK {row0 + start} {n} {format_number(read_v)} {reads}"
            expected = [int(row0 + start), int(n), sent_value(read_v), int(reads), *self._echo_ilim()]
            reply = self._act(command, expected)
            values = self._numbers(reply, 1 + n + n * self.cols, command)
            times[start : start + n] = values[1 : 1 + n]
            currents[start : start + n] = values[1 + n :].reshape(n, self.cols) * values[0]
        return RowTrain(times, currents)

    def pulse_block(
        self,
        row0: int,
        amplitudes_v: np.ndarray,
        widths_s: np.ndarray,
        counts: np.ndarray,
    ) -> int:
        """Pulse trains on rows ``row0`` .. ``row0 + n - 1`` (arrays of shape (n, cols)): device (r, c)
        gets ``counts[r, c]`` pulses of ``amplitudes_v[r, c]`` (V) and ``widths_s[r, c]`` (s, on the
        controller's pulse-timer grid, ``LIMITS?`` min width), count 0 and amplitude 0 = no pulse. Rows
        are pulsed one after another at most ``max_pulses_per_s`` rows per second (each pulsed row counts
        as one pulse against the limit). Every entry is checked against the ``SafetyLimits`` and the
        controller's ranges before the first byte is sent; a ``SafetyError`` names the first refused
        entry. Returns the number of ``PULSEBLOCK`` frames sent (v3.1)."""
        self._require_block("PULSEBLOCK")
        amps = np.asarray(amplitudes_v, dtype=float)
        widths, counts = np.asarray(widths_s, dtype=float), np.asarray(counts)
        if (
            amps.ndim != 2
            or amps.shape[1] != self.cols
            or widths.shape != amps.shape
            or counts.shape != amps.shape
        ):
            raise SafetyError(
                f"pulse_block needs amplitudes, widths and counts of one shape (rows, {self.cols}), got "
                f"{amps.shape}, {widths.shape} and {counts.shape}"
            )
        n_rows = amps.shape[0]
        self._check_address(row0)
        if not 1 <= n_rows <= self.rows - row0:
            raise SafetyError(f"{n_rows} rows from row {row0} are outside the {self.rows}x{self.cols} array")
        self._require_compliance()
        self._check_v1_pulse()
        tick = self.hardware.min_width_s
        ticks = np.where(counts > 0, np.rint(widths / tick), 0).astype(np.int64)
        for r, c in zip(*np.nonzero((counts != 0) | (amps != 0)), strict=True):
            where = f"PULSEBLOCK entry row {row0 + r} col {c}"
            try:
                most = self.hardware.max_pulse_count
                if not (float(counts[r, c]).is_integer() and 1 <= counts[r, c] <= most):
                    raise SafetyError(f"count {counts[r, c]:g} outside 1..{most:g}")
                if amps[r, c] == 0:
                    raise SafetyError("amplitude 0 (no pulse) needs count 0")
                self.limits.check_pulse(float(amps[r, c]), float(widths[r, c]))
                self.limits.check_pulse(float(amps[r, c]), float(ticks[r, c] * tick))  # as it will run
                self._check_hardware(float(amps[r, c]), float(ticks[r, c] * tick))
            except SafetyError as exc:
                raise SafetyError(f"{where}: {exc}") from None
        period_s = 1.0 / self.limits.max_pulses_per_s
        if period_s > self.hardware.max_width_s:
            raise SafetyError(
                f"a pulse rate limit of {self.limits.max_pulses_per_s:g}/s is below what PULSEBLOCK can "
                "space rows by; use pulse_row"
            )
        rows_text = [
            (
                ",".join(format_number(a) if k else "0" for a, k in zip(amps[r], counts[r], strict=True)),
                ",".join(map(str, ticks[r])),
                ",".join(str(int(k)) for k in counts[r]),
            )
            for r in range(n_rows)
        ]
        frames, start = 0, 0
        room = MAX_LINE_BYTES - 80  # head, period, ILIM of the echo, CRC
        while start < n_rows:
            stop, size = start, 0
            while stop < n_rows and size + sum(map(len, rows_text[stop])) + 3 <= room:
                size += sum(map(len, rows_text[stop])) + 3
                stop += 1
            if stop == start:
                raise InstrumentError(f"{self.transport.name}: one row of PULSEBLOCK exceeds a frame")
            if counts[start:stop].any():
                self._send_pulse_block(row0 + start, rows_text[start:stop], period_s)
                frames += 1
            start = stop
        return frames

    def _send_pulse_block(self, row0: int, rows_text: list[tuple[str, str, str]], period_s: float) -> None:
        """One PULSEBLOCK frame (rows already checked), keeping the pulse-rate limit between frames."""
        amp_text, tick_text, count_text = (",".join(part) for part in zip(*rows_text, strict=True))
        n = len(rows_text)
        command = f"PULSEBLOCK {row0} {n} {format_number(period_s)} {amp_text} {tick_text} {count_text}"
        expected: list[EchoValue] = [
            int(row0),
            int(n),
            sent_value(period_s),
            tuple(float(a) for a in amp_text.split(",")),
            tuple(float(t) for t in tick_text.split(",")),
            tuple(float(k) for k in count_text.split(",")),
            *self._echo_ilim(),
        ]
        self._rate.wait_until_allowed()
        self._ok(self._act(command, expected), command)
        self._rate.record()  # conservative: the reply comes after the frame's last row started

    def read_row_train(self, row: int, read_v: float, every_s: float, count: int) -> RowTrain:
        """``count`` reads of ``row`` at ``read_v`` (V), waiting ``every_s`` (s) between them (host-timed:
        the spacing is every_s plus one read's round trip; use the returned controller timestamps)."""
        return host_timed_row_train(self, row, read_v, every_s, count)

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on the controller's clock (virtual time on the simulated lab)."""
        self.clock.sleep(seconds)

    # -- lifetime ----------------------------------------------------------------------------
    def reconnect(self) -> None:
        """Reopen a dropped link; the controller's state is unknown, so compliance must be set again."""
        self.transport.reconnect()
        self.compliance_set_a = None
        self.safe_off()

    def safe_off(self) -> None:
        """Best effort: every line back to 0 V (``RST``); never raises."""
        with contextlib.suppress(Exception):  # the link may be down: there is nothing more a driver can do
            self.reset()


def _short(command: str, most: int = 80) -> str:
    """A command as error messages quote it: block commands can be 4 kB long."""
    return command if len(command) <= most else command[: most - 3] + "..."


def _parse_v1_number(text: str) -> float:
    """A v1 reply number: decimal or exponent notation, finite (no inf, nan, '_' or junk)."""
    if _V1_NUMBER.fullmatch(text) is None:
        raise ValueError(text)
    return float(text)


def _echo_matches(echo: str, keyword: str, expected: Sequence[EchoValue]) -> bool:
    """Whether ``ECHO <keyword> <values...>`` carries exactly ``expected`` (numbers to 1e-6 relative:
    the echo has 7 significant digits of what the controller parsed from our 6)."""
    words = echo.split(" ")
    if len(words) != 2 + len(expected) or words[0] != "ECHO" or words[1].upper() != keyword.upper():
        return False
    try:
        for word, want in zip(words[2:], expected, strict=True):
            if isinstance(want, str):
                ok = word.upper() == want.upper()
            elif isinstance(want, int):
                ok = parse_int(word) == want
            elif isinstance(want, tuple):
                got = parse_numbers(word)
                ok = len(got) == len(want) and all(
                    math.isclose(g, w, rel_tol=1e-6, abs_tol=0.0) for g, w in zip(got, want, strict=True)
                )
            else:
                ok = math.isclose(parse_number(word), want, rel_tol=1e-6, abs_tol=0.0)
            if not ok:
                return False
    except ValueError:
        return False
    return True
