"""Open any instrument from a resource string: VISA names for SMUs, serial ports / URLs for controllers.

``open_instrument("TCPIP::k2450.sim::INSTR", limits)`` picks the driver from the instrument's ``*IDN?``;
names on the simulated lab (hosts ``*.sim``) go to ``drivers.sim``'s PyVISA backend, others to the VISA
library given by ``visa_library`` ("" = the system's NI/Keysight VISA, "@py" = pyvisa-py).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pyvisa
import serial.tools.list_ports

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
_default_lab: SimLab | None = None


def is_serial(resource: str) -> bool:
    """Serial resources: pyserial URLs (``xbarsim://``, ``socket://``), ``/dev/tty*`` and ``COMn``."""
    return "://" in resource or resource.startswith("/dev/") or resource.upper().startswith("COM")


def is_simulated(resource: str) -> bool:
    """Resources served by the simulated lab."""
    return resource.startswith("xbarsim://") or ".sim::" in resource


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
) -> Smu | CrossbarController:
    """Open the instrument at ``resource`` for sourcing under ``limits``; the driver follows its ``*IDN?``.

    ``sim``: a ``drivers.sim.SimLab`` to serve VISA resources from (default: the process-wide lab for
    ``*.sim`` hosts). ``baudrate`` applies to serial controllers. Use the result as a context manager
    so outputs return to 0 V / off on exit. ``open_smu`` / ``open_controller`` return the narrower types.
    """
    if not isinstance(limits, SafetyLimits):
        raise InstrumentError("opening an instrument for sourcing requires SafetyLimits")
    transport, clock = open_transport(
        resource, sim=sim, visa_library=visa_library, timeout_s=timeout_s, baudrate=baudrate
    )
    try:
        if isinstance(transport, SerialTransport):
            return CrossbarController(transport, limits, clock)
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
    """``open_instrument`` for a crossbar controller (refuses an SMU)."""
    inst = open_instrument(resource, limits, **options)
    if not isinstance(inst, CrossbarController):
        inst.close()
        raise InstrumentError(f"{resource} is an SMU, not a crossbar controller")
    return inst


def list_resources(visa_library: str = "") -> dict[str, list[str]]:
    """Resources by kind: ``visa`` (real, from the VISA library), ``serial`` ports, and ``simulated``."""
    from drivers.sim import SIM_RESOURCES

    found: dict[str, list[str]] = {
        "visa": [],
        "serial": [],
        "simulated": [*SIM_RESOURCES, SIM_SERIAL_EXAMPLE],
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
