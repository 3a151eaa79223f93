"""Simulated Keysight B2912A, channel 1: the SCPI subset of the ``KeysightB2900`` driver.

Pulse shape applies the triggered level for the pulse width on top of the immediate (base) level; DC
shape with the timer trigger source takes ``:TRIG:COUN`` readings ``:TRIG:TIM`` apart.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.sim.emulator import SmuEmulator


class B2900Emulator(SmuEmulator):
    """A Keysight B2912A with one simulated device on channel 1."""

    idn = "Keysight Technologies,B2912A,MY51141234,4.1.2000"

    def reset_state(self) -> None:
        super().reset_state()
        self.triggered_v = 0.0
        self.shape = "DC"
        self.width_s = 1e-3
        self.trigger_source = "AINT"
        self.timer_s = 1e-3
        self.trigger_count = 1
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

    def _initiate(self, arg: str) -> None:
        if self.shape == "PULS":
            base = self.level_v
            self.set_source(level_v=self.triggered_v)
            self.hold_for(self.width_s)
            self.set_source(level_v=base)
            return
        self.set_source(level_v=self.triggered_v)
        period = max(self.timer_s, self.aperture_s) if self.trigger_source == "TIM" else self.aperture_s
        self.readings = self.measure_train(self.trigger_count, period)

    def _fetch(self, column: int) -> str:
        if not self.readings:
            self.error(-230, "Data corrupt or stale")
            return ""
        t0 = self.readings[0][0]
        return ",".join(f"{(r[1] if column else r[0] - t0):+.6E}" for r in self.readings)

    def _error(self, arg: str) -> str:
        if not self.errors:
            return '+0,"No error"'
        code, message = self.errors.pop(0)
        return f'{code:+d},"{message}"'

    def _set_level(self, arg: str) -> None:
        self.set_source(level_v=float(arg))

    def _set_output(self, arg: str) -> None:
        self.set_source(output_on=arg.upper() in {"ON", "1"})

    def _reset(self, arg: str) -> None:
        self.set_source(level_v=0.0, output_on=False)
        self.reset_state()


def _setter(name: str, cast: Callable[[str], object]) -> Callable[[B2900Emulator, str], None]:
    def handler(emulator: B2900Emulator, arg: str) -> None:
        setattr(emulator, name, cast(arg))

    return handler


def _getter(name: str) -> Callable[[B2900Emulator, str], str]:
    def handler(emulator: B2900Emulator, arg: str) -> str:
        value = getattr(emulator, name)
        return f"{int(value)}" if isinstance(value, bool) else f"{value:+.6E}"

    return handler


def _ignore(emulator: B2900Emulator, arg: str) -> None:
    return None


_COMMANDS: dict[str, Callable[[B2900Emulator, str], str | None]] = {
    "*IDN?": lambda e, a: e.idn,
    "*RST": B2900Emulator._reset,
    "*OPC?": lambda e, a: "1",
    ":SYST:ERR?": B2900Emulator._error,
    ":SOUR:FUNC:MODE": _ignore,
    ":SENS:FUNC": _ignore,
    ":SENS:CURR:PROT": _setter("limit_a", float),
    ":SENS:CURR:PROT?": _getter("limit_a"),
    ":SOUR:VOLT": B2900Emulator._set_level,
    ":SOUR:VOLT?": _getter("level_v"),
    ":SOUR:VOLT:TRIG": _setter("triggered_v", float),
    ":SOUR:VOLT:TRIG?": _getter("triggered_v"),
    ":SOUR:FUNC:SHAP": _setter("shape", lambda a: a.upper()[:4]),
    ":SOUR:PULS:DEL": _ignore,
    ":SOUR:PULS:WIDT": _setter("width_s", float),
    ":SOUR:PULS:WIDT?": _getter("width_s"),
    ":TRIG:SOUR": _setter("trigger_source", lambda a: a.upper()[:4]),
    ":TRIG:TIM": _setter("timer_s", float),
    ":TRIG:COUN": _setter("trigger_count", int),
    ":OUTP": B2900Emulator._set_output,
    ":OUTP?": _getter("output_on"),
    ":MEAS:CURR?": lambda e, a: f"{e.measure()[1]:+.6E}",
    ":INIT": B2900Emulator._initiate,
    ":ABOR": _ignore,  # sequences complete instantly in virtual time: nothing left to abort
    ":FETC:ARR:CURR?": lambda e, a: e._fetch(1),
    ":FETC:ARR:TIME?": lambda e, a: e._fetch(0),
}
