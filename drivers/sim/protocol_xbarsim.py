"""pyserial URL handler ``xbarsim://ROWSxCOLS?seed=N&<fault>=<value>``: a simulated crossbar controller.

Registered through ``serial.protocol_handler_packages`` (see ``drivers.transport``), so
``serial.serial_for_url("xbarsim://8x8?seed=1")`` opens a port whose replies come from
``XbarFirmware``. Query parameters: ``seed`` (int), and any ``Faults`` field (``timeout_on=READ``,
``drop_after=5``, ``garbage_on=SIZE?``, ``truncate_on=READROW``, ``stuck_at_s=0.5``, ``stuck_device=2,3``).
The array behind a URL (without its fault parameters) persists across connections, as hardware
does; ``forget_arrays()`` drops them all.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import serial
from serial.serialutil import SerialBase, SerialException

from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray
from drivers.sim.xbar_firmware import XbarFirmware

_ARRAYS: dict[tuple[int, int, int], SimArray] = {}
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def sim_array(rows: int, cols: int, seed: int) -> SimArray:
    """The persistent simulated array behind ``xbarsim://ROWSxCOLS?seed=SEED``."""
    key = (rows, cols, seed)
    if key not in _ARRAYS:
        _ARRAYS[key] = SimArray(rows, cols, seed)
    return _ARRAYS[key]


def forget_arrays() -> None:
    """Drop every persistent simulated array (a fresh lab)."""
    _ARRAYS.clear()


def parse_url(url: str) -> tuple[int, int, int, Faults]:
    """(rows, cols, seed, faults) from an ``xbarsim://`` URL; ValueError naming the problem."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "xbarsim":
        raise ValueError(f"not an xbarsim:// URL: {url!r}")
    m = _SIZE.match(parts.netloc)
    if m is None or min(int(m.group(1)), int(m.group(2))) < 1:
        raise ValueError(f"xbarsim URL needs a size ROWSxCOLS, e.g. xbarsim://8x8, got {parts.netloc!r}")
    params = dict(urllib.parse.parse_qsl(parts.query))
    seed = int(params.pop("seed", 0))
    if "stuck_device" in params:
        params["stuck_device"] = tuple(int(x) for x in params["stuck_device"].split(","))  # type: ignore[assignment]
    try:
        faults = Faults.model_validate(params)
    except Exception as exc:
        raise ValueError(f"bad xbarsim URL parameters {sorted(params)}: {exc}") from None
    return int(m.group(1)), int(m.group(2)), seed, faults


class Serial(SerialBase):
    """A serial port whose other end is ``XbarFirmware`` (no real I/O, no waiting)."""

    firmware: XbarFirmware
    is_open: bool

    def open(self) -> None:
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        if self.is_open:
            raise SerialException("port already open")
        try:
            rows, cols, seed, faults = parse_url(self._port)
        except ValueError as exc:
            raise SerialException(str(exc)) from None
        self.firmware = XbarFirmware(sim_array(rows, cols, seed), faults)
        self.array = self.firmware.array
        self._rx = bytearray()
        self._line = bytearray()
        self._commands = 0
        self._dropped = False
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def _reconfigure_port(self) -> None:
        return None

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def _check_link(self) -> None:
        if not self.is_open:
            raise serial.PortNotOpenError()
        if self._dropped:
            raise SerialException("device disconnected (simulated dropped link)")

    def read(self, size: int = 1) -> bytes:
        self._check_link()
        chunk = bytes(self._rx[:size])  # an empty buffer means the timeout elapsed: nothing will come
        del self._rx[:size]
        return chunk

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        """What pyserial's ``read_until`` returns (up to and including ``expected``, at most ``size``
        bytes, or everything there is when it never comes), in one step instead of a ``read(1)`` per byte."""
        self._check_link()
        end = self._rx.find(expected)
        n = len(self._rx) if end < 0 else end + len(expected)
        if size is not None:
            n = min(n, size)
        return self.read(n)

    def write(self, data: Any) -> int:
        self._check_link()
        self._line += bytes(data)
        while b"\n" in self._line:
            raw, _, rest = bytes(self._line).partition(b"\n")
            self._line = bytearray(rest)
            self._command(raw.decode("ascii", errors="replace").strip())
        return len(data)

    def _command(self, line: str) -> None:
        faults = self.firmware.faults
        self._commands += 1
        if faults.drop_after is not None and self._commands > faults.drop_after:
            self._dropped = True
            raise SerialException("device disconnected (simulated dropped link)")
        reply = self.firmware.handle(line).encode("ascii")
        fault = faults.reply_fault(line)
        if fault == "timeout":
            return
        if fault == "garbage":
            self._rx += b"\xff\xfe\x9a#@!\xc3\n"
        elif fault == "truncate":
            self._rx += reply[: len(reply) // 2]
        else:
            self._rx += reply + b"\n"

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def reset_output_buffer(self) -> None:
        return None

    @property
    def out_waiting(self) -> int:
        return 0

    def _update_break_state(self) -> None:
        return None

    def _update_rts_state(self) -> None:
        return None

    def _update_dtr_state(self) -> None:
        return None

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
