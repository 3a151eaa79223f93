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

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from device_models.bias_lines import DEFAULT_TOPOLOGY, LineBias, check_topology
from device_models.card import DeviceCard, load_card
from device_models.mapping import weight_scale_siemens, weights_to_pair
from device_models.memristor import card_pulse_kwargs, depression_width_s
from device_models.programming import (
    VERIFY_SEED_OFFSET,
    FaultReport,
    program_and_verify,
    written_conductance,
)
from device_models.realisation import Realisation
from hwloop.backends.emulated_kernels import emulated_read, emulated_update, write_noise_key
from hwloop.backends.fused import fusable
from hwloop.crossbar import NORM_EPS, Readout, StepResult, Synapses, read_then_update
from hwloop.errors import HwloopError, ShapeError

if TYPE_CHECKING:
    from device_models.record import CalibrationRecord

Normalisation = Literal["exact", "native"]
REFRESH_ERASE_LEFT = 1e-3  # fraction of its short-term conductance a refresh's erase pulse leaves


class EmulatedCrossbar:
    """STPN synapses on emulated volatile memristors; every non-ideality has its own switch.

    card: device card path or instance (default: the shipped illustrative SrTiO3 card).
    calibration: a calibration record JSON (``device_models.record.CalibrationRecord``); its per-device
        decay and pulse response replace the card's nominal values and drawn spreads.
    seed: draws the chip (device spreads, stuck devices) and seeds the noise generator.
    dt_s: seconds of device time one STPN step represents.
    normalisation: "exact" or "native" (module docstring).
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
        calibration: str | Path | None = None,
        seed: int = 0,
        dt_s: float = 0.1,
        normalisation: Normalisation = "exact",
        read_noise: bool = True,
        d2d: bool = True,
        c2c: bool = True,
        stuck: bool = True,
        quantise: bool = True,
        saturation: bool = True,
        bias_limits: bool = True,
        energy_counters: bool = True,
        max_write_gain: float = 16.0,
        fault_aware: bool = True,
        bias: str = DEFAULT_TOPOLOGY,
    ) -> None:
        if normalisation not in ("exact", "native"):
            raise HwloopError(f"normalisation must be 'exact' or 'native', got {normalisation!r}")
        if not (dt_s > 0 and math.isfinite(dt_s)):
            raise HwloopError(f"dt_s must be a positive number of seconds, got {dt_s}")
        if not max_write_gain >= 1:
            raise HwloopError(f"max_write_gain must be >= 1, got {max_write_gain}")
        self.bias = check_topology(bias)
        if not bias_limits and self.bias != "device":
            raise HwloopError(
                f"bias_limits=False needs bias='device' (unclipped per-device biases), not {bias!r}"
            )
        self.card = load_card(card)
        if self.card.read.write_v < self.card.pulse.v_threshold_v:
            raise HwloopError("device card: read.write_v is below pulse.v_threshold_v, so no write would act")
        self.record = _load_record(calibration) if calibration is not None else None
        self.seed, self.dt_s, self.normalisation = int(seed), float(dt_s), normalisation
        self.read_noise, self.d2d, self.c2c, self.stuck = read_noise, d2d, c2c, stuck
        self.quantise, self.saturation, self.bias_limits = quantise, saturation, bias_limits
        self.energy_counters, self.max_write_gain = energy_counters, float(max_write_gain)
        self.fault_aware = bool(fault_aware)
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

    # -- programming -----------------------------------------------------------------------------
    def program(self, synapses: Synapses) -> None:
        """Draw the chip, program W onto the pairs and set each device's decay bias and write gain."""
        with torch.no_grad():
            self._program(*(t.detach() for t in synapses))
        self._programmed = True
        self._F_out = None

    def realisation(self, shape: tuple[int, int]) -> Realisation:
        """The array this backend emulates for an (H, K) layer (``device_models.realisation``)."""
        if self.record is not None:
            return Realisation.from_record(
                self.record, self.dt_s, self.seed, shape, card=self.card, stuck=self.stuck, bias=self.bias
            )
        return Realisation.from_card(
            self.card, self.dt_s, self.seed, shape, d2d=self.d2d, stuck=self.stuck, bias=self.bias
        )

    def _program(self, weight: Tensor, lam: Tensor, gamma: Tensor) -> None:
        if not fusable(weight, lam, gamma):
            raise ShapeError("the emulated backend runs on CPU float32/float64 parameters")
        c, (h, k), dtype = self.card, weight.shape, weight.dtype
        win = c.window
        shape2 = (2, h, k)  # [G+, G-] devices of every synapse
        real = self.realisation((h, k))
        self.real = real
        self.device_index = real.device_index
        stuck_on, stuck_off = torch.from_numpy(real.stuck_on), torch.from_numpy(real.stuck_off)

        # long-term conductances: map, quantise, programming error, stuck devices
        w = weight.to(torch.float64)
        w_max = float(w.abs().max()) or 1.0
        self.g_per_weight = weight_scale_siemens(w_max, win.g_min_siemens, win.g_max_siemens)
        g_target = torch.stack(weights_to_pair(w, win.g_min_siemens, self.g_per_weight))
        stuck = (stuck_on, stuck_off)
        g_lt = self._write_g(g_target, self._noise, stuck)

        # retention: target lambda -> decay bias (known device, clipped) -> the true device's lambda
        b = c.bias
        bias, retention_np = real.bias_for_lambda(lam.to(torch.float64).numpy(), clip=self.bias_limits)
        self.line_bias: LineBias | None = real.line_bias
        self.dac_count = real.dac_count
        retention = torch.from_numpy(retention_np)
        bias_clipped = torch.from_numpy(np.clip(bias, b.bias_min_v, b.bias_max_v))
        volatile = torch.from_numpy(real.usable)
        window_s = torch.from_numpy(real.g_st_max_siemens)
        gain = torch.from_numpy(real.pulse_gain)
        pulse_gain = (gain[0] + gain[1]) / 2  # a write hits G+ or G- by its sign: the pair's mean response
        gamma64 = gamma.to(torch.float64)
        gamma_eff = gamma64 * pulse_gain

        # fault-aware programming: verify, find stuck devices, compensate by the partner or digitally
        digital_w = digital_f = torch.zeros((h, k), dtype=torch.bool)
        self.faults = FaultReport(devices=2 * h * k)
        if self.fault_aware:
            verify = torch.Generator().manual_seed(self.seed + VERIFY_SEED_OFFSET)

            def respond(target: Tensor, which: Tensor) -> Tensor:  # what the devices do with a write
                return self._write_g(target, verify, stuck)

            g_lt, digital_w, digital_f, self.faults = program_and_verify(
                g_target, g_lt, w * self.g_per_weight, c, respond, verify
            )
        self.g_lt_siemens = g_lt
        W = torch.where(digital_w, w, (g_lt[0] - g_lt[1]) / self.g_per_weight)  # periphery: W z itself
        self._W = W.to(dtype)

        lam64 = lam.to(torch.float64)
        retention = torch.where(digital_f, lam64, retention)  # digital F: the exact trained law
        volatile = volatile | digital_f
        gamma_eff = torch.where(digital_f, gamma64, gamma_eff)
        self.retention = retention
        # per device, no source is spent on a digital synapse; lines bias every device on them
        self.decay_bias_v = (
            torch.where(digital_f, 0.0, bias_clipped) if self.bias == "device" else bias_clipped
        )
        self._r_mid = ((retention[0] + retention[1]) / 2).to(dtype)
        self._r_half = ((retention[0] - retention[1]) / 2).to(dtype)
        self._gamma = gamma_eff.to(dtype)
        self._gamma64 = torch.where(digital_f, 0.0, gamma64)  # the pulsed change per write (energy)
        self._analog_f = ~digital_f  # (H, K) synapses whose F sits on devices (refreshes touch these)
        self._digital: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
        if bool(digital_f.any()):
            rows, cols = digital_f.nonzero(as_tuple=True)
            flat = rows * k + cols
            self._digital = (rows, cols, flat, lam64[rows, cols].to(dtype), gamma64[rows, cols].to(dtype))

        # finite short-term window (and stuck devices that cannot hold any) in weight units
        self._window: tuple[Tensor, Tensor] | None = None
        if self.saturation or not bool(volatile.all()):  # stuck or broken devices hold no short-term part
            cap = window_s if self.saturation else torch.full(shape2, math.inf, dtype=torch.float64)
            cap = torch.where(volatile, cap, 0.0) / self.g_per_weight
            cap = torch.where(digital_f, math.inf, cap)
            self._window = ((-cap[1]).to(dtype), cap[0].to(dtype))
        self._energy_constants(dtype, read=~digital_w)

    def _write_g(self, g_target: Tensor, generator: torch.Generator, stuck: tuple[Tensor, Tensor]) -> Tensor:
        """What a write of long-term conductances ``g_target`` (S) leaves on the devices, with this
        backend's switches (``device_models.programming.written_conductance``)."""
        return written_conductance(
            g_target, self.card, generator, stuck, quantise=self.quantise, error=self.d2d
        )

    def _energy_constants(self, dtype: torch.dtype, read: Tensor) -> None:
        """Per-synapse sums of the energy counters; ``read`` (H, K): synapses whose W devices are read
        (a digital F has no bias and gamma64 0, so it is neither biased nor pulsed already)."""
        c, gpw = self.card, self.g_per_weight
        g_min = c.window.g_min_siemens
        exact = self.normalisation == "exact"
        g_biased_base = torch.full_like(self.g_lt_siemens, g_min) if exact else self.g_lt_siemens
        v2 = self.decay_bias_v**2
        self._bias_base_w = float((v2 * g_biased_base).sum())  # W per sample, short-term parts aside
        self._bias_abs = ((v2[0] + v2[1]) / 2 * gpw).to(dtype)  # V^2 S per weight unit of |F|
        # G+ and G- at different biases (calibrated devices): the sign of F matters too
        sgn = (v2[0] - v2[1]) / 2 * gpw
        self._bias_sgn = sgn.to(dtype) if bool(sgn.abs().max() > 0) else None
        self._g_lt_sum = (self.g_lt_siemens.sum(0) * read).to(dtype)  # (H, K) S, both devices of the pair
        # small-signal programming energy: width = w_ref * dg / (dg_up_ref * (V/v_ref)^a) per write
        p = c.pulse
        amp_term = (c.read.write_v / p.v_ref_v) ** p.amp_exponent
        self._width_per_siemens = p.width_ref_s / (p.dg_up_ref_siemens * amp_term)
        kw = card_pulse_kwargs(c)
        del kw["dg_up_ref_siemens"]
        self.erase_width_s = depression_width_s(REFRESH_ERASE_LEFT, -c.read.write_v, **kw)
        # the device a write of positive F hits is G+ (of the F pair in exact mode), negative G-
        g_up, g_down = (torch.full_like(self.g_lt_siemens, g_min) if exact else self.g_lt_siemens).unbind(0)
        self._g_up, self._g_down = g_up.to(dtype), g_down.to(dtype)
        # |dF| g_written = |dF| (g_up + g_down) / 2 + dF (g_up - g_down) / 2 with dF = gamma h z, so
        # sum_ij |dF_ij| g_written,ij = |h| . (|z| @ coef_abs^T) + h . (z @ coef_sgn^T)
        self._coef_abs = (self._gamma64.abs() * (g_up + g_down) / 2 * gpw).to(dtype)
        half = (g_up - g_down) / 2
        self._coef_sgn = (self._gamma64 * half * gpw).to(dtype) if bool(half.abs().max() > 0) else None

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
        var_w2 = c.variability.read_noise_rel**2 * c.window.g_max_siemens * sum_noise / gpw**2
        noise = torch.randn(dot.shape, generator=self._noise, dtype=dot.dtype)
        return dot + var_w2.clamp(min=0).sqrt() * noise

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Advance dt_s: device decay (and, exact mode, the digital 1/n), then the Hebbian write."""
        with torch.no_grad():
            s_prev = self._sync(F, z=z, n=n, h=h)
            if self.normalisation == "exact":
                s = s_prev / n
                refresh = s * self.max_write_gain < 1
                F_read = F  # the state the step's bias energy is charged on (the read cached its rows)
                if bool(refresh.any()):
                    F = self._refresh(F, refresh, s_prev)
                s = torch.where(refresh, torch.ones_like(s), s)
                inv_n = torch.reciprocal(n)
            else:
                s, inv_n = s_prev, torch.ones_like(n)
            c2c = self._write_noise()
            out, abs_z_coef = emulated_update(
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
                c2c=c2c,
            )
            gain = torch.reciprocal(s)
            self.max_gain_seen = max(self.max_gain_seen, float(gain.max()))
            if self.energy_counters:
                bias_rows = self._bias_rows(F_read if self.normalisation == "exact" else F)
                self._count_update_energy(bias_rows / s_prev, gain, h, z, abs_z_coef)
            self.sample_steps += F.shape[0]
            self._adopt(out, s)
            return out

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

    def _refresh(self, F: Tensor, rows: Tensor, s_prev: Tensor) -> Tensor:
        """Exact mode's row refreshes, done by the array: F with every refreshed row rewritten at scale 1.

        rows: (B, H) bool. Each refreshed row's short-term pair holds f = F / s (weight units). The
        periphery reads every device of the row (read noise, variance proportional to each device's
        conductance), one depression pulse erases the rows to ``REFRESH_ERASE_LEFT`` of their state
        (the multiplicative depression law, ``depression_width_s``: one pulse for all rows at once),
        and the read value s f is written again from rest on the device of its sign (cycle-to-cycle
        noise on the written change, as any write). Charged to ``refresh_j``: the reads
        (V_read^2 G t_read), the erase (V^2 G w_erase, G at the state before it, every device of the
        row) and the rewrite (V^2 G w, small-signal width, as the update's writes). Digital synapses
        (fault-aware programming) are the periphery's own numbers: untouched.
        """
        c, gpw = self.card, self.g_per_weight
        b_idx, h_idx = rows.nonzero(as_tuple=True)
        F_rows = F[b_idx, h_idx]  # (R, K) weight units
        s = s_prev[b_idx, h_idx].unsqueeze(1)
        analog = self._analog_f[h_idx]
        g_min = c.window.g_min_siemens
        g_pair = 2 * g_min + F_rows.abs() / s * gpw  # (R, K) S, both devices of the short-term pair
        # read noise (variance prop. to each device's conductance, through the scale s) and the rewrite's
        # c2c noise (relative to the value written) are independent Gaussians: one draw of their summed
        # variance (the product of the two, second order at c2c^2 = 0.25 %, is left out)
        var = torch.zeros_like(F_rows)
        if self.read_noise:
            var = var + s * s * (c.variability.read_noise_rel**2 * c.window.g_max_siemens / gpw**2) * g_pair
        sigma = c.variability.c2c_pulse_rel
        if self.c2c and sigma > 0:
            var = var + (sigma * F_rows) ** 2
        new = F_rows
        if self.read_noise or (self.c2c and sigma > 0):
            new = F_rows + var.sqrt() * torch.randn(F_rows.shape, generator=self._noise, dtype=F_rows.dtype)
        out = F.clone()
        out[b_idx, h_idx] = torch.where(analog, new, F_rows)
        self.refresh_rows += int(b_idx.numel())
        if self.energy_counters:
            on = analog.to(F.dtype)
            read = c.read.read_v_per_unit**2 * c.read.read_time_s * float((g_pair * on).sum())
            v2 = c.read.write_v**2
            erase = v2 * self.erase_width_s * float((g_pair * on).sum())
            rewrite = v2 * g_min * self._width_per_siemens * gpw * float((new.abs() * on).sum())
            self._energy["refresh_j"] += read + erase + rewrite
        return out

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
        self._writes += 1
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
            widths = c.pulse.width_ref_s * (dg_s * self._width_per_siemens / c.pulse.width_ref_s) ** (
                1 / exponent
            )
            up = (hz >= 0) == (self._gamma64 >= 0)
            width_g = float((widths * torch.where(up, self._g_up, self._g_down)).sum())
        self._energy["program_j"] += c.read.write_v**2 * width_g

    # -- counters --------------------------------------------------------------------------------
    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step: ``read``, h = tanh(y + bias), ``update`` (see ``hwloop.crossbar``)."""
        return read_then_update(self, F, z, bias, energy=energy)

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


def _load_record(path: str | Path) -> CalibrationRecord:
    from device_models.record import CalibrationRecord

    return CalibrationRecord.load(path)
