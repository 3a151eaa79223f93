"""The simulated lab: SMU emulators behind a PyVISA backend, a crossbar controller behind pyserial.

Importing this package registers the ``@hwloopsim`` PyVISA backend name. The ``xbarsim://`` pyserial
URL scheme is registered by ``drivers.transport`` (via ``serial.protocol_handler_packages``).
"""

from pyvisa import highlevel

from drivers.sim.clock import VirtualClock
from drivers.sim.faults import Faults
from drivers.sim.lab import SIM_RESOURCES, SimArray, SimLab
from drivers.sim.visa_backend import SimVisaLibrary

# PyVISA resolves "@name" through this table before importing a "pyvisa_name" package.
highlevel._WRAPPERS.setdefault("hwloopsim", SimVisaLibrary)

__all__ = ["SIM_RESOURCES", "Faults", "SimArray", "SimLab", "SimVisaLibrary", "VirtualClock"]
