"""The hardware-aware training backend: the emulated array's forward pass, differentiable.

``AwareCrossbar`` (registered as ``"aware"``) runs an STPN layer the way ``EmulatedCrossbar`` (exact
normalisation) runs it, in plain torch autograd so a model can be trained through it:

* programming: every ``program`` (the STPN calls it once per training sequence batch, as the
  parameters change) draws a fresh chip (``seed``, ``seed + 1``, ...) and programs it with the
  emulated backend itself, so device-to-device spreads, stuck devices, quantisation, programming
  error, the bias window and a calibration record's per-device laws are exactly the emulated ones.
  The devices' values enter the forward pass through straight-through estimators: the long-term
  weight is W + (W_device - W).detach(), each device's retention r(lambda) + (r_device - r(lambda)).detach()
  with r the realisation's differentiable twin of the bias topology (``Realisation.differentiable_retention``:
  by default the line voltages fitted to every lambda, so the gradient sees which lambdas lines can
  hold together; zero, without gradient, on a stuck device), gamma + (gamma * write_gain - gamma).detach().
* each step, as ``EmulatedCrossbar.read`` / ``update`` (exact mode): G = W_device + F; the row norm
  n from the noise-free state; read noise one normal per output with the emulated variance
  (variance proportional to the conductances read, through the digital row scale s); s <- s / n
  with a row refresh where 1/s would exceed ``max_write_gain`` (read, erase, rewrite: its read and
  write noise as ``EmulatedCrossbar._refresh``); sign-dependent retention (r+ where
  F > 0, r- where F < 0); the Hebbian write with one cycle-to-cycle draw per pulsed device (z_j != 0);
  the window clamp F in [lo s, hi s]. The noise is additive or multiplicative with a detached scale;
  the clamp passes no gradient where it acts (the true derivative).
* ``periphery="aihwkit"``: W z goes through the analog periphery the aihwkit backend reads with
  (``device_models.periphery``: DAC, output noise, ADC, straight-through), F z is added exactly after
  the ADC, as on that backend. Default "none": the emulated backend's ideal periphery. "both":
  alternate the two, chip by chip (even chips "none", odd "aihwkit"), to train one model for both.
* ``mix_card=True`` (with a calibration record): chips come in pairs from the record and the card in
  turn (chips 0, 1 from the record, 2, 3 from the card, ...), to train one model for both arrays; with
  ``periphery="both"`` each array meets both peripheries.

Cost: a dozen small torch ops per step with autograd, against one fused kernel for the ideal
backend (``hwloop.backends.fused_grad``); ``benchmarks/bench_stpn_bptt.py`` reports the ratio. The
energy counters are not kept (train on this backend, measure energy on ``emulated``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from device_models.array import ArrayConfig, NonIdealities
from device_models.bias_lines import DEFAULT_TOPOLOGY
from device_models.card import DeviceCard, load_card
from device_models.periphery import Periphery, periphery_read
from hwloop.backends.emulated import EmulatedCrossbar
from hwloop.crossbar import NORM_EPS, Readout, StepResult, Synapses, read_then_update
from hwloop.errors import HwloopError


def trainable_lambda_range(
    card: str | Path | DeviceCard | None = None,
    dt_s: float = 0.1,
    shape: tuple[int, int] = (1, 1),
    calibration: str | Path | None = None,
    bias: str = DEFAULT_TOPOLOGY,
) -> tuple[float, float]:
    """(lo, hi) per-step retention a hardware-aware STPN with (H, K) = ``shape`` trains in, at ``dt_s`` (s).

    The realisation's ``trainable_lambda_range`` (``device_models.realisation``) of the array the
    emulated backend builds from ``card`` or ``calibration``: for a card, the nominal device's range
    inside the bias window; for a record, the range the bulk of the assigned devices reach.
    """
    chip = EmulatedCrossbar(card=card, calibration=calibration, dt_s=dt_s, bias=bias)
    return chip.realisation(shape).trainable_lambda_range()


PERIPHERIES: dict[str, tuple[Periphery | None, ...]] = {
    "none": (None,),
    "aihwkit": (Periphery(),),
    "both": (None, Periphery()),  # chip n reads through PERIPHERIES["both"][n % 2]
}


class AwareCrossbar:
    """The emulated array, differentiable, with a fresh chip per ``program``.

    Options as ``EmulatedCrossbar`` (card, calibration, seed, dt_s, the non-ideality preset
    ``nonidealities`` and its switches, max_write_gain; together ``config``, a
    ``device_models.array.ArrayConfig``); ``redraw``: draw a new chip (seed + count) at every
    ``program`` (True) or keep chip ``seed`` (False); ``periphery``: "none" (ideal DAC/ADC, as
    emulated), "aihwkit" (the aihwkit backend's periphery, ``device_models.periphery.Periphery()``)
    or "both" (alternating per chip); ``bias``: the bias topology (``device_models.bias_lines``);
    ``normalisation``: "exact" (the digital row scale, refreshes) or "native" (devices decay by
    themselves, n at the read only: the ``ideal-native`` variant, as ``EmulatedCrossbar``'s native mode);
    ``mix_card``: with ``calibration``, draw every other pair of chips from ``card`` instead
    (``chip_source``).
    """

    name = "aware"

    def __init__(
        self,
        card: str | Path | DeviceCard | None = None,
        calibration: str | Path | None = None,
        seed: int = 0,
        dt_s: float = 0.1,
        read_noise: bool | None = None,
        d2d: bool | None = None,
        c2c: bool | None = None,
        stuck: bool | None = None,
        quantise: bool | None = None,
        saturation: bool | None = None,
        bias_limits: bool | None = None,
        max_write_gain: float = 16.0,
        redraw: bool = True,
        periphery: str = "none",
        bias: str = DEFAULT_TOPOLOGY,
        normalisation: str = "exact",
        nonidealities: str | NonIdealities | None = None,
        mix_card: bool = False,
    ) -> None:
        for switch, value in (("redraw", redraw), ("mix_card", mix_card)):  # not in ArrayConfig's checks
            if not isinstance(value, bool):
                raise HwloopError(f"{switch} must be true or false, got {value!r}")
        if mix_card and calibration is None:
            raise HwloopError(
                "mix_card=true mixes a calibration record's chips with the card's: give a calibration"
            )
        self.card: DeviceCard = load_card(card)
        self._chip_options: dict[str, object] = dict(
            card=self.card,
            calibration=calibration,
            dt_s=dt_s,
            normalisation=normalisation,
            read_noise=read_noise,
            d2d=d2d,
            c2c=c2c,
            stuck=stuck,
            quantise=quantise,
            saturation=saturation,
            bias_limits=bias_limits,
            energy_counters=False,
            max_write_gain=max_write_gain,
            bias=bias,
            nonidealities=nonidealities,
        )
        probe = EmulatedCrossbar(**self._chip_options)  # type: ignore[arg-type]  # validates the options now
        # the options are checked once, by ArrayConfig (``device_models.array``): one error line each
        self.config = ArrayConfig.build(**{**dict(probe.config), "seed": seed, "periphery": periphery})
        self.normalisation = self.config.normalisation
        self._peripheries = PERIPHERIES[self.config.periphery]
        self.periphery: Periphery | None = self._peripheries[0]
        self.seed, self.redraw, self.dt_s = self.config.seed, redraw, self.config.dt_s
        self.read_noise, self.c2c = probe.read_noise, probe.c2c
        self.max_write_gain = self.config.max_write_gain
        self.mix_card = mix_card
        self.chips_drawn = 0
        self._noise = torch.Generator().manual_seed(self.seed + 7919)
        self.chip: EmulatedCrossbar | None = None
        self._F_out: Tensor | None = None
        self._scale: Tensor | None = None

    # -- programming -----------------------------------------------------------------------------
    def program(self, synapses: Synapses) -> None:
        """Draw a chip, program it as the emulated backend does, keep straight-through device values."""
        seed = self.seed + self.chips_drawn if self.redraw else self.seed
        self.periphery = self._peripheries[self.chips_drawn % len(self._peripheries)]
        source = self.chip_source(self.chips_drawn)
        self.chips_drawn += 1
        options = self._chip_options if source == "record" else {**self._chip_options, "calibration": None}
        chip = EmulatedCrossbar(seed=seed, **options)  # type: ignore[arg-type]
        chip.program(synapses)
        self.chip = chip
        prog = chip.programmed  # the compiled array (``device_models.array.ProgrammedArray``)
        weight, lam, gamma = synapses
        dtype = weight.dtype
        self._W = weight + (prog.weight.to(dtype) - weight).detach()
        r = prog.retention.to(dtype)  # (2, H, K): 0 on stuck devices
        volatile = r != 0
        # the gradient flows through what the topology holds (line voltages by default), the values
        # are the chip's (straight-through for the rest: window bounds, other laws)
        analog = ~prog.digital_f
        through = torch.where(analog, prog.real.differentiable_retention(lam), lam)
        r_plus = torch.where(volatile[0], through[0] + (r[0] - through[0]).detach(), torch.zeros_like(lam))
        r_minus = torch.where(volatile[1], through[1] + (r[1] - through[1]).detach(), torch.zeros_like(lam))
        self._r_mid, self._r_half = (r_plus + r_minus) / 2, (r_plus - r_minus) / 2
        self._gamma = gamma + (prog.gamma.to(dtype) - gamma).detach()
        window = prog.window
        self._window = None if window is None else (window[0].to(dtype), window[1].to(dtype))
        # (H, K) S, both devices of the pair (when the array reads them, not the periphery)
        self._g_lt_sum = prog.energy.g_lt_sum.to(dtype)
        self._pulsed = analog  # synapses written by pulses (c2c noise); digital ones by the periphery
        self._gpw = float(prog.g_per_weight)
        self._F_out = None

    def chip_source(self, n: int) -> str:
        """Where chip ``n`` (0-based) is drawn from: "record" (the calibration record), or "card"."""
        if self._chip_options["calibration"] is None or (self.mix_card and (n // 2) % 2 == 1):
            return "card"
        return "record"

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> Tensor:
        """F = 0 (B, H, K); the digital row scale reset to 1."""
        if self.chip is None:
            raise RuntimeError("crossbar used before program(): call program(synapses) first")
        F = self._W.new_zeros((batch_size, *self._W.shape)).detach()
        self._F_out, self._scale = F, F.new_ones(F.shape[:2])
        return F

    def _scale_of(self, F: Tensor) -> Tensor:
        if F is not self._F_out or self._scale is None:  # a state this backend did not produce
            self._F_out, self._scale = F, F.new_ones(F.shape[:2]).detach()
        return self._scale

    # -- operations ------------------------------------------------------------------------------
    def read(self, F: Tensor, z: Tensor, *, energy: bool = False) -> Readout:
        """y = (G z + read noise) / n with G = W_device + F; n from the noise-free state."""
        if energy:
            raise HwloopError("the aware training backend keeps no energy metric: measure on 'emulated'")
        s = self._scale_of(F)
        G = self._W + F
        n = torch.linalg.vector_norm(G, dim=2) + NORM_EPS
        if self.periphery is None:
            dot = torch.bmm(G, z.unsqueeze(2)).squeeze(2)
        else:
            dot = periphery_read(self._W, z, self.periphery, self._noise)
            dot = dot + torch.bmm(F, z.unsqueeze(2)).squeeze(2)
        if self.read_noise:
            dot = dot + self._read_noise_std(F.detach(), z.detach(), s) * torch.randn(
                dot.shape, generator=self._noise, dtype=dot.dtype
            )
        return Readout(dot / n, n, None)

    def _read_noise_std(self, F: Tensor, z: Tensor, s: Tensor) -> Tensor:
        """Std (B, H) of the read noise of G z in weight units, as ``EmulatedCrossbar`` draws it.

        Var = rel^2 g_max (sum_j g_lt,ij z_j^2 + s_i^2 (2 g_min sum_j z_j^2 + g_pw sum_j |F_ij| z_j^2 / s_i))
        / g_pw^2: variance proportional to each read conductance, the short-term pair read through s.
        """
        c, gpw = self.card, self._gpw
        z2 = z * z
        st_z2 = (
            2 * c.window.g_min_siemens * z2.sum(1, keepdim=True)
            + gpw * torch.einsum("bhk,bk->bh", F.abs(), z2) / s
        )
        if self.normalisation == "native":  # one pair holds W + F: no scale, no separate short-term pair
            sum_noise = z2 @ self._g_lt_sum.T + gpw * torch.einsum("bhk,bk->bh", F.abs(), z2)
        else:
            sum_noise = z2 @ self._g_lt_sum.T + s * s * st_z2
        var_w2 = c.variability.read_noise_rel**2 * c.window.g_max_siemens * sum_noise / gpw**2
        return var_w2.clamp(min=0).sqrt()

    def update(self, F: Tensor, n: Tensor, h: Tensor, z: Tensor) -> Tensor:
        """Retention (sign-dependent, with the digital 1/n), Hebbian write with c2c noise, window clamp."""
        s_prev = self._scale_of(F)
        native = self.normalisation == "native"
        if native:  # the devices decay by themselves; n acts at the read only
            s, inv_n = s_prev, torch.ones_like(n).unsqueeze(2)
        else:
            s, inv_n = s_prev / n.detach(), torch.reciprocal(n).unsqueeze(2)
            refresh = s * self.max_write_gain < 1
            if bool(refresh.any()):
                F = F + self._refresh_noise(F.detach(), refresh, s_prev)
            s = torch.where(refresh, torch.ones_like(s), s)  # row refresh
        write = self._gamma * (h.unsqueeze(2) * z.unsqueeze(1))
        sigma = self.card.variability.c2c_pulse_rel
        if self.c2c and sigma > 0:
            noise = sigma * torch.randn(write.shape, generator=self._noise, dtype=write.dtype)
            write = write * (1 + noise * ((z != 0).unsqueeze(1) & self._pulsed))
        out = (self._r_mid * F + self._r_half * F.abs()) * inv_n + write
        if self._window is not None:
            lo, hi = self._window
            sb = s.unsqueeze(2)
            out = torch.clamp(out, min=lo * sb, max=hi * sb)
        self._F_out, self._scale = out, s
        return out

    def _refresh_noise(self, F: Tensor, rows: Tensor, s_prev: Tensor) -> Tensor:
        """What ``EmulatedCrossbar._refresh`` adds to a refreshed row (B, H, K; 0 on other rows), detached:
        the read of f = F / s (variance proportional to each device's conductance) and the rewrite from
        rest with cycle-to-cycle noise on the written value."""
        c, gpw = self.card, self._gpw
        s = s_prev.unsqueeze(2)
        var = torch.zeros_like(F)
        if self.read_noise:
            g_pair = 2 * c.window.g_min_siemens + F.abs() / s * gpw
            var = var + s * s * (c.variability.read_noise_rel**2 * c.window.g_max_siemens / gpw**2) * g_pair
        sigma = c.variability.c2c_pulse_rel
        if self.c2c and sigma > 0:
            var = var + (sigma * F) ** 2
        noise = var.sqrt() * torch.randn(F.shape, generator=self._noise, dtype=F.dtype)
        return torch.where(rows.unsqueeze(2) & self._pulsed, noise, 0.0)

    def step(self, F: Tensor, z: Tensor, bias: Tensor, *, energy: bool = False) -> StepResult:
        """One time step: ``read``, h = tanh(y + bias), ``update``."""
        return read_then_update(self, F, z, bias, energy=energy)

    def energy(self) -> dict[str, float]:
        """No energy counters on the training backend."""
        return {}
