"""Lab instruments: SMU and crossbar-controller drivers, safety limits, and a physics-backed simulated lab.

Opening an instrument (any resource string, real or simulated)::

    from drivers import SafetyLimits, open_instrument

    limits = SafetyLimits(max_abs_voltage_v=2.0, max_pulse_width_s=1e-3,
                          max_compliance_a=1e-3, max_pulses_per_s=100)   # or SafetyLimits.load("limits.toml")
    with open_instrument("TCPIP::k2450.sim::INSTR", limits) as smu:       # outputs 0 V / off on exit or error
        smu.set_compliance(1e-4)                                          # required before any output
        smu.nplc = 0.01                    # integration per reading, power-line cycles (default 1)
        smu.pulse(amplitude_v=1.5, width_s=100e-6)
        train = smu.read_train(read_v=0.1, every_s=1e-3, count=1000)     # hardware-timed
        train.t_s, train.i_a          # numpy: instrument timestamps (s, first reading at 0), current (A)
        smu.wait(10.0)                # host-side wait; on the simulated lab it advances the virtual clock

    # the crossbar controller: protocol v2 (CRC, sequence numbers, echo checked before GO) is negotiated;
    # a v1 controller is readable, and pulses only with open_instrument(..., allow_v1_pulses=True)
    with open_instrument("xbarsim://8x8?seed=1", limits) as xbar:
        xbar.set_compliance(1e-4)
        xbar.pulse_device(row, col, amplitude_v, width_s)
        xbar.pulse_row(row, amplitudes_v=[...one per column, 0 = no pulse...], width_s=...)
        xbar.read_device(row, col, read_v)   -> Reading(t_s, i_a)    (controller timestamp, current)
        xbar.read_row(row, read_v)           -> RowReading(t_s, i_a (cols,))
        xbar.read_row_train(row, read_v, every_s, count) -> RowTrain(t_s (count,), i_a (count, cols))
        xbar.wait(seconds)

``open_smu`` / ``open_controller`` / ``open_array`` are the same with a narrower return type (``Smu`` /
``CrossbarController`` / any ``ArrayController``, which includes the ArC TWO driver ``Arc2Controller`` at
``arc2://<board id>?firmware=PATH`` and its fake with device physics at ``arc2sim://ROWSxCOLS?seed=N``).
The SMU drivers (``Keithley2450``, ``Keithley2600B``, ``KeysightB2900``) share
the ``Smu`` API above plus ``identify()``, ``reset()``, ``source_voltage(v)``, ``output_off()``,
``read_current(read_v)``, ``reconnect()``, ``reading_time_s()`` (the shortest read interval at the
session's ``nplc``) and ``check_read_train(...)``. Every request is checked against the ``SafetyLimits``
and the instrument's ``HardwareLimits`` before a byte reaches the transport (``SafetyError``), an output
is never switched on before compliance is set (``InstrumentStateError``), every sequence reads the
instrument's error queue before it arms, and the context manager returns outputs to 0 V / off (device
clear first) on any exception or KeyboardInterrupt.

Simulated lab (``drivers.sim``): a PyVISA backend (``pyvisa.ResourceManager(SimVisaLibrary.for_lab(lab))``
or ``pyvisa.ResourceManager("@hwloopsim")``) answering as the real instruments at

    TCPIP::k2450.sim::INSTR      Keithley 2450, SCPI trigger model
    TCPIP::k2636b.sim::INSTR     Keithley 2636B (2600B series), TSP scripts loaded once then called
    TCPIP::b2912a.sim::INSTR     Keysight B2912A (B2900 series), SCPI pulse and timer trigger

and a pyserial URL handler ``xbarsim://ROWSxCOLS?seed=N`` for the crossbar controller. Currents come
from ``device_models`` physics on a virtual clock (a 10 s decay runs in milliseconds, reproducibly from
the seed). Ground truth: ``SimLab.device("k2450.sim").tau_s(read_v)`` for an SMU's device and
``drivers.sim.protocol_xbarsim.sim_array(rows, cols, seed).tau_s(0.0)`` (idle lines sit at 0 V) for the
live array behind ``xbarsim://ROWSxCOLS?seed=SEED`` (``SimArray(rows, cols, seed)`` rebuilds it). Faults are
injected with ``Faults`` (timeouts, dropped connections, garbage or truncated replies, a device going
stuck, a refused command): drivers raise ``InstrumentTimeout``, ``ConnectionLost``, ``ProtocolError``,
``ComplianceError``, ``InstrumentRejected``.

Why thin drivers and not PyMeasure: PyMeasure 0.16 has no pulse or trigger-model support for these SMUs
(the operations device work needs), and it pulls pandas and pint. We keep its good idea, declarative
``control(get_cmd, set_cmd, doc, validator)`` properties (``drivers.control``), and put the safety
validators inside them so nothing out of range can reach the transport.
"""

from drivers.arc2 import Arc2Controller
from drivers.array import ArrayController, Reading, RowReading, RowTrain
from drivers.controller import CrossbarController
from drivers.errors import (
    ComplianceError,
    ConnectionLost,
    InstrumentError,
    InstrumentRejected,
    InstrumentStateError,
    InstrumentTimeout,
    ProtocolError,
    SafetyError,
)
from drivers.factory import open_array, open_controller, open_instrument, open_smu
from drivers.safety import SafetyLimits
from drivers.smu import ReadTrain, Smu
from drivers.smu_b2900 import KeysightB2900
from drivers.smu_k2450 import Keithley2450
from drivers.smu_k2600 import Keithley2600B

__all__ = [
    "Arc2Controller",
    "ArrayController",
    "ComplianceError",
    "ConnectionLost",
    "CrossbarController",
    "InstrumentError",
    "InstrumentRejected",
    "InstrumentStateError",
    "InstrumentTimeout",
    "Keithley2450",
    "Keithley2600B",
    "KeysightB2900",
    "ProtocolError",
    "ReadTrain",
    "Reading",
    "RowReading",
    "RowTrain",
    "SafetyError",
    "SafetyLimits",
    "Smu",
    "open_array",
    "open_controller",
    "open_instrument",
    "open_smu",
]
