"""Calibration campaigns over a crossbar array, run through any ``drivers.ArrayController`` (the serial
crossbar controller or an ArC TWO).

Protocols (row by row: every device of a row is pulsed with one ``pulse_row`` and read with one
``read_row``, so a row's devices are measured in parallel):

decay           relax (``settle_s`` at 0 V), read a baseline, apply a potentiating pulse train, then a
                read train of ``count`` reads every ``every_s``; for each (amplitude, width) condition
                and ``cycles`` times (cycle-to-cycle spread). The devices relax at 0 V between reads.
pulse_response  from rest, one pulse of each (amplitude, width) in the grid; conductance read before and
                after (``reads`` each, averaged); depression: the same negative pulses from the state the
                decay train reaches. Energy per pulse: V^2 G w with G the conductance read before it.

Storage and resume (``calibration.storage``): each (row, condition, cycle) is one unit, appended to its
table for every device of the row and flushed before the next unit starts. On resume a device that
already has a unit gets amplitude 0 in that unit's pulses (``pulse_row`` leaves it untouched), so no
device is ever pulsed twice for the same data, and completed data are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.storage import CampaignFile
from device_models.record import CalibrationError
from drivers import ArrayController, SafetyLimits


class DecayProtocol(BaseModel):
    """Potentiate, then watch the relaxation."""

    model_config = ConfigDict(extra="forbid")

    amplitudes_v: list[float] = Field(default=[1.5], min_length=1, description="pulse amplitudes, V")
    widths_s: list[float] = Field(default=[1e-3], min_length=1, description="pulse widths, s")
    n_pulses: int = Field(default=20, ge=1, description="pulses in the potentiating train")
    read_v: float = Field(default=0.2, gt=0, description="read voltage, V")
    every_s: float = Field(default=0.15, gt=0, description="read interval, s")
    count: int = Field(default=300, ge=8, description="reads per relaxation")
    cycles: int = Field(default=2, ge=1, description="repeats of each condition")
    baseline_reads: int = Field(default=8, ge=1, description="reads before the train")
    settle_s: float = Field(default=60.0, ge=0, description="relaxation at 0 V before each unit, s")


class PulseProtocol(BaseModel):
    """Conductance change per pulse versus amplitude and width, both polarities."""

    model_config = ConfigDict(extra="forbid")

    # above the shipped card's 1.3 V write threshold: a pulse below it does nothing to fit
    amplitudes_v: list[float] = Field(default=[1.4, 1.55, 1.7, 1.85, 2.0], min_length=2)
    widths_s: list[float] = Field(default=[5e-5, 1e-4, 2e-4], min_length=2)
    reads: int = Field(default=32, ge=1, description="reads averaged before and after each pulse")
    read_v: float = Field(default=0.2, gt=0)
    settle_s: float = Field(default=60.0, ge=0)
    reference_amplitude_v: float = Field(default=1.5, gt=0, description="V of the reference pulse for gamma")
    reference_width_s: float = Field(default=1e-4, gt=0, description="width of the reference pulse, s")


class CampaignConfig(BaseModel):
    """What to measure, where; stored in the campaign file and required to match on resume."""

    model_config = ConfigDict(extra="forbid")

    rows: list[int] | None = Field(default=None, description="rows to measure (None: all)")
    cols: list[int] | None = Field(default=None, description="columns to measure (None: all)")
    compliance_a: float = Field(default=1e-4, gt=0)
    decay: DecayProtocol | None = Field(default_factory=DecayProtocol)
    pulse: PulseProtocol | None = Field(default_factory=PulseProtocol)

    @model_validator(mode="after")
    def _something(self) -> CampaignConfig:
        if self.decay is None and self.pulse is None:
            raise ValueError("a campaign needs at least one protocol (decay or pulse)")
        return self


Progress = Callable[[int, int], None]


class Campaign:
    """Runs a ``CampaignConfig`` on an open crossbar controller into an open campaign file."""

    def __init__(self, xbar: ArrayController, store: CampaignFile, config: CampaignConfig) -> None:
        self.xbar, self.store, self.config = xbar, store, config
        self.rows = config.rows if config.rows is not None else list(range(xbar.rows))
        self.cols = config.cols if config.cols is not None else list(range(xbar.cols))
        bad = [r for r in self.rows if not 0 <= r < xbar.rows] + [
            c for c in self.cols if not 0 <= c < xbar.cols
        ]
        if bad:
            raise CalibrationError(f"rows/cols {bad} are outside the {xbar.rows}x{xbar.cols} array")
        self._last_pulse_s: float | None = None

    # -- plan ------------------------------------------------------------------------------------
    def units(self) -> list[tuple[str, int, int, int]]:
        """Every (kind, row, condition, cycle) the campaign measures, in order. Decay conditions index
        the amplitude x width grid; pulse conditions are potentiation k = 0..K-1, then depression K + k."""
        plan: list[tuple[str, int, int, int]] = []
        for row in self.rows:
            if (d := self.config.decay) is not None:
                n_cond = len(d.amplitudes_v) * len(d.widths_s)
                plan += [("decay", row, j, c) for j in range(n_cond) for c in range(d.cycles)]
            if (p := self.config.pulse) is not None:
                k = len(p.amplitudes_v) * len(p.widths_s)
                plan += [("pulse", row, i, 0) for i in range(2 * k)]
        return plan

    def todo(self, kind: str, row: int, condition: int, cycle: int) -> list[int]:
        """Columns of ``row`` still missing unit (kind, condition, cycle) in the file."""
        cols = self.xbar.cols
        return [c for c in self.cols if not self.store.has(kind, row * cols + c, condition, cycle)]

    def completed(self) -> int:
        """How many units of the plan the file holds for every selected device."""
        return sum(not self.todo(*unit) for unit in self.units())

    def run(self, progress: Progress | None = None) -> int:
        """Measure every unit not yet in the file; returns how many units were measured now."""
        self.store.add_instrument(self.xbar.identify())
        self.xbar.set_compliance(self.config.compliance_a)
        plan = self.units()
        measured = 0
        for i, (kind, row, condition, cycle) in enumerate(plan):
            todo = self.todo(kind, row, condition, cycle)
            if todo:
                if kind == "decay":
                    self._decay_unit(row, condition, cycle, todo)
                else:
                    self._pulse_unit(row, condition, todo)
                self.store.flush()
                measured += 1
            if progress is not None:
                progress(i + 1, len(plan))
        return measured

    # -- instrument sequences ----------------------------------------------------------------------
    def _amplitudes(self, cols: Sequence[int], volts: float) -> list[float]:
        """Per-column amplitudes: ``volts`` on the devices to measure, 0 (no pulse) elsewhere."""
        amps = [0.0] * self.xbar.cols
        for c in cols:
            amps[c] = volts
        return amps

    def _pulse(self, row: int, cols: Sequence[int], volts: float, width_s: float) -> None:
        """One row pulse, waiting first as long as the safety pulse-rate limit requires."""
        gap = 1.0 / self.xbar.limits.max_pulses_per_s
        if self._last_pulse_s is not None:
            self.xbar.wait(max(0.0, self._last_pulse_s + gap - self.xbar.clock.now_s()) * 1.001)
        self.xbar.pulse_row(row, self._amplitudes(cols, volts), width_s)
        self._last_pulse_s = self.xbar.clock.now_s()

    def _mean_g(self, row: int, read_v: float, reads: int) -> np.ndarray:
        return np.mean([self.xbar.read_row(row, read_v).i_a for _ in range(reads)], axis=0) / read_v

    def _key(self, row: int, cols: list[int], condition: int, cycle: int) -> dict[str, np.ndarray]:
        n = len(cols)
        return {
            "device": row * self.xbar.cols + np.asarray(cols),
            "condition": np.full(n, condition),
            "cycle": np.full(n, cycle),
        }

    def _decay_unit(self, row: int, condition: int, cycle: int, cols: list[int]) -> None:
        d = self.config.decay
        assert d is not None
        amp = d.amplitudes_v[condition // len(d.widths_s)]
        width = d.widths_s[condition % len(d.widths_s)]
        self.xbar.wait(d.settle_s)
        baseline = self._mean_g(row, d.read_v, d.baseline_reads)
        for _ in range(d.n_pulses):
            self._pulse(row, cols, amp, width)
        t_end = self.xbar.clock.now_s()
        t, i = np.empty(d.count), np.empty((d.count, self.xbar.cols))
        delay = 0.0
        for k in range(d.count):
            if k == 0:
                delay = self.xbar.clock.now_s() - t_end
            reading = self.xbar.read_row(row, d.read_v)
            t[k], i[k] = reading.t_s, reading.i_a
            self.xbar.wait(d.every_s)
        n = len(cols)
        self.store.append(
            "decay",
            {
                **self._key(row, cols, condition, cycle),
                "amplitude_v": np.full(n, amp),
                "width_s": np.full(n, width),
                "n_pulses": np.full(n, d.n_pulses),
                "read_v": np.full(n, d.read_v),
                "every_s": np.full(n, d.every_s),
                "delay_s": np.full(n, delay),
                "pulse_energy_j": amp**2 * baseline[cols] * width,  # V^2 G w per pulse, G read before
                "baseline_g_siemens": baseline[cols],
            },
            {"t_s": np.broadcast_to(t, (n, d.count)), "g_siemens": i[:, cols].T / d.read_v},
        )

    def _pulse_unit(self, row: int, condition: int, cols: list[int]) -> None:
        p = self.config.pulse
        assert p is not None
        grid = len(p.amplitudes_v) * len(p.widths_s)
        up, k = condition < grid, condition % grid
        amp, width = p.amplitudes_v[k // len(p.widths_s)], p.widths_s[k % len(p.widths_s)]
        self.xbar.wait(p.settle_s)
        if not up:  # depression is measured from the state the decay train reaches
            d = self.config.decay or DecayProtocol()
            for _ in range(d.n_pulses):
                self._pulse(row, cols, d.amplitudes_v[0], d.widths_s[0])
        before = self._mean_g(row, p.read_v, p.reads)
        self._pulse(row, cols, amp if up else -amp, width)
        after = self._mean_g(row, p.read_v, p.reads)
        n = len(cols)
        self.store.append(
            "pulse",
            {
                **self._key(row, cols, condition, 0),
                "amplitude_v": np.full(n, amp if up else -amp),
                "width_s": np.full(n, width),
                "read_v": np.full(n, p.read_v),
                "reads": np.full(n, p.reads),
                "g_before_siemens": before[cols],
                "g_after_siemens": after[cols],
                "pulse_energy_j": amp**2 * before[cols] * width,
            },
        )


def check_limits(config: CampaignConfig, limits: SafetyLimits) -> None:
    """Refuse, before anything is sent, a campaign whose pulses the safety limits would refuse."""
    volts = [
        *(config.decay.amplitudes_v if config.decay else []),
        *(config.pulse.amplitudes_v if config.pulse else []),
    ]
    widths = [
        *(config.decay.widths_s if config.decay else []),
        *(config.pulse.widths_s if config.pulse else []),
    ]
    for v in volts:
        for w in widths:
            limits.check_pulse(v, w)
