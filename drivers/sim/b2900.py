"""Simulated Keysight B2912A, channel 1: the SCPI subset of the ``KeysightB2900`` driver.

What the programming guide says and the driver depends on is modelled, each rule with its section of the
*Keysight B2900 SCPI Command Reference* ("SCPI" below) or *User's Guide*:

* settings and the error queue outlive driver sessions; ``*RST`` resets settings (not the error queue;
  ``*CLS`` empties it) (SCPI: ``*RST``, ``*CLS``, "Reset setting" column of the command summary);
* one ``:INIT`` runs ``:ARM:COUN`` x ``:TRIG:COUN`` output steps; the level of each step comes from the
  voltage mode: FIX uses ``:SOUR:VOLT:TRIG``, LIST the stored ``:SOUR:VOLT:LIST`` values, SWE the
  ``:SOUR:VOLT:STAR`` .. ``STOP`` staircase (SCPI: ``:ARM:COUNt``, ``:TRIGger:COUNt``,
  ``:SOURce:VOLTage:MODE``; User's Guide, "Trigger System");
* the current compliance ``:SENS:CURR:PROT`` accepts "from the minimum measurement value to the maximum
  measurement value of the channel" (B2900 SCPI command reference, :SENSe:CURRent:PROTection; up to
  3.03 A, ``MODELS``); outside it is error -222 and the old compliance stays;
* pulse shape applies each step's level for the pulse width on top of the base (immediate) level, after
  the pulse delay; widths outside 50 us .. 100 ks and levels beyond 210 V are error -222 and leave the
  old value in force (SCPI: ``:SOURce:PULSe:WIDTh``, ``:DELay``, "Source Output Ranges");
* DC shape with the timer trigger takes readings ``max(:TRIG:TIM, one reading)`` apart; one reading takes
  NPLC / line frequency plus 0.1 ms (an aperture, when set, replaces NPLC / line frequency; with auto
  aperture on the instrument picks the integration, modelled as one power-line cycle) (SCPI:
  ``:TRIGger:TIMer``, ``:SENSe:CURRent:NPLCycles``, ``:APERture``; the 0.1 ms is this simulation's
  estimate, unverified);
* ``:FORM:DATA REAL,32`` / ``REAL,64`` makes fetches answer in binary (SCPI: ``:FORMat:DATA``);
* the sequence runs on the virtual clock; ``*OPC?`` answers when it has ended (holding the commands after
  it until then); ``:ABOR`` stops it (SCPI: ``*OPC``, ``:ABORt``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from drivers.sim.emulator import SmuEmulator, Steps, train_steps

MAX_ABS_VOLTAGE_V = 210.0
PULSE_WIDTH_RANGE_S = (50e-6, 1e5)
NPLC_RANGE = (4e-4, 100.0)
TIMER_RANGE_S = (2e-5, 1e5)
APERTURE_RANGE_S = (8e-6, 2.0)
AUTO_APERTURE_PLC = 1.0  # simplification: with auto aperture on, the instrument integrates one cycle
# Per model: the current-compliance range (A). Maximum 3.03 A (3 A DC range + 1 %); minimum taken as a
# tenth of the smallest current range (B2911A/12A: 10 nA, B2901A/02A: 100 nA): unverified, measure on the
# bench with ":SENS:CURR:PROT? MIN" and ":SENS:CURR:PROT? MAX".
MODELS: dict[str, tuple[float, float]] = {
    "B2901A": (10e-9, 3.03),
    "B2902A": (10e-9, 3.03),
    "B2911A": (1e-9, 3.03),
    "B2912A": (1e-9, 3.03),
}


class B2900Emulator(SmuEmulator):
    """A Keysight B2912A with one simulated device on channel 1."""

    idn = "Keysight Technologies,B2912A,MY51141234,4.1.2000"

    def __init__(self, *args: Any, model: str = "B2912A", **kwargs: Any) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown B2900 model {model!r}; one of {', '.join(MODELS)}")
        self.model = model
        self.idn = f"Keysight Technologies,{model},MY51141234,4.1.2000"
        self.limit_range_a = MODELS[model]
        super().__init__(*args, **kwargs)

    def reset_state(self) -> None:
        super().reset_state()
        self.triggered_v = 0.0
        self.shape = "DC"
        self.width_s = 1e-3
        self.pulse_delay_s = 0.0
        self.trigger_source = "AINT"
        self.timer_s = 1e-3
        self.trigger_count = 1
        self.arm_count = 1
        self.voltage_mode = "FIX"
        self.list_v: list[float] = [0.0]
        self.sweep_v = (0.0, 0.0)
        self.nplc = 1.0
        self.aperture_s: float | None = None
        self.aperture_auto = False
        self.format_data = "ASC"
        self.readings: list[tuple[float, float]] = []

    def dispatch(self, command: str) -> str | None:
        header, _, rest = command.partition(" ")
        header = header.upper()
        handler = _COMMANDS.get(header)
        if handler is None:
            self.error(-113, f"Undefined header; {command[:40]}")
            return None
        try:
            return handler(self, rest.strip())
        except (ValueError, IndexError):
            self.error(-109, f"Missing or bad parameter; {command[:40]}")
            return None

    def reading_time_s(self) -> float:
        if self.aperture_auto:
            integration = AUTO_APERTURE_PLC / self.line_frequency_hz
        elif self.aperture_s is not None:
            integration = self.aperture_s
        else:
            integration = self.nplc / self.line_frequency_hz
        return integration + self.measure_overhead_s

    def _checked(self, arg: str, low: float, high: float, what: str) -> float | None:
        value = float(arg)
        if low <= abs(value) <= high:
            return value
        self.error(-222, f"Data out of range; {what} {value:g}")
        return None

    def _step_levels(self) -> list[float]:
        """The level of each output step of one :INIT (V)."""
        steps = self.arm_count * self.trigger_count
        if self.voltage_mode == "LIST":
            return [self.list_v[k % len(self.list_v)] for k in range(steps)]
        if self.voltage_mode == "SWE":
            return list(np.linspace(*self.sweep_v, self.trigger_count)) * self.arm_count
        return [self.triggered_v] * steps

    def _initiate(self, arg: str) -> None:
        if self.operation is not None:
            self.error(-213, "Init ignored")
            return
        levels = self._step_levels()
        if self.shape == "PULS":
            self.start("pulse", self._pulses(levels))
            return
        self.set_source(level_v=levels[-1])
        period = max(self.timer_s, self.reading_time_s()) if self.trigger_source == "TIM" else 0.0
        period = max(period, self.reading_time_s())
        times = self.now_s() + np.arange(len(levels)) * period
        self.readings = []
        self.start("read train", train_steps(self, times, self.readings))

    def _pulses(self, levels: list[float]) -> Steps:
        base = self.level_v
        t = self.now_s()
        for level in levels:
            t += self.pulse_delay_s
            yield t
            self.set_source(level_v=level, at_s=t)
            t_end = t + self.width_s
            try:
                yield t_end
            except GeneratorExit:
                t_end = min(max(self.now_s(), t), t_end)
                self.set_source(level_v=base, at_s=t_end)
                return
            self.set_source(level_v=base, at_s=t_end)
            t = t_end + self.reading_time_s()  # the acquisition of this step

    def _fetch(self, command: str, column: int) -> str | None:
        if not self.readings:
            self.error(-230, "Data corrupt or stale")
            return ""
        t0 = self.readings[0][0]
        values = [(r[1] if column else r[0] - t0) for r in self.readings]
        if self.format_data != "ASC":
            self.emit_raw(command, b"#0" + struct.pack(f">{len(values)}d", *values))
            return None
        return ",".join(f"{v:+.6E}" for v in values)

    def _error(self, arg: str) -> str:
        if not self.errors:
            return '+0,"No error"'
        code, message = self.errors.pop(0)
        return f'{code:+d},"{message}"'

    def _set_compliance(self, arg: str) -> None:
        value = self._checked(arg, *self.limit_range_a, "current compliance")
        if value is not None:
            self.limit_a = abs(value)

    def _set_level(self, arg: str) -> None:
        value = self._checked(arg, 0.0, MAX_ABS_VOLTAGE_V, "voltage")
        if value is not None:
            self.set_source(level_v=value)

    def _set_triggered(self, arg: str) -> None:
        value = self._checked(arg, 0.0, MAX_ABS_VOLTAGE_V, "voltage")
        if value is not None:
            self.triggered_v = value

    def _set_width(self, arg: str) -> None:
        value = self._checked(arg, *PULSE_WIDTH_RANGE_S, "pulse width")
        if value is not None:
            self.width_s = value

    def _set_nplc(self, arg: str) -> None:
        value = self._checked(arg, *NPLC_RANGE, "NPLC")
        if value is not None:
            self.nplc, self.aperture_s = value, None

    def _set_aperture(self, arg: str) -> None:
        value = self._checked(arg, *APERTURE_RANGE_S, "aperture")
        if value is not None:
            self.aperture_s = value

    def _set_aperture_auto(self, arg: str) -> None:
        self.aperture_auto = arg.upper() in {"ON", "1"}

    def _set_timer(self, arg: str) -> None:
        value = self._checked(arg, *TIMER_RANGE_S, "trigger timer")
        if value is not None:
            self.timer_s = value

    def _set_list(self, arg: str) -> None:
        self.list_v = [float(v) for v in arg.split(",")]

    def _set_output(self, arg: str) -> None:
        self.set_source(output_on=arg.upper() in {"ON", "1"})

    def _reset(self, arg: str) -> None:
        self.abort()
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()


def _setter(name: str, cast: Callable[[str], object]) -> Callable[[B2900Emulator, str], None]:
    def handler(emulator: B2900Emulator, arg: str) -> None:
        setattr(emulator, name, cast(arg))

    return handler


def _getter(name: str) -> Callable[[B2900Emulator, str], str]:
    def handler(emulator: B2900Emulator, arg: str) -> str:
        value = getattr(emulator, name)
        if isinstance(value, str):
            return value
        return f"{int(value)}" if isinstance(value, bool | int) else f"{value:+.6E}"

    return handler


def _ignore(emulator: B2900Emulator, arg: str) -> None:
    return None


def _sweep_end(index: int) -> Callable[[B2900Emulator, str], None]:
    def handler(emulator: B2900Emulator, arg: str) -> None:
        ends = list(emulator.sweep_v)
        ends[index] = float(arg)
        emulator.sweep_v = (ends[0], ends[1])

    return handler


_COMMANDS: dict[str, Callable[[B2900Emulator, str], str | None]] = {
    "*IDN?": lambda e, a: e.idn,
    "*RST": B2900Emulator._reset,
    "*CLS": lambda e, a: e.errors.clear(),
    "*OPC?": lambda e, a: e.opc(),
    ":SYST:ERR?": B2900Emulator._error,
    ":SYST:LFR?": lambda e, a: f"{e.line_frequency_hz:g}",
    ":SOUR:FUNC:MODE": _ignore,
    ":SENS:FUNC": _ignore,
    ":SENS:CURR:PROT": B2900Emulator._set_compliance,
    ":SENS:CURR:PROT?": _getter("limit_a"),
    ":SENS:CURR:NPLC": B2900Emulator._set_nplc,
    ":SENS:CURR:NPLC?": _getter("nplc"),
    ":SENS:CURR:APER": B2900Emulator._set_aperture,
    ":SENS:CURR:APER:AUTO": B2900Emulator._set_aperture_auto,
    ":SOUR:VOLT": B2900Emulator._set_level,
    ":SOUR:VOLT?": _getter("level_v"),
    ":SOUR:VOLT:TRIG": B2900Emulator._set_triggered,
    ":SOUR:VOLT:TRIG?": _getter("triggered_v"),
    ":SOUR:VOLT:MODE": _setter("voltage_mode", lambda a: a.upper()[:4].replace("FIXE", "FIX")),
    ":SOUR:VOLT:MODE?": _getter("voltage_mode"),
    ":SOUR:LIST:VOLT": B2900Emulator._set_list,
    ":SOUR:VOLT:STAR": _sweep_end(0),
    ":SOUR:VOLT:STOP": _sweep_end(1),
    ":SOUR:FUNC:SHAP": _setter("shape", lambda a: a.upper()[:4]),
    ":SOUR:PULS:DEL": _setter("pulse_delay_s", float),
    ":SOUR:PULS:WIDT": B2900Emulator._set_width,
    ":SOUR:PULS:WIDT?": _getter("width_s"),
    ":TRIG:SOUR": _setter("trigger_source", lambda a: a.upper()[:4]),
    ":TRIG:TIM": B2900Emulator._set_timer,
    ":TRIG:COUN": _setter("trigger_count", int),
    ":TRIG:TRAN:DEL": _ignore,
    ":TRIG:ACQ:DEL": _ignore,
    ":ARM:COUN": _setter("arm_count", int),
    ":ARM:COUN?": _getter("arm_count"),
    ":ARM:SOUR": _ignore,
    ":FORM:DATA": _setter("format_data", lambda a: a.upper()[:3]),
    ":OUTP": B2900Emulator._set_output,
    ":OUTP?": _getter("output_on"),
    ":MEAS:CURR?": lambda e, a: f"{e.measure()[1]:+.6E}",
    ":INIT": B2900Emulator._initiate,
    ":ABOR": lambda e, a: e.abort(),
    ":FETC:ARR:CURR?": lambda e, a: e._fetch(":FETC:ARR:CURR?", 1),
    ":FETC:ARR:TIME?": lambda e, a: e._fetch(":FETC:ARR:TIME?", 0),
}
