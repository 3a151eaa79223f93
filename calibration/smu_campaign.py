"""Decay versus bias on one device wired to a source-measure unit (Keithley 2450 / 2600B, Keysight B2900).

The crossbar controller idles its lines at 0 V, so only an SMU can hold a device at a chosen decay bias.
Protocol ``bias_decay``, for every bias x amplitude x width condition and ``cycles`` times:

1. hold the device at the bias for ``settle_s`` (it relaxes at tau(bias)), then a baseline read train
   of ``baseline_reads`` readings at the bias;
2. a potentiating train of ``n_pulses`` hardware-timed pulses (amplitude, width) from a 0 V base, spaced
   as the safety pulse-rate limit allows;
3. a hardware-timed read train of ``count`` readings every ``every_s`` at the bias: the device relaxes at
   tau(bias) while it is read, since the bias is below the pulse threshold.

Storage (``calibration.storage``, device 0, table ``bias_decay``): each (bias, condition, cycle) is one
unit, written with its instrument-timestamped samples and settings and flushed before the next starts;
on ``--resume`` units already complete are skipped, so no pulse is repeated for data that exist.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calibration.storage import CampaignFile
from device_models.record import CalibrationError
from drivers import SafetyLimits, Smu

PROTOCOL = "bias_decay"
SMU_SHAPE = (1, 1)  # one device on the SMU's terminals


class BiasDecayProtocol(BaseModel):
    """Potentiate, then watch the relaxation while the device is held (and read) at each decay bias."""

    model_config = ConfigDict(extra="forbid")

    biases_v: list[float] = Field(
        default=[0.1, 0.3, 0.5], min_length=1, description="decay (= read) biases, V; non-zero"
    )
    amplitudes_v: list[float] = Field(default=[1.5], min_length=1, description="pulse amplitudes, V")
    widths_s: list[float] = Field(default=[1e-3], min_length=1, description="pulse widths, s")
    n_pulses: int = Field(default=20, ge=1, description="pulses in the potentiating train")
    every_s: float = Field(default=0.03, gt=0, description="read interval, s")
    count: int = Field(default=1000, ge=8, description="reads per relaxation")
    cycles: int = Field(default=3, ge=1, description="repeats of each condition")
    baseline_reads: int = Field(default=8, ge=1, description="reads before the train")
    settle_s: float = Field(default=60.0, ge=0, description="hold at the bias before each unit, s")

    @model_validator(mode="after")
    def _biases_below_pulses(self) -> BiasDecayProtocol:
        smallest_pulse = min(abs(a) for a in self.amplitudes_v)
        for bias in self.biases_v:
            if bias == 0:
                raise ValueError("a decay bias of 0 V reads no current; use a small non-zero bias")
            if abs(bias) >= smallest_pulse:
                raise ValueError(
                    f"decay bias {bias:g} V must be below the pulse amplitudes "
                    f"(smallest {smallest_pulse:g} V)"
                )
        return self

    def conditions(self) -> list[tuple[float, float, float]]:
        """Every (bias V, amplitude V, width s), bias-major."""
        return [(b, a, w) for b in self.biases_v for a in self.amplitudes_v for w in self.widths_s]

    def units(self) -> list[tuple[str, float, float, float]]:
        """Every (unit name, bias V, amplitude V, width s) in measurement order."""
        return [
            (f"b{i // (len(self.amplitudes_v) * len(self.widths_s)):02d}_cond{i:02d}_cyc{c:02d}", b, a, w)
            for i, (b, a, w) in enumerate(self.conditions())
            for c in range(self.cycles)
        ]


class SmuCampaignConfig(BaseModel):
    """What to measure on an SMU's device; stored in the campaign file and required to match on resume."""

    model_config = ConfigDict(extra="forbid")

    compliance_a: float = Field(default=1e-4, gt=0, description="current compliance, A")
    bias_decay: BiasDecayProtocol = Field(default_factory=BiasDecayProtocol)


Progress = Callable[[int, int], None]


class SmuCampaign:
    """Runs a ``SmuCampaignConfig`` on an open SMU into an open campaign file (device (0, 0))."""

    def __init__(self, smu: Smu, store: CampaignFile, config: SmuCampaignConfig) -> None:
        if store.shape != SMU_SHAPE:
            raise CalibrationError(f"{store.path} holds a {store.shape} array, not one SMU device")
        self.smu, self.store, self.config = smu, store, config
        self._last_pulse_s: float | None = None

    def units(self) -> list[tuple[str, float, float, float]]:
        """Every (unit name, bias V, amplitude V, width s) the campaign measures, in order."""
        return self.config.bias_decay.units()

    def run(self, progress: Progress | None = None) -> int:
        """Measure every unit not yet in the file; returns how many units were measured now."""
        self.store.add_instrument(self.smu.identify())
        # power-on state, whatever an interrupted session left behind (e.g. a 2450 pulse list)
        self.smu.reset()
        self.smu.set_compliance(self.config.compliance_a)
        plan = self.units()
        measured = 0
        for i, (_, bias, amp, width) in enumerate(plan):
            condition, cycle = divmod(i, self.config.bias_decay.cycles)  # units() is condition-major
            if not self.store.has(PROTOCOL, 0, condition, cycle):
                self._decay_unit(condition, cycle, bias, amp, width)
                self.store.flush()
                measured += 1
            if progress is not None:
                progress(i + 1, len(plan))
        return measured

    def completed(self) -> int:
        """How many units of the plan the file holds."""
        cycles = self.config.bias_decay.cycles
        return sum(self.store.has(PROTOCOL, 0, *divmod(i, cycles)) for i in range(len(self.units())))

    def _pulse(self, amplitude_v: float, width_s: float) -> None:
        """One pulse, waiting first as long as the safety pulse-rate limit requires."""
        gap = 1.0 / self.smu.limits.max_pulses_per_s
        if self._last_pulse_s is not None:
            self.smu.wait(max(0.0, self._last_pulse_s + gap - self.smu.clock.now_s()) * 1.001)
        self._last_pulse_s = self.smu.clock.now_s()
        self.smu.pulse(amplitude_v, width_s)

    def _decay_unit(self, condition: int, cycle: int, bias: float, amp: float, width: float) -> None:
        d = self.config.bias_decay
        self.smu.source_voltage(bias)
        self.smu.wait(d.settle_s)
        baseline = float(np.mean(self.smu.read_train(bias, d.every_s, d.baseline_reads).i_a) / bias)
        for _ in range(d.n_pulses):
            self._pulse(amp, width)
        train = self.smu.read_train(bias, d.every_s, d.count)
        self.store.append(
            PROTOCOL,
            {
                "device": 0,
                "condition": condition,
                "cycle": cycle,
                "bias_v": bias,
                "read_v": bias,
                "amplitude_v": amp,
                "width_s": width,
                "n_pulses": d.n_pulses,
                "every_s": d.every_s,
                "delay_s": 0.0,  # lower bound: the train starts right after the last pulse returned
                "pulse_energy_j": amp**2 * baseline * width,  # V^2 G w, G read before the train
                "baseline_g_siemens": baseline,
            },
            {"t_s": train.t_s[None, :], "g_siemens": (train.i_a / bias)[None, :]},
        )


def check_smu_limits(config: SmuCampaignConfig, limits: SafetyLimits) -> None:
    """Refuse, before anything is sent, a campaign whose pulses, biases or compliance the limits refuse."""
    d = config.bias_decay
    limits.check_compliance(config.compliance_a)
    for bias in d.biases_v:
        limits.check_voltage(bias, "decay bias")
    for amp in d.amplitudes_v:
        for width in d.widths_s:
            limits.check_pulse(amp, width)
