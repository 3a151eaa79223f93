"""User safety limits, required to open an instrument for sourcing, and the checks drivers run first.

Every check raises ``SafetyError`` *before* the driver sends anything, so a refused request leaves the
instrument untouched. Limits are loaded from TOML or JSON, e.g. ``limits.toml``::

    max_abs_voltage_v = 2.0      # |V| of any DC level, pulse amplitude or read voltage
    max_pulse_width_s = 1e-3     # longest voltage pulse
    max_compliance_a = 1e-3      # highest current limit (compliance) the user may set
    max_pulses_per_s = 10        # pulses start at least 1 / max_pulses_per_s apart

``HardwareLimits`` holds what an instrument family can do at all (its manual's ranges); drivers check a
request against both before sending. ``SafeOffOnClose`` is every driver's way out: outputs to 0 V / off
first, then the link closes.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device_models.errors import HwloopError
from drivers.clock import Clock
from drivers.errors import SafetyError

if TYPE_CHECKING:
    from drivers.transport import Transport


class SafetyLimits(BaseModel):
    """Hard limits on what any instrument may be asked to do (SI units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_abs_voltage_v: float = Field(gt=0, le=210, description="largest |V| sourced, in volts")
    max_pulse_width_s: float = Field(gt=0, le=10, description="longest pulse, in seconds")
    max_compliance_a: float = Field(gt=0, le=1.5, description="highest compliance current, in amperes")
    max_pulses_per_s: float = Field(gt=0, le=1e6, description="pulse rate limit, pulses per second")

    @classmethod
    def conservative(cls) -> SafetyLimits:
        """Defaults safe for typical thin-film memristive devices: 2 V, 1 ms, 1 mA, 10 pulses/s."""
        return cls(max_abs_voltage_v=2.0, max_pulse_width_s=1e-3, max_compliance_a=1e-3, max_pulses_per_s=10)

    @classmethod
    def load(cls, path: Path) -> SafetyLimits:
        """Read limits from a ``.toml`` or ``.json`` file; any problem is one clear ``HwloopError``."""
        path = Path(path)
        if not path.is_file():
            raise HwloopError(f"safety limits file not found: {path}")
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(path.read_text())
            elif path.suffix == ".json":
                data = json.loads(path.read_text())
            else:
                raise HwloopError(f"safety limits file must be .toml or .json, got {path.name}")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise HwloopError(f"safety limits file {path} is not valid {path.suffix[1:]}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "file"
            raise HwloopError(f"safety limits file {path}: {where}: {first['msg']}") from None

    def check_voltage(self, volts: float, what: str = "voltage") -> float:
        """Return ``volts`` as float if finite and within ±max_abs_voltage_v, else raise ``SafetyError``."""
        v = _finite(volts, what, "V")
        if abs(v) > self.max_abs_voltage_v:
            raise SafetyError(f"{what} {v:g} V exceeds the safety limit of ±{self.max_abs_voltage_v:g} V")
        return v

    def check_pulse(self, amplitude_v: float, width_s: float) -> tuple[float, float]:
        """Validate a pulse's amplitude (V) and width (s, > 0 and <= max_pulse_width_s)."""
        amp = self.check_voltage(amplitude_v, "pulse amplitude")
        width = _finite(width_s, "pulse width", "s")
        if width <= 0:
            raise SafetyError(f"pulse width must be positive, got {width:g} s")
        if width > self.max_pulse_width_s:
            raise SafetyError(
                f"pulse width {width:g} s exceeds the safety limit of {self.max_pulse_width_s:g} s"
            )
        return amp, width

    def check_compliance(self, current_a: float) -> float:
        """Validate a compliance current (A, > 0 and <= max_compliance_a)."""
        i = _finite(current_a, "compliance", "A")
        if i <= 0:
            raise SafetyError(f"compliance must be positive, got {i:g} A")
        if i > self.max_compliance_a:
            raise SafetyError(f"compliance {i:g} A exceeds the safety limit of {self.max_compliance_a:g} A")
        return i

    def check_line_bias(
        self,
        row_v: Sequence[float] | np.ndarray,
        col_v: Sequence[float] | np.ndarray,
        write_threshold_v: float,
    ) -> tuple[list[float], list[float]]:
        """Validate idle line voltages (V) of a crossbar: every line and every device between them
        (row_v[r] - col_v[c]) within ±max_abs_voltage_v, and every device strictly below the card's
        write (pulse) threshold ``write_threshold_v`` (V), so that holding the bias never writes a device.
        Returns the voltages as floats; ``SafetyError`` naming the first offending line or device."""
        rows = [_finite(v, f"bias of row line {r}", "V") for r, v in enumerate(row_v)]
        cols = [_finite(v, f"bias of column line {c}", "V") for c, v in enumerate(col_v)]
        for what, values in (("row", rows), ("column", cols)):
            for k, v in enumerate(values):
                if abs(v) > self.max_abs_voltage_v:
                    raise SafetyError(
                        f"bias of {what} line {k}, {v:g} V, exceeds the safety limit of "
                        f"±{self.max_abs_voltage_v:g} V"
                    )
        threshold = _finite(write_threshold_v, "write threshold", "V")
        if rows and cols:
            device = np.subtract.outer(np.asarray(rows), np.asarray(cols))
            r, c = np.unravel_index(int(np.argmax(np.abs(device))), device.shape)
            worst = float(device[r, c])
            if abs(worst) > self.max_abs_voltage_v:
                raise SafetyError(
                    f"line biases put {worst:g} V on device (row {r}, col {c}), beyond the safety limit "
                    f"of ±{self.max_abs_voltage_v:g} V"
                )
            if abs(worst) >= threshold:
                raise SafetyError(
                    f"line biases put {worst:g} V on device (row {r}, col {c}), reaching the card's write "
                    f"threshold of {threshold:g} V: holding it would write the device"
                )
        return rows, cols

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"|V| <= {self.max_abs_voltage_v:g} V, pulse width <= {self.max_pulse_width_s:g} s, "
            f"compliance <= {self.max_compliance_a:g} A, <= {self.max_pulses_per_s:g} pulses/s"
        )


class HardwareLimits(BaseModel):
    """What one instrument family can do at all, from its reference manual (SI units).

    Checked next to the user's ``SafetyLimits`` and before anything is sent, so a value the instrument
    would reject (keeping its old setting in force, and maybe firing with it) never reaches it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    instrument: str = Field(description="instrument family, for messages")
    max_abs_voltage_v: float = Field(gt=0, description="largest |V| the source can be set to")
    min_compliance_a: float = Field(gt=0, description="smallest current limit")
    max_compliance_a: float = Field(gt=0, description="largest DC current limit")
    min_pulse_width_s: float = Field(gt=0, description="shortest programmable pulse")
    max_pulse_width_s: float = Field(gt=0, description="longest programmable pulse")
    min_nplc: float = Field(gt=0, description="shortest integration, power-line cycles")
    max_nplc: float = Field(gt=0, description="longest integration, power-line cycles")

    def check_voltage(self, volts: float, what: str = "voltage") -> float:
        """``volts`` if within the instrument's source range, else ``SafetyError``."""
        v = _finite(volts, what, "V")
        if abs(v) > self.max_abs_voltage_v:
            raise SafetyError(
                f"{what} {v:g} V is beyond the {self.instrument}'s range of ±{self.max_abs_voltage_v:g} V"
            )
        return v

    def check_compliance(self, current_a: float) -> float:
        """A current limit (A) the instrument accepts, else ``SafetyError``."""
        i = _finite(current_a, "compliance", "A")
        if not self.min_compliance_a <= i <= self.max_compliance_a:
            raise SafetyError(
                f"compliance {i:g} A is outside the {self.instrument}'s range "
                f"{self.min_compliance_a:g} .. {self.max_compliance_a:g} A"
            )
        return i

    def check_pulse(self, amplitude_v: float, width_s: float) -> tuple[float, float]:
        """A pulse (V, s) the instrument can produce as programmed, else ``SafetyError``."""
        amp = self.check_voltage(amplitude_v, "pulse amplitude")
        width = _finite(width_s, "pulse width", "s")
        if width < self.min_pulse_width_s:
            raise SafetyError(
                f"pulse width {width:g} s is below the {self.instrument}'s minimum of "
                f"{self.min_pulse_width_s:g} s"
            )
        if width > self.max_pulse_width_s:
            raise SafetyError(
                f"pulse width {width:g} s is above the {self.instrument}'s maximum of "
                f"{self.max_pulse_width_s:g} s"
            )
        return amp, width

    def check_nplc(self, nplc: float) -> float:
        """An integration time in power-line cycles the instrument accepts, else ``SafetyError``."""
        n = _finite(nplc, "NPLC", "power-line cycles")
        if not self.min_nplc <= n <= self.max_nplc:
            raise SafetyError(
                f"NPLC {n:g} is outside the {self.instrument}'s range {self.min_nplc:g} .. {self.max_nplc:g}"
            )
        return n


class PulseRateGuard:
    """Refuses a pulse that would start sooner than 1 / max_pulses_per_s after the previous one."""

    def __init__(self, limits: SafetyLimits, clock: Clock) -> None:
        self._min_gap_s = 1.0 / limits.max_pulses_per_s
        self._clock = clock
        self._last_s: float | None = None

    def check(self) -> None:
        """Raise ``SafetyError`` if a pulse now would exceed the rate limit (sends nothing)."""
        if self._last_s is None:
            return
        gap = self._clock.now_s() - self._last_s
        if gap < self._min_gap_s:
            raise SafetyError(
                f"pulse requested {gap:.3g} s after the previous one; the safety limit allows one pulse "
                f"every {self._min_gap_s:.3g} s (wait first)"
            )

    def wait_until_allowed(self) -> None:
        """Wait (on the clock) until a pulse is allowed, then return; a pulse right after is within the
        limit."""
        if self._last_s is not None:
            self._clock.sleep(self._last_s + self._min_gap_s - self._clock.now_s() + 1e-9)
        self.check()

    def record(self) -> None:
        """Note that a pulse has just been started."""
        self._last_s = self._clock.now_s()


class SafeOffOnClose:
    """Closing an instrument, by ``close()`` or by leaving its ``with`` block (also when the block raises),
    first returns its outputs (an SMU's source, a controller's lines) to 0 V / off with ``safe_off``, then
    closes the link."""

    transport: Transport

    def safe_off(self) -> None:
        """Best effort: outputs to 0 V / off; never raises (each driver implements it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Outputs to 0 V / off, then close the link."""
        self.safe_off()
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _finite(value: float, what: str, unit: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SafetyError(f"{what} must be a number of {unit}, got {value!r}") from None
    if not math.isfinite(x):
        raise SafetyError(f"{what} must be finite, got {x} {unit}")
    return x
