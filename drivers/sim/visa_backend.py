"""A PyVISA backend for the simulated lab: a ``VisaLibraryBase`` subclass whose sessions are emulators.

Use it with PyVISA's documented mechanisms::

    rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(SimLab(seed=1)))   # an existing lab
    rm = pyvisa.ResourceManager("seed=3@hwloopsim")                       # "<options>@hwloopsim"

The ``@hwloopsim`` name is registered in PyVISA's backend table when ``drivers.sim`` is imported.
Faults from the lab apply per command: no reply (read times out), a dropped link (VI_ERROR_CONN_LOST),
garbage bytes, or a reply cut in half.
"""

from __future__ import annotations

import itertools
from typing import Any

from pyvisa import constants, errors, highlevel, rname
from pyvisa.util import LibraryPath

from drivers.sim.emulator import SmuEmulator
from drivers.sim.lab import SIM_HOSTS, SIM_RESOURCES, SimLab

_LABS: dict[str, SimLab] = {}  # library path "lab=<n>" -> lab passed to for_lab
_TOKENS = itertools.count()


class SimSession:
    """One open simulated resource: feeds written lines to the instrument and reads its output queue.

    The queues belong to the instrument, not the session: a reply left unread by one session is what the
    next read (of any session) gets, until a device clear empties the queue.
    """

    def __init__(self, emulator: SmuEmulator) -> None:
        self.emulator = emulator
        self.commands = 0
        self.dropped = False
        self.partial = bytearray()  # bytes of a reply line read only in part
        self.attrs: dict[int, Any] = {constants.ResourceAttribute.timeout_value: 2000}

    def write(self, data: bytes) -> int:
        for line in data.decode("ascii").splitlines():
            self._command(line)
        return len(data)

    def _command(self, line: str) -> None:
        faults = self.emulator.faults
        self.commands += 1
        if faults.drop_after is not None and self.commands > faults.drop_after:
            self.dropped = True
        if self.dropped:
            raise errors.VisaIOError(constants.StatusCode.error_connection_lost)
        self.emulator.receive(line)

    def timeout_s(self) -> float:
        """The VISA timeout of this session (s); VI_TMO_INFINITE counts as an hour of virtual time."""
        ms = self.attrs.get(constants.ResourceAttribute.timeout_value, 2000)
        if ms is None or ms >= constants.VI_TMO_INFINITE:
            return 3600.0
        return float(ms) / 1000.0

    def read(self, count: int) -> tuple[bytes, constants.StatusCode]:
        if self.dropped:
            raise errors.VisaIOError(constants.StatusCode.error_connection_lost)
        if not self.partial:
            raw = self.emulator.wait_for_output(self.timeout_s())
            if raw is None:  # nothing arrived while the host waited: the timeout elapsed in virtual time
                raise errors.VisaIOError(constants.StatusCode.error_timeout)
            self.partial += raw
        end = self.partial.find(b"\n")
        if 0 <= end < count:
            chunk = bytes(self.partial[: end + 1])
            del self.partial[: end + 1]
            return chunk, constants.StatusCode.success_termination_character_read
        chunk = bytes(self.partial[:count])
        del self.partial[:count]
        return chunk, constants.StatusCode.success_max_count_read

    def clear(self) -> None:
        """viClear: a device clear of the instrument (and of what this session had half read)."""
        self.partial.clear()
        self.emulator.device_clear()


class SimVisaLibrary(highlevel.VisaLibraryBase):
    """VISA library whose resources are the instruments of a ``SimLab``."""

    lab: SimLab
    sessions: dict[int, Any]

    @staticmethod
    def get_library_paths() -> tuple[LibraryPath, ...]:
        """The default lab: seed 0."""
        return (LibraryPath("seed=0"),)

    @staticmethod
    def get_debug_info() -> dict[str, str]:
        """Backend description for ``pyvisa-info``."""
        return {"backend": "hwloop simulated lab", "resources": ", ".join(SIM_RESOURCES)}

    @classmethod
    def for_lab(cls, lab: SimLab) -> SimVisaLibrary:
        """A library instance serving an existing ``lab`` (pass it to ``pyvisa.ResourceManager``)."""
        token = f"lab={next(_TOKENS)}"
        _LABS[token] = lab
        return cls(token)

    def _init(self) -> None:
        path = str(self.library_path)
        if path in _LABS:
            self.lab = _LABS.pop(path)
        else:
            options = dict(item.split("=", 1) for item in path.split(";") if "=" in item)
            self.lab = SimLab(seed=int(options.get("seed", 0)))
        self.sessions = {}
        self._handles = itertools.count(1000)

    def open_default_resource_manager(self) -> tuple[Any, constants.StatusCode]:
        handle = next(self._handles)
        self.sessions[handle] = self
        return handle, constants.StatusCode.success

    def list_resources(self, session: Any, query: str = "?*::INSTR") -> tuple[str, ...]:
        found = rname.filter(SIM_RESOURCES, query)
        if not found:
            raise errors.VisaIOError(constants.StatusCode.error_resource_not_found)
        return tuple(found)

    def open(
        self,
        session: Any,
        resource_name: str,
        access_mode: constants.AccessModes = constants.AccessModes.no_lock,
        open_timeout: Any = constants.VI_TMO_IMMEDIATE,
    ) -> tuple[Any, constants.StatusCode]:
        try:
            host = rname.parse_resource_name(resource_name).host_address  # type: ignore[attr-defined]
        except (rname.InvalidResourceName, AttributeError):
            raise errors.VisaIOError(constants.StatusCode.error_invalid_resource_name) from None
        if host not in SIM_HOSTS:
            raise errors.VisaIOError(constants.StatusCode.error_resource_not_found)
        handle = next(self._handles)
        self.sessions[handle] = SimSession(self.lab.instrument(host))
        return handle, constants.StatusCode.success

    def close(self, session: Any) -> constants.StatusCode:
        return (
            constants.StatusCode.success
            if self.sessions.pop(session, None) is not None
            else constants.StatusCode.error_invalid_object
        )

    def _session(self, session: Any) -> SimSession:
        sess = self.sessions.get(session)
        if not isinstance(sess, SimSession):
            raise errors.VisaIOError(constants.StatusCode.error_invalid_object)
        return sess

    def read(self, session: Any, count: int) -> tuple[bytes, constants.StatusCode]:
        return self._session(session).read(count)

    def write(self, session: Any, data: bytes) -> tuple[int, constants.StatusCode]:
        return self._session(session).write(data), constants.StatusCode.success

    def get_attribute(self, session: Any, attribute: Any) -> tuple[Any, constants.StatusCode]:
        sess = self.sessions.get(session)
        if isinstance(sess, SimSession) and attribute in sess.attrs:
            return sess.attrs[attribute], constants.StatusCode.success
        return 0, constants.StatusCode.success

    def set_attribute(self, session: Any, attribute: Any, attribute_state: Any) -> constants.StatusCode:
        sess = self.sessions.get(session)
        if isinstance(sess, SimSession):
            sess.attrs[attribute] = attribute_state
        return constants.StatusCode.success

    def disable_event(self, session: Any, event_type: Any, mechanism: Any) -> constants.StatusCode:
        return constants.StatusCode.success

    def discard_events(self, session: Any, event_type: Any, mechanism: Any) -> constants.StatusCode:
        return constants.StatusCode.success

    def clear(self, session: Any) -> constants.StatusCode:
        self._session(session).clear()
        return constants.StatusCode.success
