"""pyserial URL handler ``xbarsim://ROWSxCOLS?seed=N&<fault>=<value>``: a simulated crossbar controller.

Registered through ``serial.protocol_handler_packages`` (see ``drivers.transport``), so
``serial.serial_for_url("xbarsim://8x8?seed=1")`` opens a port whose other end is ``XbarFirmware``.
Query parameters: ``seed`` (int), ``device`` (``memristive``, the default, or ``diffusive``: filaments
that relax by ruptures, ``drivers.sim.diffusive``), ``protocol`` (3, the default, with line biases; 2
for a controller without them; 1 for a legacy v1 firmware), and any
``ControllerFaults`` field (``timeout_on=READ``, ``drop_after=5``, ``garbage_on=SIZE?``,
``truncate_on=READROW``, ``stuck_at_s=0.5``, ``stuck_device=2,3``, ``corrupt_on=PULSE``,
``late_on=READROW``, ``reject_on=BIAS`` (refused with ``ERR STATE``), ``drop_on=BIAS`` (the link drops
as the command arrives), ``fault_after=N`` (those two only after N commands)). Reply faults hit the
reply that carries a command's result (for a v2 two-phase command, the reply to its ``GO``).

The controller behind a URL (array and firmware, without the URL's fault parameters) persists across
connections, as hardware does: its settings, an armed command and a partial line left by a crashed
host survive a close and reopen. ``forget_arrays()`` drops them all (a fresh lab).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import serial
from pydantic import Field
from serial.serialutil import SerialBase, SerialException

from drivers.sim.diffusive import DEVICE_TYPES
from drivers.sim.faults import Faults
from drivers.sim.lab import SimArray
from drivers.sim.xbar_firmware import XbarFirmware
from drivers.xbar_protocol import body_text, frame, link_time_s

_ARRAYS: dict[tuple[int, int, int, str], SimArray] = {}
_FIRMWARES: dict[tuple[int, int, int, str], XbarFirmware] = {}
DEFAULT_PROTOCOL = 3
_SIZE = re.compile(r"^(\d+)x(\d+)$")


class ControllerFaults(Faults):
    """``Faults`` plus the serial-link faults of a crossbar controller."""

    corrupt_on: str | None = Field(
        default=None,
        description="on the way to the controller, these commands lose the last '.' of their line "
        "('PULSE 1.5 0.0001' arrives as 'PULSE 1.5 00001': a 1 s pulse to a v1 firmware)",
    )
    late_on: str | None = Field(
        default=None,
        description="the first reply to these commands arrives late: after the host's next command",
    )
    drop_on: str | None = Field(
        default=None, description="the link drops when one of these commands arrives (after fault_after)"
    )
    fault_after: int = Field(
        default=0, ge=0, description="reject_on and drop_on act only after this many commands"
    )


def sim_array(rows: int, cols: int, seed: int, device: str = "memristive") -> SimArray:
    """The persistent simulated array behind ``xbarsim://ROWSxCOLS?seed=SEED&device=DEVICE``."""
    key = (rows, cols, seed, device)
    if key not in _ARRAYS:
        _ARRAYS[key] = SimArray(rows, cols, seed, device=device)
    return _ARRAYS[key]


def sim_firmware(
    rows: int, cols: int, seed: int, protocol: int | None = None, device: str = "memristive"
) -> XbarFirmware:
    """The persistent controller behind ``xbarsim://ROWSxCOLS?seed=SEED&device=DEVICE``; asking for
    another ``protocol`` than it runs reflashes it (its settings, line biases and line buffer start over,
    the array stays); ``None``: the one it runs (a new one runs the newest, 3)."""
    key = (rows, cols, seed, device)
    firmware = _FIRMWARES.get(key)
    if protocol is None:
        protocol = firmware.protocol if firmware is not None else DEFAULT_PROTOCOL
    if firmware is None or firmware.protocol != protocol:
        # the devices keep their history: the array carries the time each row was settled to
        firmware = XbarFirmware(sim_array(rows, cols, seed, device), protocol=protocol)
        _FIRMWARES[key] = firmware
    return firmware


def forget_arrays() -> None:
    """Drop every persistent simulated array and controller (a fresh lab)."""
    _ARRAYS.clear()
    _FIRMWARES.clear()


def parse_url(url: str) -> tuple[int, int, int, int, ControllerFaults, str]:
    """(rows, cols, seed, protocol, faults, device type) from an ``xbarsim://`` URL; ValueError naming
    the problem."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "xbarsim":
        raise ValueError(f"not an xbarsim:// URL: {url!r}")
    m = _SIZE.match(parts.netloc)
    if m is None or min(int(m.group(1)), int(m.group(2))) < 1:
        raise ValueError(f"xbarsim URL needs a size ROWSxCOLS, e.g. xbarsim://8x8, got {parts.netloc!r}")
    params = dict(urllib.parse.parse_qsl(parts.query))
    seed = int(params.pop("seed", 0))
    protocol = int(params.pop("protocol", DEFAULT_PROTOCOL))
    device = params.pop("device", "memristive")
    if device not in DEVICE_TYPES:
        raise ValueError(f"xbarsim device must be one of {', '.join(DEVICE_TYPES)}, got {device!r}")
    if protocol not in (1, 2, 3):
        raise ValueError(f"xbarsim protocol must be 1, 2 or 3, got {protocol}")
    if "stuck_device" in params:
        params["stuck_device"] = tuple(int(x) for x in params["stuck_device"].split(","))  # type: ignore[assignment]
    try:
        faults = ControllerFaults.model_validate(params)
    except Exception as exc:
        raise ValueError(f"bad xbarsim URL parameters {sorted(params)}: {exc}") from None
    return int(m.group(1)), int(m.group(2)), seed, protocol, faults, device


class Serial(SerialBase):
    """A serial port whose other end is ``XbarFirmware`` (no real I/O, no waiting). Its bytes take their
    time on the virtual clock at the port's baud rate (8N1, ``link_time_s``): a line reaches the firmware
    when its last byte has arrived, and a reply's bytes take their time after the command finished; each
    line in also costs the firmware's turnaround ``LATENCY_S``."""

    firmware: XbarFirmware
    is_open: bool

    def open(self) -> None:
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        if self.is_open:
            raise SerialException("port already open")
        try:
            rows, cols, seed, protocol, faults, device = parse_url(self._port)
        except ValueError as exc:
            raise SerialException(str(exc)) from None
        self.firmware = sim_firmware(rows, cols, seed, protocol, device)
        self.firmware.faults = faults
        self.faults = faults
        self.array = self.firmware.array
        self._rx = bytearray()
        self._late: bytes | None = None
        self._late_done = False
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
        """A whole line at once (pyserial's generic version reads byte by byte); what is there if the line
        is incomplete (nothing more will come: the timeout elapsed)."""
        self._check_link()
        end = self._rx.find(expected)
        end = len(self._rx) if end < 0 else end + len(expected)
        if size is not None:
            end = min(end, size)
        chunk = bytes(self._rx[:end])
        del self._rx[:end]
        return chunk

    def write(self, data: Any) -> int:
        self._check_link()
        if self._late is not None:  # a late reply lands after the host's flush, before the new reply
            self._rx += self._late
            self._late = None
        data = self._corrupt(bytes(data))
        clock = self.array.clock
        first_byte_s = clock.now_s() + link_time_s(1, self._baudrate)
        clock.sleep(link_time_s(len(data), self._baudrate))
        for exchange in self.firmware.receive(data, first_byte_s):
            self._deliver(exchange.subject, exchange.reply)
        return len(data)

    def _corrupt(self, data: bytes) -> bytes:
        """Apply ``corrupt_on``: each matching line loses its last '.' on the wire."""
        if self.faults.corrupt_on is None:
            return data
        lines = data.split(b"\n")
        for k, line in enumerate(lines[:-1]):
            text = line.decode("ascii", errors="replace")
            if self.faults.matches(self.faults.corrupt_on, body_text(text)) and b"." in line:
                cut = line.rindex(b".")
                lines[k] = line[:cut] + line[cut + 1 :]
        return b"\n".join(lines)

    def _deliver(self, subject: str, reply: str | None) -> None:
        faults = self.faults
        self._commands += 1
        command = subject.removeprefix("ARM ")  # the arm of a two-phase command is hit as the command
        armed = self._commands > faults.fault_after
        if (faults.drop_after is not None and self._commands > faults.drop_after) or (
            armed and faults.matches(faults.drop_on, command)
        ):
            self._dropped = True
            self.firmware.armed = None  # the line never completed: nothing runs
            raise SerialException("device disconnected (simulated dropped link)")
        if reply is None:
            return
        if armed and reply.startswith("@") and faults.matches(faults.reject_on, command):
            self.firmware.armed = None  # refused: nothing armed, nothing applied
            seq = reply[1:].split(" ", 1)[0]
            reply = frame(int(seq), "ERR STATE refused by the controller (simulated fault)")
        data = reply.encode("ascii")
        fault = faults.reply_fault(subject)
        if fault == "timeout":
            return
        if fault == "garbage":
            self._rx += b"\xff\xfe\x9a#@!\xc3\n"
        elif fault == "truncate":
            self._rx += data[: len(data) // 2]
        elif not self._late_done and faults.matches(faults.late_on, subject):
            self._late_done = True
            self._late = data + b"\n"
        else:
            self._rx += data + b"\n"
            self.array.clock.sleep(link_time_s(len(data) + 1, self._baudrate))

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
