"""The aihwkit backend: the STPN's synapses on IBM aihwkit analog tiles (an inference backend).

Mapping (``docs/aihwkit-backend.md`` says what is exact and what is approximate):

* W, the long-term weights, sit on one aihwkit ``InferenceTile`` (H, K) shared by the batch. With
  non-idealities on it is programmed through ``program_weights`` with a noise model built from the
  device card (differential pair in [g_min, g_max], ``levels`` programmable levels, relative
  programming error ``d2d_g_rel``), and every read goes through aihwkit's forward pass with the
  periphery of ``device_models.periphery.Periphery()`` (7-bit DAC, 9-bit ADC, output noise 0.06,
  aihwkit's defaults, and a digital gain per output: each output's max |W| maps onto the full
  conductance range; the aware training backend draws the same with ``periphery="aihwkit"``),
  bound management, and per-read device noise ``w_noise_type=PCM_READ`` with
  ``w_noise = read_noise_rel`` (variance proportional to G, as the card defines it).
* F, the short-term state, sits on one pulsed ``AnalogTile`` (ConstantStep devices) of B * H rows:
  each sample's array is its own block of H rows, so every device decays and is written on its own.
  ``decay_scales`` (hidden parameter) holds each device's per-step retention lambda_ij and
  ``decay_weights(1.0)`` applies it (towards ``reset_bias`` = 0, so F relaxes to zero). Writes are
  aihwkit pulse trains (row h_i, column z_j coincidences) of reference-size steps.
  ``writes="deterministic"`` (default): aihwkit's deterministic trains, coincidence count
  BL x_q d_q (x, d quantised to the train length BL that aihwkit's update management picks): the
  pulse-count analogue of the card's width-modulated writes, quantised to one reference step (a
  coarser quantum than width modulation's). ``writes="stochastic"``: aihwkit's stochastic trains
  (Gokmen & Vlasov), a different write scheme whose Bernoulli coincidence counts add shot noise to
  every write (ART STPN-11 hardware-aware, W tile ideal: 0.83 stochastic against 0.98 deterministic). The
  per-device step
  ``dwmin_up`` / ``dwmin_down`` carries |gamma_ij| (negative gamma: the pair's other device moves, a
  negative step); d2d step spread (log-normal), cycle-to-cycle step noise and the volatile window
  are aihwkit device parameters taken from the card.
* Row normalisation, ``normalisation="exact"``: the periphery keeps a digital per-row scale s
  (B, H); the tile holds P = F / (s f) in units of the volatile window f. Each step s <- s / n,
  the devices decay by lambda and the write is amplified by 1 / s. A row whose s leaves
  [1 / renorm_range, renorm_range] is refreshed (P <- s P, s <- 1: the row is re-programmed);
  ``row_refreshes`` counts these, the price of exactness. ``normalisation="native"``: the devices
  just decay by their own lambda (F_t = lambda F + gamma h z^T) and the norm divides only the read.
* The row norms n are computed digitally from the tiles' device states (programmed W, F).

``noise="off"`` turns every non-ideality off: exact forward on both tiles, W set without programming
noise, unbounded F devices, and the Hebbian write applied exactly (aihwkit's floating-point update
is rank-1 and cannot carry a per-device gamma, so it is written as a device state). The backend
then reproduces the ideal STPN to float32 rounding.

There is no gradient path: the tiles hold copies of the parameters (call ``program`` again after
changing them). aihwkit has no energy model, so ``energy()`` is empty.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from device_models.array import ArrayConfig
from device_models.bias_lines import DEFAULT_TOPOLOGY, check_topology
from device_models.card import DeviceCard
from device_models.periphery import Periphery
from device_models.programming import (
    VERIFY_SEED_OFFSET,
    FaultReport,
    program_and_verify,
    written_conductance,
)
from device_models.realisation import DEFAULT_DT_S, Realisation
from hwloop.crossbar import NORM_EPS, Readout, StepResult, Synapses, read_then_update
from hwloop.energy import synaptic_energy_metric
from hwloop.errors import BackendUnavailable, HwloopError

INSTALL_HINT = (
    "the aihwkit backend needs aihwkit 1.2.0, which is not installed: run `make setup` (builds it from "
    "source against the pinned torch), or: .venv/bin/pip install -c .venv/constraints.txt cmake "
    "scikit-build pybind11 ninja mypy && PATH=.venv/bin:$PATH .venv/bin/pip install --no-build-isolation "
    "--no-deps aihwkit==1.2.0"
)

try:
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.base import BaseNoiseModel
    from aihwkit.simulator.configs import ConstantStepDevice, InferenceRPUConfig, SingleRPUConfig
    from aihwkit.simulator.parameters.enums import PulseType, WeightNoiseType
    from aihwkit.simulator.tiles.analog import AnalogTile
    from aihwkit.simulator.tiles.inference import InferenceTile
except ImportError as exc:  # not installed, or built against another torch
    raise BackendUnavailable(f"{INSTALL_HINT} ({exc})") from None

UNBOUNDED = 1e30  # device window with non-idealities off (float32 holds it)
PULSE_TYPES = {  # the F tile's write trains, by the ``writes`` option
    "deterministic": PulseType.DETERMINISTIC_IMPLICIT,
    "stochastic": PulseType.STOCHASTIC_COMPRESSED,
}


class CardNoiseModel(BaseNoiseModel):
    """aihwkit noise model of the card's long-term conductance: the devices' write response
    (``device_models.programming.written_conductance``: quantised levels, relative error, the
    realisation's stuck devices), and with ``fault_aware`` the controller's program-and-verify
    (``device_models.programming.program_and_verify``), no drift.

    aihwkit hands over the tile's weights; its converter maps them onto a differential pair
    [G+, G-] in microsiemens (max |W| at g_max - g_min). After ``apply_programming_noise``:
    ``digital_w`` / ``digital_f`` (H, K), the synapses whose W z / F the periphery computes, and
    ``report`` (``FaultReport``).
    """

    def __init__(
        self,
        card: DeviceCard,
        generator: torch.Generator,
        stuck: tuple[Tensor, Tensor],
        *,
        fault_aware: bool,
        verify: torch.Generator,
    ) -> None:
        g_min_us, g_max_us = card.window.g_min_siemens * 1e6, card.window.g_max_siemens * 1e6
        super().__init__(SinglePairConductanceConverter(g_max=g_max_us, g_min=g_min_us))
        self.card = card
        self.stuck = stuck  # (stuck_on, stuck_off) masks (2, H, K) of the realisation's chip
        self.generator, self.verify, self.fault_aware = generator, verify, fault_aware
        self.digital_w: Tensor | None = None
        self.digital_f: Tensor | None = None
        self.report = FaultReport()

    @torch.no_grad()
    def apply_programming_noise(self, weights: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Program ``weights`` (the tile's units) onto the pairs; returns what the devices hold, in
        the same units (and aihwkit's per-slice drift coefficients, unused: no drift)."""
        targets_us, params = self.g_converter.convert_to_conductances(weights)
        g_target = torch.stack(targets_us).double() * 1e-6  # (2, H, K) S

        def respond(target: Tensor, which: Tensor) -> Tensor:  # what the devices do with a write
            return written_conductance(target, self.card, self.verify, self.stuck)

        g = written_conductance(g_target, self.card, self.generator, self.stuck)
        h, k = g.shape[1:]
        self.digital_w = self.digital_f = torch.zeros((h, k), dtype=torch.bool)
        self.report = FaultReport(devices=g.numel())
        if self.fault_aware:
            w_siemens = g_target[0] - g_target[1]
            g, self.digital_w, self.digital_f, self.report = program_and_verify(
                g_target, g, w_siemens, self.card, respond, self.verify
            )
        g_us = (g * 1e6).to(weights.dtype)
        noisy = self.g_converter.convert_back_to_weights([g_us[0], g_us[1]], params)
        noisy = torch.where(self.digital_w, 0.0, noisy)  # the periphery reads these: the tile holds 0
        return noisy, [torch.zeros_like(weights), torch.zeros_like(weights)]

    def apply_programming_noise_to_conductance(self, g_target: Tensor) -> Tensor:
        """Unused: ``apply_programming_noise`` programs both devices of a pair together."""
        raise NotImplementedError

    def apply_drift_noise_to_conductance(
        self, g_prog: Tensor, drift_noise_param: Tensor | None, t_inference: float
    ) -> Tensor:
        """The card's long-term part is non-volatile: no drift."""
        return g_prog


AIHWKIT_PRESETS: dict[str, Literal["on", "off"]] = {"default": "on", "ideal-devices": "off"}


class AihwkitCrossbar:
    """A batch of analog arrays on aihwkit tiles; see the module docstring for the mapping.

    Options (all keyword): ``seed`` (programming noise, d2d draws; aihwkit's own per-read and
    per-pulse random numbers come from its C++ generator, which 1.2.0 seeds from the clock),
    ``card`` (device card path; default the shipped illustrative card), ``calibration`` (record
    path), ``noise`` ("on" | "off"), ``normalisation`` ("exact" | "native"), ``renorm_range`` (>1,
    the write gain range of exact mode), ``dt_s`` (the step time, s), ``writes`` ("deterministic" |
    "stochastic" pulse trains for F, module docstring), ``fault_aware`` (program-and-verify with
    compensation, as on the emulated backend; default on), ``nonidealities`` ("default" = noise on,
    "ideal-devices" = noise off: the presets of ``device_models.array`` the tiles can do).

    The array is ``device_models.realisation.Realisation`` (from the card, or the record), as on the
    emulated backend: the same device per synapse (``device_index``), the same decay bias and
    achieved retention per device (``retention``, (2, H, K)), the same chip (d2d spreads, stuck
    devices) for the same seed. F sits on one aihwkit device per synapse, so its ``decay_scales`` is
    the pair's mean retention (``Realisation.synapse_retention``) and its write step the pair's mean
    pulse response; a stuck device blocks the writes of its polarity.

    Fault-aware programming (``fault_aware``, default on, noise on): W is programmed through
    ``device_models.programming.program_and_verify``, the procedure the emulated backend runs. A
    faulty synapse's W stays analog on the partner device where it fits, else the periphery computes
    its W z exactly (added after the ADC); its F is always computed digitally (lambda F / n +
    gamma h z with the trained lambda, gamma, no device effects). ``fault_report()`` gives the counts.
    """

    name = "aihwkit"

    def __init__(
        self,
        *,
        seed: int = 0,
        card: str | Path | None = None,
        calibration: str | Path | None = None,
        noise: Literal["on", "off"] = "on",
        normalisation: Literal["exact", "native"] = "exact",
        renorm_range: float = 8.0,
        dt_s: float = DEFAULT_DT_S,
        writes: Literal["deterministic", "stochastic"] = "deterministic",
        fault_aware: bool = True,
        bias: str = DEFAULT_TOPOLOGY,
        nonidealities: str | None = None,
    ) -> None:
        self.bias = check_topology(bias)
        if nonidealities is not None:  # the tiles' noise is all or nothing: two presets spell it
            if nonidealities not in AIHWKIT_PRESETS:
                raise HwloopError(
                    f"aihwkit backend: nonidealities={nonidealities!r}; it takes "
                    f"{' or '.join(AIHWKIT_PRESETS)} (the same as noise=on / noise=off)"
                )
            noise = AIHWKIT_PRESETS[nonidealities]
        if writes not in PULSE_TYPES:
            raise HwloopError(
                f"aihwkit backend: writes must be 'deterministic' or 'stochastic', got {writes!r}"
            )
        self.writes = writes
        self.fault_aware = bool(fault_aware)
        self.faults = FaultReport()
        if noise not in ("on", "off"):
            raise HwloopError(f"aihwkit backend: noise must be 'on' or 'off', got {noise!r}")
        if not renorm_range > 1:
            raise HwloopError(f"aihwkit backend: renorm_range must be > 1, got {renorm_range}")
        self.noisy = noise == "on"
        # noise off: a perfect array (no d2d spread, no stuck devices, a bias per device). Seed, dt_s
        # and normalisation are checked once, by ArrayConfig: one error line each
        self.config = ArrayConfig.build(
            card,
            calibration,
            seed=seed,
            dt_s=dt_s,
            normalisation=normalisation,
            nonidealities="default" if self.noisy else "ideal-devices",
            bias=self.bias if self.noisy else "device",
        )
        self.card, self.record = self.config.card, self.config.calibration
        self.seed, self.dt_s = self.config.seed, self.config.dt_s
        self.exact = self.config.normalisation == "exact"
        self.renorm_range = float(renorm_range)
        self.row_refreshes = 0
        self._gen = torch.Generator().manual_seed(self.seed)
        self._w_tile: InferenceTile | None = None
        self._w_prog: Tensor | None = None  # W as programmed on the tile (weight units)
        self._lam: Tensor | None = None  # (H, K) per-device retention the array implements
        self._gamma: Tensor | None = None  # (H, K) Hebbian efficacy (weight units per unit h z)
        self._step_up: Tensor | None = None  # (H, K) relative write step of each polarity (record)
        self._step_down: Tensor | None = None
        self._f_unit = 1.0  # weight units per unit of F-tile state (the volatile window)
        self._f_tile: AnalogTile | None = None
        self._plastic = True  # False when every gamma is 0 (no write pulses at all)
        self._scale: Tensor | None = None  # (B, H) periphery row scale s
        self._last_F: Tensor | None = None
        self._w_digital: Tensor | None = None  # (H, K) W of the synapses the periphery reads, else 0
        # synapses whose F the periphery computes (a faulty device): None when there are none, else
        # (mask (H, K), trained lambda (H, K)); their F (B, H, K, 0 elsewhere, weight units)
        self._digital: tuple[Tensor, Tensor] | None = None
        self._F_dig: Tensor | None = None

    # -- programming ------------------------------------------------------------------------------
    def realisation(self, shape: tuple[int, int]) -> Realisation:
        """The array this backend realises for an (H, K) layer (``device_models.realisation``); with
        noise off: no d2d spread, no stuck devices, and a bias per device (a perfect array): its config
        compiled (``device_models.array.ArrayConfig.realise``)."""
        return self.config.realise(shape)

    def program(self, synapses: Synapses) -> None:
        """Program W onto the inference tile and keep lambda, gamma for the F tiles (copies, no grad)."""
        w = synapses.weight.detach().float().cpu()
        h, k = w.shape
        real = self.realisation((h, k))
        self.device_index = real.device_index
        self._stuck = (torch.from_numpy(real.stuck_on), torch.from_numpy(real.stuck_off))
        self._w_tile, digital_w, digital_f = self._make_w_tile(w)
        self._w_digital = torch.where(digital_w, w, 0.0) if bool(digital_w.any()) else None
        self._w_prog = self._w_tile.get_weights()[0].detach().clone()
        if self._w_digital is not None:
            self._w_prog += self._w_digital
        self._digital = None
        if bool(digital_f.any()):
            self._digital = (digital_f, synapses.lam.detach().float().cpu())
        target = synapses.lam.detach().double().cpu().numpy()
        # noise off: a perfect array realises any lambda, non-physical ones included (aihwkit applies
        # any factor, w <- w * decay_scale; ``describe`` counts them)
        _, achieved = real.bias_for_lambda(target, clip=self.noisy)
        self.retention = torch.from_numpy(achieved)
        lam = torch.from_numpy(real.synapse_retention(achieved)).float()
        gain = torch.from_numpy((real.write_gain[0] + real.write_gain[1]) / 2).float()
        ok = torch.from_numpy(real.usable)
        positive = synapses.gamma.detach().cpu() >= 0  # F > 0 sits on G+: an "up" step when gamma >= 0
        analog = ~digital_f  # the periphery writes a digital F, no pulses
        self._step_up = gain * (torch.where(positive, ok[0], ok[1]) & analog)
        self._step_down = gain * (torch.where(positive, ok[1], ok[0]) & analog)
        self._lam = lam
        self._gamma = synapses.gamma.detach().float().cpu().clone()
        window = self.card.window
        max_w = float(w.abs().max().clamp(min=1e-12))
        self._f_unit = max_w * window.g_st_max_siemens / (window.g_max_siemens - window.g_min_siemens)
        self._f_tile = None
        self._last_F = self._F_dig = None

    def _make_w_tile(self, w: Tensor) -> tuple[InferenceTile, Tensor, Tensor]:
        """The programmed inference tile, and the (H, K) masks of the synapses whose W z and F the
        periphery computes (fault-aware programming found a device of theirs faulty)."""
        periphery = Periphery()
        cfg = InferenceRPUConfig()
        cfg.mapping.weight_scaling_omega = 1.0  # max |W| maps to the full conductance range
        cfg.mapping.weight_scaling_columnwise = periphery.per_output_scale  # ... of each output
        cfg.drift_compensation = None
        if self.noisy:
            cfg.forward.inp_res, cfg.forward.out_res = periphery.inp_res, periphery.out_res
            cfg.forward.inp_bound, cfg.forward.out_bound = periphery.inp_bound, periphery.out_bound
            cfg.forward.out_noise = periphery.out_noise
            cfg.forward.w_noise_type = WeightNoiseType.PCM_READ
            cfg.forward.w_noise = self.card.variability.read_noise_rel
            verify = torch.Generator().manual_seed(self.seed + VERIFY_SEED_OFFSET)
            cfg.noise_model = CardNoiseModel(
                self.card, self._gen, self._stuck, fault_aware=self.fault_aware, verify=verify
            )
        else:
            cfg.forward.is_perfect = True
        tile = InferenceTile(w.shape[0], w.shape[1], cfg)
        tile.eval()
        tile.set_weights(w)
        none = torch.zeros(w.shape, dtype=torch.bool)
        self.faults = FaultReport(devices=2 * w.numel())
        if not self.noisy:
            return tile, none, none
        tile.program_weights()
        noise_model = tile.rpu_config.noise_model  # the tile holds its own copy of the config
        assert isinstance(noise_model, CardNoiseModel)
        assert noise_model.digital_w is not None and noise_model.digital_f is not None
        self.faults = noise_model.report
        return tile, noise_model.digital_w, noise_model.digital_f

    def _make_f_tile(self, batch_size: int) -> AnalogTile:
        """B * H rows of pulsed devices: per-device decay, pulsed writes with per-device steps."""
        assert self._lam is not None and self._gamma is not None
        assert self._step_up is not None and self._step_down is not None
        h, k = self._lam.shape
        var = self.card.variability
        step = self.card.pulse.dg_up_ref_siemens / self.card.window.g_st_max_siemens
        device = ConstantStepDevice(
            dw_min=step,
            dw_min_dtod=0.0,  # the chip's pulse spread is in the realisation's per-device gains
            dw_min_dtod_log_normal=True,
            dw_min_std=var.c2c_pulse_rel if self.noisy else 0.0,
            up_down=0.0,
            up_down_dtod=0.0,
            w_max=1.0 if self.noisy else UNBOUNDED,
            w_min=-1.0 if self.noisy else -UNBOUNDED,
            w_max_dtod=var.d2d_window_rel if self.noisy else 0.0,
            w_min_dtod=var.d2d_window_rel if self.noisy else 0.0,
            reset=0.0,
            reset_dtod=0.0,
            reset_std=0.0,
            corrupt_devices_prob=0.0,  # stuck devices: zero steps of their polarity (``program``)
            construction_seed=self.seed + 1,  # aihwkit: 0 would mean "random"
        )
        cfg = SingleRPUConfig(device=device)
        cfg.forward.is_perfect = True  # F's current is read with W's (see _read_f)
        cfg.backward.is_perfect = True
        cfg.update.pulse_type = PULSE_TYPES[self.writes] if self.noisy else PulseType.NONE_WITH_DEVICE
        tile = AnalogTile(batch_size * h, k, cfg)
        hidden = tile.get_hidden_parameters()
        lam = self._lam.repeat(batch_size, 1)  # every sample's array is the same chip
        gamma_max = float(self._gamma.abs().max())
        gain = (self._gamma / max(gamma_max, 1e-30)).repeat(batch_size, 1)
        up = hidden["dwmin_up"] * gain * self._step_up.repeat(batch_size, 1)
        down = hidden["dwmin_down"] * gain * self._step_down.repeat(batch_size, 1)
        # aihwkit's update management takes the array's mean |step| as dw_min (it re-estimates it
        # when hidden steps are set), so keep that mean at the drawn one and fold the factor into lr.
        drawn = float((hidden["dwmin_up"].abs() + hidden["dwmin_down"].abs()).mean()) / 2
        mean = float((up.abs() + down.abs()).mean()) / 2
        self._plastic = mean > 0
        c = drawn / mean if self._plastic else 1.0
        hidden["dwmin_up"], hidden["dwmin_down"] = up * c, down * c
        hidden["decay_scales"] = lam
        hidden["reset_bias"] = torch.zeros_like(lam)
        tile.set_hidden_parameters(OrderedDict(hidden))
        tile.set_weights(torch.zeros_like(lam))  # aihwkit initialises tiles at random
        # Expected write of one coincidence: lr * (dwmin_ij / dw_min) = gamma_ij / f (tile units).
        tile.set_learning_rate(gamma_max / (self._f_unit * c))
        return tile

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> Tensor:
        """F = 0 on the B arrays, (B, H, K): the chip's tile of the last ``program`` for this batch size,
        set back to zero (building it is aihwkit's costliest call; its device parameters are the same
        chip's every time, and its cycle-to-cycle noise stream goes on rather than restarting)."""
        w = self._programmed_w()
        tile = self._f_tile
        if tile is not None and tile.out_size == batch_size * w.shape[0]:
            tile.set_weights(torch.zeros(tile.out_size, tile.in_size))
        else:
            self._f_tile = self._make_f_tile(batch_size)
        self._scale = torch.ones(batch_size, w.shape[0])
        self._last_F = w.new_zeros((batch_size, *w.shape))
        self._F_dig = None if self._digital is None else torch.zeros_like(self._last_F)
        return self._last_F

    @property
    def programmed_weight(self) -> Tensor:
        """W as the inference tile holds it after programming (H, K), weight units."""
        return self._programmed_w()

    def _programmed_w(self) -> Tensor:
        if self._w_prog is None:
            raise RuntimeError("crossbar used before program(): call program(synapses) first")
        return self._w_prog

    def _sync(self, F: Tensor) -> Tensor:
        """The F the tiles hold, (B, H, K) float32: ``F`` itself when it is the state last returned,
        else the tiles are first set to ``F`` (a state from elsewhere, e.g. a saved one)."""
        last = self._last_F
        # The same, unmodified storage (also when seen through .detach()): the tiles hold it.
        same = last is not None and F.shape == last.shape and F.data_ptr() == last.data_ptr()
        if same and last is not None and F._version == last._version:
            return F.detach().float().cpu()
        b = F.shape[0]
        if self._f_tile is None or self._scale is None or self._scale.shape[0] != b:
            self._f_tile = self._make_f_tile(b)
        self._scale = torch.ones(b, F.shape[1])
        f, self._F_dig = F.detach().float().cpu(), None
        if self._digital is not None:  # the periphery holds these, the devices 0
            self._F_dig = torch.where(self._digital[0], f, 0.0)
            f = torch.where(self._digital[0], 0.0, f)
        self._f_tile.set_weights(f.reshape(-1, F.shape[2]) / self._f_unit)
        self._last_F = F
        return self._tile_F()

    def _tile_F(self) -> Tensor:
        """F in weight units, (B, H, K), read back from the device states and the periphery scale."""
        assert self._f_tile is not None and self._scale is not None
        b, h = self._scale.shape
        p = self._f_tile.get_weights()[0].reshape(b, h, -1)
        return self._with_digital(p * (self._scale * self._f_unit).unsqueeze(2))

    def _with_digital(self, F_devices: Tensor) -> Tensor:
        """F (B, H, K) of the devices plus the periphery's F of the synapses it computes."""
        return F_devices if self._F_dig is None else F_devices + self._F_dig

    # -- operations -------------------------------------------------------------------------------
    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """y = (G z) / n: W z through the analog inference tile, plus F z of each sample's own block."""
        f = self._sync(F)
        assert self._w_tile is not None
        zf = z.detach().float().cpu()
        g = self._programmed_w() + f
        n = torch.linalg.vector_norm(g, dim=2) + NORM_EPS
        with torch.no_grad():
            wz = self._w_tile(zf)
        if self._w_digital is not None:  # the periphery's own W z for synapses with faulty devices
            wz = wz + zf @ self._w_digital.T
        # F's conductance is read in the same column current as W's; its contribution is added
        # exactly, after W's ADC (the F tile's forward would also compute B^2 cross-sample blocks).
        gz = wz + torch.bmm(f, zf.unsqueeze(2)).squeeze(2)
        e = synaptic_energy_metric(g, n, zf) if energy else None
        return Readout((gz / n).to(z.dtype), n.to(z.dtype), None if e is None else e.to(z.dtype))

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Decay every device by its own lambda, then the Hebbian write; returns F_t (B, H, K)."""
        self._sync(F)
        assert self._f_tile is not None and self._scale is not None and self._gamma is not None
        hf, zf = h.detach().float().cpu(), z.detach().float().cpu()
        nf = n.detach().float().cpu()
        if self._digital is not None:  # synapses with a faulty device: the trained law, in the periphery
            assert self._F_dig is not None
            mask, lam = self._digital
            decay = self._F_dig / nf.unsqueeze(2) if self.exact else self._F_dig
            hz = hf.unsqueeze(2) * zf.unsqueeze(1)
            self._F_dig = torch.where(mask, lam * decay + self._gamma * hz, 0.0)
        if self.exact:
            self._scale = self._scale / nf
        self._f_tile.decay_weights(1.0)
        b, rows = hf.shape
        drive = hf / self._scale  # periphery write gain 1 / s per row
        if self.noisy and self._plastic:
            d = torch.zeros(b, b, rows)
            d[torch.arange(b), torch.arange(b)] = -drive  # sample b pulses only its own rows
            self._f_tile.update(zf, d.reshape(b, b * rows))
        p = self._f_tile.get_weights()[0].reshape(b, rows, -1)
        rewrite = not self.noisy
        if rewrite:
            p = p + self._gamma * drive.unsqueeze(2) * zf.unsqueeze(1) / self._f_unit
        if self.exact:
            rewrite = self._refresh_rows(p) or rewrite
        if rewrite:
            self._f_tile.set_weights(p.reshape(b * rows, -1))
            p = self._f_tile.get_weights()[0].reshape(b, rows, -1)  # as the devices hold it
        self._last_F = self._with_digital(p * (self._scale * self._f_unit).unsqueeze(2)).to(F.dtype)
        return self._last_F

    def _refresh_rows(self, p: Tensor) -> bool:
        """Fold the periphery scale into the device states ``p`` (B, H, K, in place) of the rows
        whose write gain left its range; True when any row needs re-programming."""
        assert self._scale is not None
        bad = self._scale.log().abs() > math.log(self.renorm_range)
        count = int(bad.sum())
        if count:
            p.mul_(torch.where(bad, self._scale, torch.ones_like(self._scale)).unsqueeze(2))
            self._scale = torch.where(bad, torch.ones_like(self._scale), self._scale)
            self.row_refreshes += count
        return count > 0

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step: ``read``, h = tanh(y + bias), ``update`` (see ``hwloop.crossbar``)."""
        return read_then_update(self, F, z, bias, energy=energy)

    def energy(self) -> dict[str, float]:
        """aihwkit models no energy: no physical counters (the read's energy metric is still given)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The configuration in force, for logs and reports (after ``program``: the tiles' noise
        settings in aihwkit's units, and ``f_unit``, the volatile window in weight units)."""
        forward = None if self._w_tile is None else self._w_tile.rpu_config.forward
        lam = self._lam
        return {
            "noise": "on" if self.noisy else "off",
            "normalisation": "exact" if self.exact else "native",
            "writes": self.writes,
            "renorm_range": self.renorm_range,
            "card": self.card.meta.name,
            "calibration": self.record is not None,
            "row_refreshes": self.row_refreshes,
            "non_physical_lambda": 0 if lam is None else int(((lam <= 0) | (lam > 1)).sum()),
            "read_noise_rel": forward.w_noise if forward is not None and self.noisy else 0.0,
            "out_noise": forward.out_noise if forward is not None and self.noisy else 0.0,
            "f_unit": self._f_unit,
            "fault_aware": self.fault_aware,
        }

    def fault_report(self) -> dict[str, int]:
        """What fault-aware programming found and did (``device_models.programming.FaultReport``)."""
        return self.faults.as_dict()
