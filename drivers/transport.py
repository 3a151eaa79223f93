"""Line-oriented transports to instruments: VISA (GPIB, USB, TCPIP, ASRL via pyvisa) and pyserial.

A transport sends one command per line and reads one reply line, with a timeout on every read, a log of
everything sent and received, and ``reconnect()``. Link failures become typed errors: no reply in time
-> ``InstrumentTimeout``; link gone -> ``ConnectionLost``; undecodable bytes -> ``ProtocolError``.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pyvisa
import serial
from pyvisa import constants

from drivers.errors import ConnectionLost, InstrumentError, InstrumentTimeout, ProtocolError

if "drivers.sim" not in serial.protocol_handler_packages:  # lets serial_for_url open "xbarsim://..." URLs
    serial.protocol_handler_packages.append("drivers.sim")

DEFAULT_TIMEOUT_S = 2.0
_LINK_ERRORS = frozenset(
    {
        constants.StatusCode.error_connection_lost,
        constants.StatusCode.error_invalid_object,
        constants.StatusCode.error_io,
        constants.StatusCode.error_closing_failed,
    }
)


class LogEntry(NamedTuple):
    """One line on the wire: wall time (s since epoch), direction (">" sent, "<" received), text."""

    time_s: float
    direction: str
    text: str


class Transport:
    """Base class: subclasses implement ``_open``, ``_close``, ``_send`` and ``_receive``."""

    def __init__(self, name: str, timeout_s: float = DEFAULT_TIMEOUT_S, log_size: int = 10_000) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.log: deque[LogEntry] = deque(maxlen=log_size)
        self._is_open = False

    # -- subclass hooks ------------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _send(self, line: str) -> None:
        raise NotImplementedError

    def _receive(self, timeout_s: float) -> str:
        raise NotImplementedError

    def _clear(self) -> None:
        """Device clear; links without one (plain serial lines) have nothing to do here."""
        return None

    # -- public API ----------------------------------------------------------------------------
    def open(self) -> None:
        """Open the link (idempotent)."""
        if not self._is_open:
            self._open()
            self._is_open = True

    def close(self) -> None:
        """Close the link; errors while closing a dead link are ignored."""
        if self._is_open:
            self._is_open = False
            with contextlib.suppress(Exception):  # the link may already be gone; closing must never raise
                self._close()

    def reconnect(self) -> None:
        """Close and reopen the link (the instrument's state must be re-established by the driver)."""
        self.close()
        self.open()

    def write(self, command: str) -> None:
        """Send one command line."""
        if not self._is_open:
            raise ConnectionLost(f"{self.name}: not connected")
        self.log.append(LogEntry(time.time(), ">", command))
        self._send(command)

    def read(self, timeout_s: float | None = None) -> str:
        """Read one reply line (termination stripped) within ``timeout_s`` (default: ``self.timeout_s``)."""
        if not self._is_open:
            raise ConnectionLost(f"{self.name}: not connected")
        reply = self._receive(self.timeout_s if timeout_s is None else timeout_s)
        self.log.append(LogEntry(time.time(), "<", reply))
        return reply

    def query(self, command: str, timeout_s: float | None = None) -> str:
        """Send ``command`` and return its reply line."""
        self.write(command)
        return self.read(timeout_s)

    def clear(self) -> None:
        """Device clear (VISA ``viClear``, IEEE 488.2 DCL/SDC): the instrument empties its input and
        output queues, cancels a pending ``*OPC?`` and frees its parser; settings are kept. Logged as
        ``<device clear>``."""
        if not self._is_open:
            raise ConnectionLost(f"{self.name}: not connected")
        self.log.append(LogEntry(time.time(), ">", "<device clear>"))
        self._clear()


class VisaTransport(Transport):
    """A pyvisa message-based resource; ``resource_manager`` picks the VISA library (NI/IVI, @py, sim)."""

    def __init__(
        self,
        resource_name: str,
        resource_manager: Any,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        termination: str = "\n",
    ) -> None:
        super().__init__(resource_name, timeout_s)
        self._rm = resource_manager
        self._termination = termination
        self._resource: Any = None

    def _open(self) -> None:
        try:
            self._resource = self._rm.open_resource(
                self.name,
                read_termination=self._termination,
                write_termination=self._termination,
                timeout=int(self.timeout_s * 1000),
            )
        except pyvisa.errors.VisaIOError as exc:
            raise ConnectionLost(f"{self.name}: cannot open VISA resource ({exc.abbreviation})") from None
        except ValueError as exc:  # pyvisa's message for a malformed resource name
            raise InstrumentError(f"{self.name}: {exc}") from None

    def _close(self) -> None:
        self._resource.close()

    def _send(self, line: str) -> None:
        with _visa_errors(self.name):
            self._resource.write(line)

    def _clear(self) -> None:
        with _visa_errors(self.name):
            self._resource.clear()

    def _receive(self, timeout_s: float) -> str:
        self._resource.timeout = max(1, int(timeout_s * 1000))
        try:
            with _visa_errors(self.name):
                return str(self._resource.read())
        except InstrumentTimeout:
            with contextlib.suppress(Exception):  # device clear: a late reply must not answer the next query
                self._resource.clear()
            raise


@contextmanager
def _visa_errors(name: str) -> Iterator[None]:
    """Translate pyvisa I/O errors (and undecodable replies) into typed instrument errors."""
    try:
        yield
    except UnicodeDecodeError:
        raise ProtocolError(f"{name}: reply is not text (garbage on the line)") from None
    except pyvisa.errors.VisaIOError as exc:
        if exc.error_code == constants.StatusCode.error_timeout:
            raise InstrumentTimeout(f"{name}: no reply within the timeout") from None
        if exc.error_code in _LINK_ERRORS:
            raise ConnectionLost(f"{name}: connection lost ({exc.abbreviation})") from None
        raise InstrumentError(f"{name}: VISA error {exc.abbreviation}: {exc.description}") from None


class SerialTransport(Transport):
    """A pyserial port or URL (``/dev/ttyUSB0``, ``COM3``, ``socket://host:port``, ``xbarsim://8x8``)."""

    def __init__(self, url: str, baudrate: int = 115_200, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(url, timeout_s)
        self.baudrate = baudrate
        self.port: Any = None
        self.max_line_bytes: int | None = None  # a reply longer than this (terminator included) is refused

    def _open(self) -> None:
        try:
            self.port = serial.serial_for_url(  # exclusive: a second process cannot interleave its lines
                self.name, baudrate=self.baudrate, timeout=self.timeout_s, exclusive=True
            )
        except (serial.SerialException, ValueError) as exc:
            raise ConnectionLost(f"{self.name}: cannot open serial port ({exc})") from None

    def _close(self) -> None:
        self.port.close()

    def _send(self, line: str) -> None:
        try:
            self.port.reset_input_buffer()  # one reply per command: drop leftovers of a failed exchange
            self.port.write((line + "\n").encode("ascii"))
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: connection lost while writing ({exc})") from None

    def _receive(self, timeout_s: float) -> str:
        self.port.timeout = timeout_s
        try:
            raw = self.port.read_until(b"\n", self.max_line_bytes)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: connection lost while reading ({exc})") from None
        if self.max_line_bytes is not None and len(raw) >= self.max_line_bytes and not raw.endswith(b"\n"):
            raise ProtocolError(f"{self.name}: reply longer than {self.max_line_bytes} bytes (no line end)")
        if not raw:
            raise InstrumentTimeout(f"{self.name}: no reply within {timeout_s:g} s")
        if not raw.endswith(b"\n"):
            raise InstrumentTimeout(
                f"{self.name}: truncated reply {raw[:40]!r} (no line end within {timeout_s:g} s)"
            )
        try:
            return raw.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ProtocolError(
                f"{self.name}: reply is not text (garbage on the line): {raw[:40]!r}"
            ) from None
