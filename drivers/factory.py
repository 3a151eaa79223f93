"""Open any instrument from a resource string: VISA names for SMUs, serial ports / URLs for controllers.

``open_instrument("TCPIP::k2450.sim::INSTR", limits)`` picks the driver from the instrument's ``*IDN?``;
names on the simulated lab (hosts ``*.sim``) go to ``drivers.sim``'s PyVISA backend, others to the VISA
library given by ``visa_library`` ("" = the system's NI/Keysight VISA, "@py" = pyvisa-py).
"""

from __future__ import annotations

import urllib.parse
import warnings
from typing import TYPE_CHECKING, Any

import pyvisa
import serial.tools.list_ports

from drivers.arc2 import Arc2Controller
from drivers.array import ArrayController
from drivers.clock import Clock
from drivers.controller import CrossbarController
from drivers.errors import InstrumentError
from drivers.safety import SafetyLimits
from drivers.smu import Smu
from drivers.smu_b2900 import KeysightB2900
from drivers.smu_k2450 import Keithley2450
from drivers.smu_k2600 import Keithley2600B
from drivers.transport import DEFAULT_TIMEOUT_S, SerialTransport, Transport, VisaTransport

if TYPE_CHECKING:  # the simulated lab (and its device physics) loads only when a simulated resource is used
    from drivers.sim import SimLab

SMU_DRIVERS: tuple[type[Smu], ...] = (Keithley2450, Keithley2600B, KeysightB2900)
SIM_SERIAL_EXAMPLE = "xbarsim://8x8?seed=0"
SIM_ARC2_EXAMPLE = "arc2sim://8x8?seed=0"
_default_lab: SimLab | None = None


def is_arc2(resource: str) -> bool:
    """ArC TWO boards: ``arc2://<board id>?firmware=PATH`` (real), ``arc2sim://ROWSxCOLS?seed=N`` (fake)."""
    return resource.startswith(("arc2://", "arc2sim://"))


def is_serial(resource: str) -> bool:
    """Array controllers: pyserial URLs (``xbarsim://``, ``socket://``), ``/dev/tty*``, ``COMn``, and ArC
    TWO boards (``arc2://``, ``arc2sim://``), which have no serial line but address arrays too."""
    return "://" in resource or resource.startswith("/dev/") or resource.upper().startswith("COM")


def is_simulated(resource: str) -> bool:
    """Resources served by the simulated lab."""
    return resource.startswith(("xbarsim://", "arc2sim://")) or ".sim::" in resource


def open_arc2(resource: str, limits: SafetyLimits) -> Arc2Controller:
    """An ArC TWO: ``arc2://<id>?firmware=PATH[&rows=R&cols=C]`` on ``pyarc2`` (ids from
    ``pyarc2.find_ids()``), or the fake board with device physics ``arc2sim://ROWSxCOLS?seed=N``."""
    parts = urllib.parse.urlsplit(resource)
    if parts.scheme == "arc2sim":
        from drivers.sim.arc2_fake import open_fake

        try:
            fake = open_fake(resource)
        except ValueError as exc:
            raise InstrumentError(f"{resource}: {exc}") from None
        return Arc2Controller(
            fake, limits, fake.array.clock, rows=fake.array.rows, cols=fake.array.cols, name=resource
        )
    params = dict(urllib.parse.parse_qsl(parts.query))
    try:
        board = int(parts.netloc)
        rows, cols = int(params.pop("rows", 32)), int(params.pop("cols", 32))
    except ValueError:
        raise InstrumentError(
            f"{resource}: expected arc2://<board id>?firmware=PATH[&rows=R&cols=C]"
        ) from None
    firmware = params.pop("firmware", None)
    if firmware is None or params:
        raise InstrumentError(
            f"{resource}: give the firmware file (arc2://{board}?firmware=PATH) and nothing else"
        )
    import pyarc2

    found = list(pyarc2.find_ids())
    if board not in found:
        raise InstrumentError(f"{resource}: no ArC TWO with id {board} (pyarc2.find_ids() lists {found})")
    try:
        instrument = pyarc2.Instrument(board, firmware)
    except (pyarc2.ArC2Error, OSError, ValueError) as exc:  # e.g. a missing or wrong firmware file
        raise InstrumentError(f"{resource}: cannot open the ArC TWO ({exc})") from None
    return Arc2Controller(instrument, limits, rows=rows, cols=cols, name=resource)


def default_lab() -> SimLab:
    """The process-wide simulated lab (seed 0), created on first use; it persists like hardware does."""
    global _default_lab
    if _default_lab is None:
        from drivers.sim import SimLab

        _default_lab = SimLab(seed=0)
    return _default_lab


def open_transport(
    resource: str,
    *,
    sim: SimLab | None = None,
    visa_library: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    baudrate: int = 115_200,
) -> tuple[Transport, Clock | None]:
    """An open transport to ``resource`` and, on the simulated lab, its virtual clock."""
    if is_arc2(resource):
        raise InstrumentError(f"{resource}: an ArC TWO has no line transport; open it with open_instrument")
    if is_serial(resource):
        transport: Transport = SerialTransport(resource, baudrate=baudrate, timeout_s=timeout_s)
        transport.open()
        array = getattr(transport.port, "array", None)  # type: ignore[attr-defined]
        return transport, (array.clock if array is not None else None)
    if sim is not None or is_simulated(resource):
        from drivers.sim import SimVisaLibrary

        lab = sim if sim is not None else default_lab()
        rm = pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))
        clock: Clock | None = lab.clock
    else:
        rm = _resource_manager(visa_library)
        clock = None
    transport = VisaTransport(resource, rm, timeout_s=timeout_s)
    transport.open()
    return transport, clock


def open_instrument(
    resource: str,
    limits: SafetyLimits,
    *,
    sim: SimLab | None = None,
    visa_library: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    baudrate: int = 115_200,
    allow_v1_pulses: bool = False,
) -> Smu | CrossbarController | Arc2Controller:
    """Open the instrument at ``resource`` for sourcing under ``limits``; the driver follows its ``*IDN?``.

    ``sim``: a ``drivers.sim.SimLab`` to serve VISA resources from (default: the process-wide lab for
    ``*.sim`` hosts). ``baudrate`` applies to serial controllers; ``allow_v1_pulses`` lets a serial
    controller that speaks only protocol v1 (no CRC, no echo) pulse. Use the result as a context manager
    so outputs return to 0 V / off on exit. ``open_smu`` / ``open_controller`` return the narrower types.
    """
    if not isinstance(limits, SafetyLimits):
        raise InstrumentError("opening an instrument for sourcing requires SafetyLimits")
    if is_arc2(resource):
        return open_arc2(resource, limits)
    transport, clock = open_transport(
        resource, sim=sim, visa_library=visa_library, timeout_s=timeout_s, baudrate=baudrate
    )
    try:
        if isinstance(transport, SerialTransport):
            return CrossbarController(transport, limits, clock, allow_v1_pulses=allow_v1_pulses)
        # a reply left unread by an earlier program (an *OPC? it never collected) would answer *IDN?
        transport.clear()
        idn = transport.query("*IDN?").strip()
        for driver in SMU_DRIVERS:
            if driver.idn_pattern in idn:
                return driver(transport, limits, clock)
        raise InstrumentError(
            f"{resource}: unsupported instrument {idn[:60]!r} (supported: Keithley 2450, "
            "Keithley 2600B, Keysight B2900, hwloop crossbar controller)"
        )
    except BaseException:
        transport.close()
        raise


def open_smu(resource: str, limits: SafetyLimits, **options: Any) -> Smu:
    """``open_instrument`` for a source-measure unit (refuses a crossbar controller)."""
    inst = open_instrument(resource, limits, **options)
    if not isinstance(inst, Smu):
        inst.close()
        raise InstrumentError(f"{resource} is a crossbar controller, not an SMU")
    return inst


def open_controller(resource: str, limits: SafetyLimits, **options: Any) -> CrossbarController:
    """``open_instrument`` for a serial crossbar controller (refuses an SMU or an ArC TWO)."""
    inst = open_instrument(resource, limits, **options)
    if not isinstance(inst, CrossbarController):
        inst.close()
        kind = "an ArC TWO (use open_array)" if isinstance(inst, Arc2Controller) else "an SMU"
        raise InstrumentError(f"{resource} is {kind}, not a serial crossbar controller")
    return inst


def open_array(resource: str, limits: SafetyLimits, **options: Any) -> ArrayController:
    """``open_instrument`` for any crossbar-array controller (serial controller or ArC TWO)."""
    inst = open_instrument(resource, limits, **options)
    if isinstance(inst, Smu):
        inst.close()
        raise InstrumentError(f"{resource} is an SMU, not a crossbar-array controller")
    return inst


def list_resources(visa_library: str = "") -> dict[str, list[str]]:
    """Resources by kind: ``visa`` (real, from the VISA library), ``serial`` ports, and ``simulated``."""
    from drivers.sim import SIM_RESOURCES

    found: dict[str, list[str]] = {
        "visa": [],
        "serial": [],
        "simulated": [*SIM_RESOURCES, SIM_SERIAL_EXAMPLE, SIM_ARC2_EXAMPLE],
    }
    try:
        with warnings.catch_warnings():  # pyvisa-py warns about optional discovery packages
            warnings.simplefilter("ignore", UserWarning)
            found["visa"] = list(_resource_manager(visa_library).list_resources())
    except (InstrumentError, pyvisa.errors.VisaIOError):
        found["visa"] = []
    found["serial"] = sorted(port.device for port in serial.tools.list_ports.comports())
    return found


def _resource_manager(visa_library: str) -> Any:
    try:
        return pyvisa.ResourceManager(visa_library)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InstrumentError(
            f"no VISA library available ({first}); install NI-VISA / Keysight IO Libraries, "
            "or use the pure-Python one with --visa-library @py"
        ) from None
