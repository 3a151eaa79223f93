"""Crossbar controller line protocol v2/v3 framing: CRC-16, sequence numbers, the strict number grammar.

The one owner of the wire format of ``docs/crossbar-controller-protocol.md`` sections "Version 2" and
"Version 3" (v3 is v2's framing plus the line-bias command ``BIAS``); the
driver (``drivers.controller``) and the simulated firmware (``drivers.sim.xbar_firmware``) both use it.

A v2 line is ``@<seq> <body>*<CRC>``: ``seq`` a decimal 0..65535 without leading zeros, ``body``
printable ASCII without ``@``, ``CRC`` four upper-case hex digits of CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR; check value 0x29B1 for
``123456789``) over every byte from the ``@`` to the last byte of the body.
"""

from __future__ import annotations

import binascii
import math
import re
from typing import Any

import numpy as np

PROTOCOL_VERSION = 3  # the newest version hwloop speaks; 2 and 1 are negotiated down
BIAS_PROTOCOL = 3  # first version with line biases (``BIAS``, ``BIAS?``, the longer ``LIMITS?``)
BLOCK_MINOR = 1  # v3.1 adds the block commands ``READBLOCK`` and ``PULSEBLOCK`` (and two more ``LIMITS?``)
MAX_LINE_BYTES = 4096  # longest line either side may send, terminator included
INTER_BYTE_TIMEOUT_S = 0.05  # the firmware drops a partial line after this much silence
ARM_TIMEOUT_S = 1.0  # an armed command not confirmed by GO within this time is dropped
SEQ_MODULUS = 65536  # host sequence numbers run 1..65535 and wrap to 1; 0 marks frame errors
MAX_NUMBER_CHARS = 24
ARMED_COMMANDS = frozenset(
    {"ILIM", "PULSE", "PULSEROW", "READ", "READROW", "BIAS", "READBLOCK", "PULSEBLOCK"}
)
MAX_BLOCK_READS = 64  # READBLOCK averages at most this many reads per device on the controller
BAUD_BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit per byte on the wire

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_LIST = re.compile(rf"{_NUMBER.pattern}(?:,{_NUMBER.pattern})*")
_INTEGER = re.compile(r"0|[1-9][0-9]{0,8}")
_INTEGER_LIST = re.compile(rf"(?:{_INTEGER.pattern})(?:,(?:{_INTEGER.pattern}))*")
_FRAME = re.compile(r"@(0|[1-9][0-9]{0,4}) ([\x20-\x3f\x41-\x7e]*)\*([0-9A-F]{4})")
_BODY = re.compile(r"[\x20-\x3f\x41-\x7e]*")


class FrameError(ValueError):
    """A line that is not a valid v2 frame (bad shape, bad characters, or a CRC mismatch)."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF, unreflected, xorout 0)."""
    return binascii.crc_hqx(data, 0xFFFF)


def frame(seq: int, body: str) -> str:
    """The v2 line (without its ``\\n``) carrying ``body`` with sequence number ``seq``."""
    if _BODY.fullmatch(body) is None:
        raise ValueError(f"a frame body is printable ASCII without '@', got {body[:60]!r}")
    head = f"@{seq} {body}"
    return f"{head}*{crc16(head.encode('ascii')):04X}"


def unframe(line: str) -> tuple[int, str]:
    """(seq, body) of a v2 line (terminator stripped); ``FrameError`` naming what is wrong."""
    m = _FRAME.fullmatch(line)
    if m is None:
        raise FrameError("not a v2 frame (@<seq> <body>*<CRC16>)")
    seq = int(m.group(1))
    if seq >= SEQ_MODULUS:
        raise FrameError(f"sequence number {seq} outside 0..{SEQ_MODULUS - 1}")
    head = line[: m.start(3) - 1]
    computed = crc16(head.encode("ascii"))
    if computed != int(m.group(3), 16):
        raise FrameError(f"CRC mismatch (line says {m.group(3)}, computed {computed:04X})")
    return seq, m.group(2)


def parse_number(text: str) -> float:
    """A number in the strict grammar ``-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`` (at most 24
    characters; no inf, nan, leading '+', leading '.', hex, spaces or trailing characters); ValueError."""
    if len(text) > MAX_NUMBER_CHARS or _NUMBER.fullmatch(text) is None:
        raise ValueError(f"not a number in the protocol's grammar: {text[:30]!r}")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text!r}")
    return value


def parse_numbers(text: str) -> list[float]:
    """A comma-separated list of ``parse_number`` numbers (a row reply), checked in one pass; ValueError.

    The same grammar, length limit and range as ``parse_number`` applied to every element."""
    if _NUMBER_LIST.fullmatch(text) is None:
        raise ValueError(f"not a list of numbers in the protocol's grammar: {text[:30]!r}")
    parts = text.split(",")
    if max(map(len, parts)) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number longer than {MAX_NUMBER_CHARS} characters in {text[:30]!r}")
    values = list(map(float, parts))
    if not all(map(math.isfinite, values)):
        raise ValueError(f"number out of range in {text[:30]!r}")
    return values


def parse_int(text: str) -> int:
    """A non-negative integer ``0|[1-9][0-9]{0,8}`` (no sign, no leading zeros); ValueError."""
    if _INTEGER.fullmatch(text) is None:
        raise ValueError(f"not an index in the protocol's grammar: {text[:30]!r}")
    return int(text)


def parse_ints(text: str) -> list[int]:
    """A comma-separated list of ``parse_int`` indices (e.g. a ``PULSEBLOCK`` count list); ValueError."""
    if _INTEGER_LIST.fullmatch(text) is None or any(len(x) > 9 for x in text.split(",")):
        raise ValueError(f"not a list of indices in the protocol's grammar: {text[:30]!r}")
    return [int(x) for x in text.split(",")]


def echo_list_number(value: float) -> str:
    """How the firmware echoes an element of a ``PULSEBLOCK`` amplitude list: ``%.7g`` (7 significant
    digits, the shortest form: ``0``, ``1.523``, ``-2``), so the echo is no longer than the command."""
    return f"{value:.7g}"


def read_block_rows_per_frame(cols: int, ilim_a: float, lsb_a: float) -> int:
    """How many rows of ``cols`` currents a ``READBLOCK`` reply can carry within the line limit, counted
    with the longest code a current within ``ilim_a`` can have at ADC step ``lsb_a`` (both A): the
    reply's ``@65535 `` head, its lsb, per row a ``%.6f`` timestamp (up to 15 characters) and the codes
    (sign and digits), the ``*CRC`` and ``\n``."""
    code = len(str(math.ceil(ilim_a / lsb_a) + 1)) + 2  # '-' and ',' around the digits
    room = MAX_LINE_BYTES - len("@65535 ") - (MAX_NUMBER_CHARS + 1) - len("*FFFF\n")
    return max(room // (cols * code + 16), 0)


def link_time_s(n_bytes: int, baud: float) -> float:
    """Seconds ``n_bytes`` take on a serial line of ``baud`` bit/s (8N1: 10 bits per byte)."""
    return n_bytes * BAUD_BITS_PER_BYTE / baud


def format_number(value: float) -> str:
    """``value`` with 6 significant digits in the protocol's grammar (e.g. ``1.5``, ``0.0001``, ``1e-07``)."""
    text = f"{float(value):.6g}"
    parse_number(text)  # never put a token on the wire that the other side must refuse
    return text


def sent_value(value: float) -> float:
    """The value the other side parses from ``format_number(value)`` (what the host actually asks for)."""
    return float(format_number(value))


def echo_number(value: float) -> str:
    """How the firmware echoes a parsed value: ``%.6e`` (7 significant digits, e.g. ``1.500000e+00``)."""
    return f"{value:.6e}"


def quantise_bias(volts: Any, lsb_v: float) -> Any:
    """Line voltages (V) on a bias DAC's grid of step ``lsb_v`` (V): the nearest code, as the firmware
    holds them (``round(v / lsb) * lsb``; ``lsb_v`` 0 leaves them unchanged)."""
    v = np.asarray(volts, dtype=float)
    return v if lsb_v <= 0 else np.round(v / lsb_v) * lsb_v


def body_keyword(line: str) -> str:
    """The command word of a line, framed or not (``"@3 PULSE 0 1 1.5 1e-4*ABCD"`` -> ``"PULSE"``)."""
    text = line.strip()
    if text.startswith("@"):
        text = text.partition(" ")[2]
    return text.split(" ", 1)[0].split("*", 1)[0].upper()


def body_text(line: str) -> str:
    """The command text of a line without its frame (``"@3 PULSE 1.5*ABCD"`` -> ``"PULSE 1.5"``)."""
    text = line.strip()
    if text.startswith("@"):
        text = text.partition(" ")[2].rpartition("*")[0]
    return text
