"""The emulated crossbar: an STPN layer on simulated volatile memristors described by a device card.

Each synapse is a differential pair (G+, G-) (``device_models.mapping``). The array is
``device_models.realisation.Realisation`` (from the card, or from a calibration record), the same
model every backend uses: one chip drawn by ``seed`` (device-to-device spreads, stuck devices), one
synapse -> device assignment. Every sample of a batch runs on its own copy of that chip with its own
short-term state. F stays in weight units (the protocol's
contract): F_ij = (volatile part of G+ - volatile part of G-) / g_per_weight, positive F on G+.

Time is explicit: one STPN step is ``dt_s`` seconds. ``program`` realises each trained lambda_ij as
a device retention (``Realisation.bias_for_lambda``): the bias at which the known device (the card's
nominal one, or the record's fitted one) retains lambda per dt_s, clipped to the card's bias window;
the true device (with its d2d spread on a card) then retains what its law gives at that bias, G+'s
retention acting on F > 0 and G-'s on F < 0. gamma_ij is realised by pulse width at
``card.read.write_v`` chosen from the nominal pulse model; the pair's mean pulse response and c2c
noise (one draw per pulse, and a pulse only where z_j != 0) scale the change it actually makes. In
exact mode W and F sit on separate pairs; one stuck-device draw per pair position serves both (a
simplification).

Fault-aware programming (``fault_aware``, default on; ``device_models.programming``): program-and-
verify with read noise finds the stuck devices; a faulty synapse's W stays analog on the partner
device where it fits, else the periphery computes W z for it; its F is always computed digitally
(lambda F / n + gamma h z, exact). ``fault_report()`` gives the counts and the digital cost.

Normalisation (see docs/normalisation.md): ``normalisation="exact"`` keeps a digital per-row scale
s_i in the periphery so that F = s * f (f the physical state, on a separate volatile array) and
F_t = lambda F / n + gamma h z holds exactly up to the device effects; the price is write gain 1/s
(bounded by ``max_write_gain`` through row refreshes, counted in ``stats()``). ``"native"`` lets the
devices decay by their own law and applies n only at read: F_t = lambda F + gamma h z, the
``ideal-native`` STPN variant (``hwloop.backends.native``), to which a model can be fine-tuned.

Approximations, stated: the row norm n is computed from the noise-free device state (the periphery
is assumed to know it); writes use the small-signal pulse response (the soft-bound slow-down near
saturation appears only as the window clamp); programming energy uses each written device's
long-term conductance and the small-signal pulse width of the intended change (a write the window
clips is still charged at its intended size); decay-bias energy holds each step's starting state
over dt_s (rectangle rule); row refreshes in exact mode are done by the array (read, erase, rewrite:
``_refresh``) with their noise and energy (``refresh_j``), the erase's own time not paced; biexp and
stretched laws decay by their best per-step retention (``device_models.laws.step_retention``),
exact only for "exp"; digital synapses add no read noise or device energy, and the verify reads
are counted in ``fault_report()``, not charged energy. Decay biases follow the array's topology
(``bias``, ``device_models.bias_lines``): by default line voltages (H + 2K drivers, device (r, c) at
V_row - V_col, fitted to the trained lambdas in log-time); ``"device"`` is the idealised bias per device
(1T1R-style access). Inference only: no autograd.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from device_models.array import ArrayConfig, NonIdealities
from device_models.array import nonidealities as nonidealities_of
from device_models.bias_lines import DEFAULT_TOPOLOGY, LineBias
from device_models.card import DeviceCard
from device_models.memristor import read_noise_var_siemens2
from device_models.programming import FaultReport
from device_models.realisation import Realisation
from hwloop.backends.emulated_kernels import (
    REFRESH_DOMAIN,
    Refresh,
    emulated_read,
    emulated_update,
    write_noise_key,
)
from hwloop.backends.emulated_step import (
    BIAS_SUM,
    MAX_GAIN,
    READ_SUM,
    REFRESH_G_SUM,
    REFRESH_NEW_SUM,
    REFRESHED_ROWS,
    WRITTEN_SUM,
    StepBuffers,
    StepConstants,
    emulated_step,
)
from hwloop.backends.fused import fusable
from hwloop.crossbar import NORM_EPS, Readout, StepResult, Synapses, read_then_update
from hwloop.errors import HwloopError, ShapeError

if TYPE_CHECKING:
    from device_models.record import CalibrationRecord

Normalisation = Literal["exact", "native"]


class EmulatedCrossbar:
    """STPN synapses on emulated volatile memristors; every non-ideality has its own switch.

    card: device card path or instance (default: the shipped illustrative SrTiO3 card).
    calibration: a calibration record (JSON path or ``device_models.record.CalibrationRecord``); its
        per-device decay and pulse response replace the card's nominal values and drawn spreads.
    seed: draws the chip (device spreads, stuck devices) and seeds the noise generator.
    dt_s: seconds of device time one STPN step represents.
    normalisation: "exact" or "native" (module docstring).
    nonidealities: a preset of ``device_models.array.NONIDEALITY_PRESETS`` ("default": all on,
        "ideal-devices", "no-noise", "no-faults"); the switches below, where given, change it.
    read_noise, d2d, c2c, stuck, quantise, saturation, bias_limits: switch each non-ideality.
    energy_counters: accumulate read / programming / decay-bias energy (``energy()``).
    max_write_gain: exact mode: largest write amplification 1/s before a row is refreshed.
    fault_aware: program-and-verify finds stuck devices and compensates them
        (``device_models.programming``; ``fault_report()`` says what it found and the digital cost).
    bias: how the decay biases are held: "lines" (row and column line voltages, default), "rows",
        "device" (one source per device, idealised) or "none" (0 V) (``device_models.bias_lines``).

    After ``program``: ``g_per_weight`` (S per weight unit), ``g_lt_siemens`` (2, H, K) long-term
    conductances of [G+, G-], ``effective_weight`` (H, K) the W the array (and the periphery, for
    digital synapses) holds, ``decay_bias_v`` and ``retention`` (2, H, K) each device's decay bias
    and per-step retention, ``device_index`` (2, H, K) which device holds G+ / G- of each synapse.
    """

    name = "emulated"

    def __init__(
        self,
        card: str | Path | DeviceCard | None = None,
        calibration: str | Path | CalibrationRecord | None = None,
        seed: int = 0,
        dt_s: float = 0.1,
        normalisation: Normalisation = "exact",
        read_noise: bool | None = None,
        d2d: bool | None = None,
        c2c: bool | None = None,
        stuck: bool | None = None,
        quantise: bool | None = None,
        saturation: bool | None = None,
        bias_limits: bool | None = None,
        energy_counters: bool | None = None,
        max_write_gain: float = 16.0,
        fault_aware: bool | None = None,
        bias: str = DEFAULT_TOPOLOGY,
        nonidealities: str | NonIdealities | None = None,
    ) -> None:
        # the options are checked once, by ArrayConfig (``device_models.array``): one error line each
        switches = nonidealities_of(
            nonidealities,
            read_noise=read_noise,
            d2d=d2d,
            c2c=c2c,
            stuck=stuck,
            quantise=quantise,
            saturation=saturation,
            bias_limits=bias_limits,
            energy_counters=energy_counters,
            fault_aware=fault_aware,
        )
        self.config = config = ArrayConfig.build(
            card,
            calibration,
            seed=seed,
            dt_s=dt_s,
            nonidealities=switches,
            normalisation=normalisation,
            max_write_gain=max_write_gain,
            bias=bias,
        )
        self.card, self.record, self.bias = config.card, config.calibration, config.bias
        if self.card.read.write_v < self.card.pulse.v_threshold_v:
            raise HwloopError("device card: read.write_v is below pulse.v_threshold_v, so no write would act")
        self.seed, self.dt_s, self.normalisation = config.seed, config.dt_s, config.normalisation
        # the switches, read on the per-step paths
        self.read_noise, self.d2d, self.c2c, self.stuck = (
            switches.read_noise,
            switches.d2d,
            switches.c2c,
            switches.stuck,
        )
        self.quantise, self.saturation, self.bias_limits = (
            switches.quantise,
            switches.saturation,
            switches.bias_limits,
        )
        self.energy_counters, self.max_write_gain = switches.energy_counters, config.max_write_gain
        self.fault_aware = switches.fault_aware
        self.faults = FaultReport()
        self._noise = torch.Generator().manual_seed(self.seed)
        self._writes = 0  # updates with write noise so far: each has its own noise stream
        # c2c spread per synapse, built for the digital synapses ``_sigma_for`` of the last program
        self._sigma: Tensor = torch.empty(0)
        self._sigma_for: tuple[Tensor, ...] | None = None
        self._programmed = False
        self._F_out: Tensor | None = None
        self._energy: dict[str, float] = {}
        self.refresh_rows, self.max_gain_seen = 0, 1.0
        self.reset_energy()

    @classmethod
    def from_config(cls, config: ArrayConfig) -> EmulatedCrossbar:
        """The emulated array of an ``ArrayConfig`` (``device_models.array``), as the options build one."""
        return cls(
            card=config.card,
            calibration=config.calibration,
            seed=config.seed,
            dt_s=config.dt_s,
            normalisation=config.normalisation,
            max_write_gain=config.max_write_gain,
            bias=config.bias,
            nonidealities=config.nonidealities,
        )

    # -- programming -----------------------------------------------------------------------------
    def program(self, synapses: Synapses) -> None:
        """Draw the chip, program W onto the pairs and set each device's decay bias and write gain."""
        with torch.no_grad():
            self._program(*(t.detach() for t in synapses))
        self._programmed = True
        self._F_out = None

    def realisation(self, shape: tuple[int, int]) -> Realisation:
        """The array this backend emulates for an (H, K) layer: its config compiled
        (``device_models.array.ArrayConfig.realise``)."""
        return self.config.realise(shape)

    def _program(self, weight: Tensor, lam: Tensor, gamma: Tensor) -> None:
        if not fusable(weight, lam, gamma):
            raise ShapeError("the emulated backend runs on CPU float32/float64 parameters")
        k, dtype = weight.shape[1], weight.dtype
        # the config compiled with the trained synapses: chip, fault-aware programming, line voltages,
        # retention, effective gamma, window (``device_models.array.compile_array``)
        prog = self.programmed = self.config.compile(weight, lam, gamma, self._noise)
        self.real, self.device_index = prog.real, prog.real.device_index
        self.g_per_weight, self.g_lt_siemens, self.faults = prog.g_per_weight, prog.g_lt_siemens, prog.faults
        self.line_bias: LineBias | None = prog.line_bias
        self.dac_count = prog.dac_count
        self._W = prog.weight.to(dtype)
        self.retention, self.decay_bias_v = prog.retention, prog.decay_bias_v
        retention = prog.retention
        self._r_mid = ((retention[0] + retention[1]) / 2).to(dtype)
        self._r_half = ((retention[0] - retention[1]) / 2).to(dtype)
        self._gamma = prog.gamma.to(dtype)
        self._gamma64 = prog.gamma_pulsed  # the pulsed change per write (energy)
        digital_f = prog.digital_f
        self._analog_f = ~digital_f  # (H, K) synapses whose F sits on devices (refreshes touch these)
        self._digital: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
        if bool(digital_f.any()):
            rows, cols = digital_f.nonzero(as_tuple=True)
            flat = rows * k + cols
            lam64, gamma64 = lam.to(torch.float64), gamma.to(torch.float64)
            self._digital = (rows, cols, flat, lam64[rows, cols].to(dtype), gamma64[rows, cols].to(dtype))
        window = prog.window
        self._window: tuple[Tensor, Tensor] | None = (
            None if window is None else (window[0].to(dtype), window[1].to(dtype))
        )
        self._energy_constants(dtype)
        self._step_constants = self._fused_step_constants()
        self._step_buffers: StepBuffers | None = None

    def _fused_step_constants(self) -> StepConstants | None:
        """The constants of the one-kernel ``step`` (``emulated_step``), or None where it does not apply
        (programming energy of a pulse law with width exponent != 1: ``step`` reads then updates)."""
        c, W = self.card, self._W
        if self.energy_counters and c.pulse.width_exponent != 1.0:
            return None
        unused = torch.zeros_like(W)
        lo, hi = self._window if self._window is not None else (unused, unused)
        dense = (self._bias_abs, self._r_mid, self._r_half, lo, hi, self._bias_sgn)
        sigma = self._write_noise()
        analog = self._analog_f.to(W.dtype)
        sparse = (
            self._g_lt_sum,
            self._coef_abs,
            self._gamma,
            None if sigma is None else sigma[0],
            analog,
            self._coef_sgn,
        )
        gpw = self.g_per_weight
        read_var = self._read_var_per_siemens()
        consts = (
            NORM_EPS,
            read_var,
            2 * c.window.g_min_siemens,
            gpw,
            self.max_write_gain,
            read_var,
            c.variability.c2c_pulse_rel if self.c2c else 0.0,
        )
        r_max = (self._r_mid + self._r_half.abs()).to(torch.float64).amax(dim=1)
        window_min = torch.minimum(-lo, hi).to(torch.float64).amin(dim=1)
        sigma_max = 0.0 if sigma is None else c.variability.c2c_pulse_rel
        write_max = (self._gamma.abs().to(torch.float64) * (1 + 6.5 * sigma_max)).amax(dim=1)
        sparse_block = torch.stack([unused if t is None else t for t in sparse])
        return StepConstants(
            W=W.contiguous().numpy(),
            row_bounds=torch.stack([r_max, window_min, write_max]).numpy(),
            dense=torch.stack([unused if t is None else t for t in dense]).numpy(),
            sparse=sparse_block.numpy(),
            sparse_t=sparse_block.transpose(1, 2).contiguous().numpy(),
            zeros=np.zeros(W.shape[1], dtype=sparse_block.numpy().dtype),
            consts=np.array(consts, dtype=np.float64),
            flags=(
                self.normalisation == "exact",
                self._window is not None,
                sigma is not None,
                self.read_noise,
                self.energy_counters,
                self._bias_sgn is not None,
                self._coef_sgn is not None,
            ),
        )

    def _energy_constants(self, dtype: torch.dtype) -> None:
        """The programmed array's energy coefficients (``device_models.array.EnergyCoefficients``) in
        the step's dtype: the counters and the fused step read these (``exclude_from_energy`` zeroes
        some of them)."""
        e = self.programmed.energy
        self._bias_base_w = float(e.bias_base_w.sum())  # W per sample, short-term parts aside
        self._bias_abs = e.bias_abs.to(dtype)
        self._bias_sgn = None if e.bias_sgn is None else e.bias_sgn.to(dtype)
        self._g_lt_sum = e.g_lt_sum.to(dtype)
        self._pulse_law = e.nominal_pulse_law
        self._width_per_siemens, self.erase_width_s = e.width_per_siemens, e.erase_width_s
        self._g_up, self._g_down = e.g_up.to(dtype), e.g_down.to(dtype)
        self._coef_abs = e.coef_abs.to(dtype)
        self._coef_sgn = None if e.coef_sgn is None else e.coef_sgn.to(dtype)

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> Tensor:
        """F = 0 (B, H, K): every volatile part relaxed; the digital row scale reset to 1."""
        self._check_programmed()
        F = self._W.new_zeros((batch_size, *self._W.shape))
        self._adopt(F, F.new_ones(F.shape[:2]))
        return F

    def _adopt(self, F: Tensor, scale: Tensor) -> None:
        self._F_out, self._scale = F, scale
        self._bias_cache: tuple[Tensor | None, Tensor] = (None, scale)

    def _sync(self, F: Tensor, **rows: Tensor) -> Tensor:
        """Row scale s (B, H) for F; a state this backend did not produce is written to the devices.

        ``rows`` are the other inputs, checked here because the kernels do not bounds-check:
        z (B, K) and any of n, h (B, H), all in the programmed dtype on the CPU.
        """
        self._check_programmed()
        (h, k), batch = self._W.shape, F.shape[0] if F.dim() == 3 else -1
        shapes = {
            "F": (F, (batch, h, k)),
            **{name: (t, (batch, k if name == "z" else h)) for name, t in rows.items()},
        }
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape or not fusable(self._W, t):
                raise ShapeError(
                    f"emulated crossbar: {name} must be a CPU {self._W.dtype} tensor of shape {shape} "
                    f"(B, H = {h}, K = {k}), got {t.dtype} {tuple(t.shape)}"
                )
        if F is not self._F_out:
            self._adopt(F, F.new_ones(F.shape[:2]))
        return self._scale

    def _check_programmed(self) -> None:
        if not self._programmed:
            raise RuntimeError("crossbar used before program(): call program(synapses) first")

    # -- operations ------------------------------------------------------------------------------
    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """y = (G z + read noise) / n, G = W + F on the devices; noise one normal per output."""
        with torch.no_grad():
            s = self._sync(F, z=z)
            counting = self.energy_counters
            dot, n, abs_f_z2, bias_rows, g_lt_z2, row_energy = emulated_read(
                self._W, F, z, self._bias_abs, self._g_lt_sum, NORM_EPS, energy
            )
            if counting:  # the decay-bias power of F, charged by the update that follows
                if self._bias_sgn is not None:
                    bias_rows += torch.einsum("bhk,hk->bh", F, self._bias_sgn)
                self._bias_cache = (F, bias_rows)
            if self.read_noise or counting:
                dot = self._physics_of_read(dot, s, abs_f_z2, g_lt_z2, z)
            return Readout(dot / n, n, row_energy.sum(dim=1) if energy else None)

    def _physics_of_read(
        self, dot: Tensor, s: Tensor, abs_f_z2: Tensor, g_lt_z2: Tensor, z: Tensor
    ) -> Tensor:
        """Add read noise to G z and count the read energy; sums in siemens * z^2 per output (B, H)."""
        c, gpw = self.card, self.g_per_weight
        if self.normalisation == "exact":  # F sits on a separate pair per synapse, read through s
            st_z2 = 2 * c.window.g_min_siemens * (z * z).sum(1, keepdim=True) + gpw * abs_f_z2 / s
            sum_energy, sum_noise = g_lt_z2 + st_z2, g_lt_z2 + s * s * st_z2
        else:
            sum_energy = sum_noise = g_lt_z2 + gpw * abs_f_z2
        if self.energy_counters:
            self._energy["read_j"] += c.read.read_v_per_unit**2 * c.read.read_time_s * float(sum_energy.sum())
        if not self.read_noise:
            return dot
        var_w2 = (
            read_noise_var_siemens2(sum_noise, c.variability.read_noise_rel, c.window.g_max_siemens) / gpw**2
        )
        noise = torch.randn(dot.shape, generator=self._noise, dtype=dot.dtype)
        return dot + var_w2.clamp(min=0).sqrt() * noise

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Advance dt_s: device decay (and, exact mode, the digital 1/n), then the Hebbian write.

        Exact mode: a row whose write gain would exceed ``max_write_gain`` is first refreshed by the
        array (``_refresh_of``), in the same kernel pass as its decay and write.
        """
        with torch.no_grad():
            s_prev = self._sync(F, z=z, n=n, h=h)
            self._writes += 1  # this update's noise streams (write and refresh) are keyed by the count
            refresh: Refresh | None = None
            if self.normalisation == "exact":
                s = s_prev / n
                rows = s * self.max_write_gain < 1
                if bool(rows.any()):
                    refresh = self._refresh_of(rows, s_prev)
                    s = torch.where(rows, torch.ones_like(s), s)
                inv_n = torch.reciprocal(n)
            else:
                s, inv_n = s_prev, torch.ones_like(n)
            out, abs_z_coef, refresh_sums = emulated_update(
                F,
                r_mid=self._r_mid,
                r_half=self._r_half,
                gamma=self._gamma,
                write_coef=self._coef_abs,
                window=self._window,
                inv_n=inv_n,
                bound=s,
                h=h,
                z=z,
                c2c=self._write_noise(),
                refresh=refresh,
            )
            gain = torch.reciprocal(s)
            self.max_gain_seen = max(self.max_gain_seen, float(gain.max()))
            if refresh is not None:
                self.refresh_rows += int(refresh.rows.sum())
            if self.energy_counters:
                if refresh_sums is not None:
                    self._count_refresh_energy(*(float(x) for x in refresh_sums.sum(axis=(0, 1))))
                self._count_update_energy(self._bias_rows(F) / s_prev, gain, h, z, abs_z_coef)
            self.sample_steps += F.shape[0]
            self._adopt(out, s)
            return out

    def exclude_from_energy(self, rows: slice, cols: slice) -> None:
        """Stop charging the decay bias and write pulses of synapses ``rows`` x ``cols`` (their F lives
        elsewhere: a lab block on a controller, which measures its own energy). Their long-term reads
        and exact mode's row refreshes are still charged here."""
        self._check_programmed()
        self._bias_base_w -= float(self.programmed.energy.bias_base_w[:, rows, cols].sum())
        for name in ("_bias_abs", "_bias_sgn", "_coef_abs", "_coef_sgn", "_g_up", "_g_down"):
            table = getattr(self, name)
            if table is not None:
                table = table.clone()
                table[rows, cols] = 0.0
                setattr(self, name, table)
        self._step_constants = self._fused_step_constants()  # the one-kernel step reads the same tables

    def model_update(
        self, F: Tensor, n: Tensor, h: Tensor, z: Tensor, rows: slice = slice(None), cols: slice = slice(None)
    ) -> Tensor:
        """The update this array realises, without its devices' noise: r(F) F / n + gamma h z on synapses
        ``rows`` x ``cols`` (weight units, (B, rows, cols)); r(F) the programmed retention of the device of
        F's sign, gamma the realised write gain, 1/n exact normalisation's (native: none). Unclipped, no
        refresh noise, no write noise, nothing stored, no energy: the STPN's own step for a lab block's
        fidelity (the lab's measured F carries its own devices' noise, not this array's draws)."""
        self._check_programmed()
        with torch.no_grad():
            f = F[:, rows, cols]
            r = self._r_mid[rows, cols] + self._r_half[rows, cols] * torch.sign(f)
            inv_n = (
                torch.reciprocal(n[:, rows]) if self.normalisation == "exact" else torch.ones_like(n[:, rows])
            )
            return r * f * inv_n[:, :, None] + self._gamma[rows, cols] * h[:, rows, None] * z[:, None, cols]

    def _refresh_of(self, rows: Tensor, s_prev: Tensor) -> Refresh:
        """Exact mode's row refreshes, done by the array (``emulated_kernels.Refresh``).

        rows: (B, H) bool. Each refreshed row's short-term pair holds f = F / s (weight units). The
        periphery reads every device of the row (read noise, variance proportional to each device's
        conductance), one depression pulse erases the rows to ``REFRESH_ERASE_LEFT``
        (``device_models.array``) of their state (the multiplicative depression law,
        ``PulseLaw.down_drive``: one pulse for all rows at once),
        and the read value s f is written again from rest on the device of its sign (cycle-to-cycle
        noise on the written change, as any write). Read noise and the rewrite's c2c noise are
        independent Gaussians: one draw of their summed variance per synapse (the product of the two,
        second order at c2c^2 = 0.25 %, is left out), from a counter-based stream keyed by the seed
        and the update count. Charged to ``refresh_j`` (``_count_refresh_energy``): the reads
        (V_read^2 G t_read), the erase (V^2 G w_erase, G at the state before it, every device of the
        row) and the rewrite (V^2 G w, small-signal width, as the update's writes). Digital synapses
        (fault-aware programming) are the periphery's own numbers: untouched.
        """
        c, gpw = self.card, self.g_per_weight
        if getattr(self, "_analog_for", None) is not self._analog_f:  # the programmed array's, once
            self._analog = self._analog_f.to(torch.float64).numpy()
            self._analog_for = self._analog_f
        read_var = self._read_var_per_siemens()
        sigma = c.variability.c2c_pulse_rel if self.c2c else 0.0
        consts = (read_var, sigma, 2 * c.window.g_min_siemens, gpw)
        key = write_noise_key(self.seed, self._writes) ^ REFRESH_DOMAIN
        return Refresh(rows, s_prev, key, self._analog, consts)

    def _read_var_per_siemens(self) -> float:
        """Variance of one read (weight units^2) per siemens of conductance read (the card's read-noise
        law, ``memristor.read_noise_var_siemens2``, over g_per_weight^2); 0 without read noise."""
        c = self.card
        if not self.read_noise:
            return 0.0
        return (
            read_noise_var_siemens2(1.0, c.variability.read_noise_rel, c.window.g_max_siemens)
            / self.g_per_weight**2
        )

    def _count_refresh_energy(self, g_pair: float, rewritten: float) -> None:
        """Reads, erase and rewrite of this step's refreshed rows (``_refresh_of``), J: g_pair the sum of
        their analog synapses' short-term pair conductances (S), rewritten the sum of |F| rewritten."""
        c = self.card
        read = c.read.read_v_per_unit**2 * c.read.read_time_s * g_pair
        v2 = c.read.write_v**2
        erase = v2 * self.erase_width_s * g_pair
        rewrite = v2 * c.window.g_min_siemens * self._width_per_siemens * self.g_per_weight * rewritten
        self._energy["refresh_j"] += read + erase + rewrite

    def _write_noise(self) -> tuple[Tensor, int] | None:
        """Cycle-to-cycle noise of this step's pulses for the update kernel: (sigma (H, K), key), or None.

        sigma is the card's c2c_pulse_rel on every analog synapse and 0 on the digital ones (their F is
        computed exactly). The kernel draws one normal per written device only (where z_bj != 0) from
        a counter-based stream keyed by this backend's seed and its update count
        (``emulated_kernels.write_noise_key``): nothing is drawn for the synapses without a pulse.
        """
        sigma = self.card.variability.c2c_pulse_rel
        if not (self.c2c and sigma > 0):
            return None
        W = self._W
        if (
            self._sigma_for is not self._digital
            or self._sigma.shape != W.shape
            or self._sigma.dtype != W.dtype
        ):
            self._sigma = torch.full_like(self._W, sigma)
            if self._digital is not None:
                rows, cols = self._digital[:2]
                self._sigma[rows, cols] = 0.0
            self._sigma_for = self._digital
        return self._sigma, write_noise_key(self.seed, self._writes)

    def _bias_rows(self, F: Tensor) -> Tensor:
        """sum_j bias_abs_ij |F_ij| + bias_sgn_ij F_ij per row (B, H): from the read of F, or computed."""
        cached_F, rows = self._bias_cache
        if cached_F is F:
            return rows
        rows = torch.einsum("bhk,hk->bh", F.abs(), self._bias_abs)
        return rows if self._bias_sgn is None else rows + torch.einsum("bhk,hk->bh", F, self._bias_sgn)

    def _count_update_energy(
        self, bias_rows: Tensor, gain: Tensor, h: Tensor, z: Tensor, abs_z_coef: Tensor | None
    ) -> None:
        """Decay-bias energy over dt_s and the small-signal energy of this step's write pulses, J.

        abs_z_coef: |z| @ coef_abs^T (B, H) if the update kernel gathered it, else None.
        """
        c = self.card
        batch = h.shape[0]
        self._energy["bias_j"] += self.dt_s * (batch * self._bias_base_w + float(bias_rows.sum()))
        post = h * gain  # physical write amplitude scales with the row's gain 1/s
        exponent = c.pulse.width_exponent
        if exponent == 1.0:  # sum_ij g_written |dF_ij| in one or two small products (see _energy_constants)
            if abs_z_coef is None:
                abs_z_coef = z.abs() @ self._coef_abs.T
            written = float((post.abs() * abs_z_coef).sum())
            if self._coef_sgn is not None:
                written += float((post * (z @ self._coef_sgn.T)).sum())
            width_g = self._width_per_siemens * written
        else:  # width ~ dg^(1/b): per synapse
            hz = post.unsqueeze(2) * z.unsqueeze(1)
            dg_s = self._gamma64.abs().to(h.dtype) * hz.abs() * self.g_per_weight
            widths = self._pulse_law.width_for_dg(dg_s, c.read.write_v)
            up = (hz >= 0) == (self._gamma64 >= 0)
            width_g = float((widths * torch.where(up, self._g_up, self._g_down)).sum())
        self._energy["program_j"] += c.read.write_v**2 * width_g

    # -- counters --------------------------------------------------------------------------------
    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step: ``read``, h = tanh(y + bias), ``update`` (see ``hwloop.crossbar``), in one
        kernel pass (``emulated_step``): the same physics, noise streams and energy counters as
        ``read`` then ``update``, equal to them to float rounding."""
        self._check_programmed()
        constants = self._step_constants
        if constants is None or bias.shape != (self._W.shape[0],) or not fusable(self._W, bias):
            return read_then_update(self, F, z, bias, energy=energy)
        with torch.no_grad():
            s_prev = self._sync(F, z=z)
            batch, (hidden, k) = F.shape[0], self._W.shape
            buffers = self._step_buffers
            if buffers is None or buffers.shape != (batch, hidden, k, constants.W.dtype):
                buffers = self._step_buffers = StepBuffers(batch, hidden, k, constants.W.dtype)
            noise = None
            if self.read_noise:  # the read's stream, as ``read`` draws it
                noise = torch.randn(
                    buffers.read_noise.shape, generator=self._noise, dtype=F.dtype, out=buffers.read_noise
                )
            self._writes += 1  # this update's noise streams (write and refresh) are keyed by the count
            key = write_noise_key(self.seed, self._writes)
            h, out, s, row_energy = emulated_step(
                constants, F, z, bias.detach(), s_prev, noise, key, key ^ REFRESH_DOMAIN, buffers, energy
            )
            totals = buffers.totals.tolist()
            self.max_gain_seen = max(self.max_gain_seen, totals[MAX_GAIN])
            self.refresh_rows += int(totals[REFRESHED_ROWS])
            if self.energy_counters:
                c = self.card
                self._energy["read_j"] += c.read.read_v_per_unit**2 * c.read.read_time_s * totals[READ_SUM]
                if self.normalisation == "exact":
                    self._count_refresh_energy(totals[REFRESH_G_SUM], totals[REFRESH_NEW_SUM])
                self._energy["bias_j"] += self.dt_s * (batch * self._bias_base_w + totals[BIAS_SUM])
                written = self._width_per_siemens * totals[WRITTEN_SUM]
                self._energy["program_j"] += c.read.write_v**2 * written
            self.sample_steps += batch
            self._adopt(out, s)
            total = torch.from_numpy(row_energy.sum(axis=1)) if row_energy is not None else None
            return StepResult(h, out, total)

    def energy(self) -> dict[str, float]:
        """Energy since the last ``reset_energy``, J: reads (V^2 G t), write pulses, decay bias."""
        return dict(self._energy)

    def reset_energy(self) -> None:
        """Zero the energy counters and the exact-mode write statistics."""
        self._energy = {"read_j": 0.0, "program_j": 0.0, "bias_j": 0.0}
        if self.normalisation == "exact":
            self._energy["refresh_j"] = 0.0
        self.refresh_rows = self.sample_steps = 0
        self.max_gain_seen = 1.0

    def stats(self) -> dict[str, float | str]:
        """Cost of the normalisation and of the bias: largest write gain 1/s used, rows refreshed (exact
        mode; in total and per sample step), the bias topology, its line drivers (DACs) and the RMS
        log-time residual of its line voltages (0 for "device" and "none")."""
        per_step = self.refresh_rows / self.sample_steps if self.sample_steps else 0.0
        line_bias = getattr(self, "line_bias", None)
        return {
            "max_write_gain": self.max_gain_seen,
            "refresh_rows": float(self.refresh_rows),
            "refreshes_per_step": per_step,
            "bias": self.bias,
            "dac_count": float(getattr(self, "dac_count", 0)),
            "bias_residual_ln_tau": line_bias.residual_ln_tau if line_bias is not None else 0.0,
        }

    def fault_report(self) -> dict[str, int]:
        """What fault-aware programming found and did at the last ``program`` (zeros when off)."""
        return self.faults.as_dict()

    @property
    def effective_weight(self) -> Tensor:
        """The long-term weights the devices actually hold, (H, K) in weight units."""
        self._check_programmed()
        return self._W
