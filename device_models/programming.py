"""Fault-aware programming of differential pairs: program, verify by reading back, compensate faults.

What an array controller does when it writes long-term weights onto (G+, G-) pairs, as the
program-and-verify loops of compute-in-memory macros do:

1. Write each device's target conductance, then read it back (``reads`` reads averaged, each with
   the card's read noise). A device off its target by more than the tolerance (4 sigma of the
   card's programming error and of the averaged read noise, plus half a level step) is written
   again, up to ``retries`` times.
2. Probe: a device that reads at the window's floor or ceiling could be stuck there while its target
   happens to be the same level, so it is written to mid-window (again, up to ``retries`` times, if
   it misses), read, and written back.
3. A device that fails either check is faulty (stuck). Its synapse's short-term state F cannot live
   on the pair (one polarity lost), so the periphery computes that synapse's F digitally. Its W is
   kept analog by re-targeting the partner device, G_partner = G_stuck -/+ w g_per_weight, where
   that lies inside the window; otherwise the periphery computes W z for that synapse too.

The controller sees only reads; the devices' true behaviour is the ``respond`` callable (what a write
of given targets leaves on the devices), so the same procedure drives the emulated backend, a lab
array or a test with known faults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from device_models.card import DeviceCard
from device_models.memristor import quantise_conductance, read_noise_var_siemens2

TOLERANCE_SIGMA = 4.0
VERIFY_SEED_OFFSET = 7919  # the controller's verify writes and reads draw from their own stream
# (seed + offset): a backend's other noise is the same with fault-aware programming on or off

Respond = Callable[[Tensor, Tensor], Tensor]
"""respond(g_target (2, H, K) S, which (2, H, K) bool) -> the conductances (S) the written devices
now hold (entries outside ``which`` are ignored)."""


@dataclass
class FaultReport:
    """What program-and-verify found and did, and what the digital periphery costs per step."""

    devices: int = 0
    faulty_devices: int = 0
    rewrites: int = 0
    probes: int = 0
    reads: int = 0
    partner_compensated: int = 0
    digital_weight_synapses: int = 0
    digital_state_synapses: int = 0
    faulty: Tensor | None = None  # (2, H, K) the devices found faulty

    @property
    def digital_macs_per_step(self) -> int:
        """Digital multiply-accumulates per sample and step: W z (1) and F z (1) in the read, the
        decay lambda F / n (2) and the write gamma h z (2) for every digital synapse."""
        return self.digital_weight_synapses + 5 * self.digital_state_synapses

    def as_dict(self) -> dict[str, int]:
        """The counts, and ``digital_macs_per_step``."""
        counts = {k: v for k, v in asdict(self).items() if k != "faulty"}
        return {**counts, "digital_macs_per_step": self.digital_macs_per_step}


def written_conductance(
    g_target: Tensor,
    card: DeviceCard,
    generator: torch.Generator,
    stuck: tuple[Tensor, Tensor] | None = None,
    *,
    quantise: bool = True,
    error: bool = True,
) -> Tensor:
    """What one write of long-term conductances ``g_target`` (S) leaves on the devices (S): the
    nearest of the card's programmable levels (``quantise``), the card's relative programming error
    ``d2d_g_rel`` (``error``, one normal per device from ``generator``, G >= 0), and the stuck devices
    ``stuck`` = (stuck_on, stuck_off) masks at g_max / g_min whatever was written. The devices' truth
    on every backend that programs long-term weights (emulated, aihwkit)."""
    win, var = card.window, card.variability
    g = g_target
    if quantise:
        g = quantise_conductance(g, win.g_min_siemens, win.g_max_siemens, win.levels)
    if error and var.d2d_g_rel > 0:
        noise = torch.randn(g.shape, generator=generator, dtype=g.dtype)
        g = (g * (1 + var.d2d_g_rel * noise)).clamp(min=0)
    if stuck is not None:
        on, off = stuck
        g = torch.where(on, win.g_max_siemens, torch.where(off, win.g_min_siemens, g))
    return g


def _read(g: Tensor, card: DeviceCard, reads: int, generator: torch.Generator) -> Tensor:
    """Mean of ``reads`` noisy reads (S) of conductances g (S), the card's read-noise law."""
    var = read_noise_var_siemens2(g, card.variability.read_noise_rel, card.window.g_max_siemens)
    noise = torch.randn(g.shape, generator=generator, dtype=g.dtype)
    return g + (var.clamp(min=0) / reads).sqrt() * noise


def _tolerance(g_target: Tensor, card: DeviceCard, reads: int) -> Tensor:
    """Largest |read - target| (S) a healthy device shows after one write."""
    win, var = card.window, card.variability
    step = (win.g_max_siemens - win.g_min_siemens) / (win.levels - 1)
    read_var = read_noise_var_siemens2(g_target, var.read_noise_rel, win.g_max_siemens) / reads
    spread = torch.sqrt((var.d2d_g_rel * g_target) ** 2 + read_var)
    return TOLERANCE_SIGMA * spread + step / 2


def program_and_verify(
    g_target: Tensor,
    g_written: Tensor,
    w_siemens: Tensor,
    card: DeviceCard,
    respond: Respond,
    generator: torch.Generator,
    *,
    reads: int = 4,
    retries: int = 2,
) -> tuple[Tensor, Tensor, Tensor, FaultReport]:
    """Verify the first write ``g_written`` (2, H, K) of ``g_target`` and compensate faulty devices.

    w_siemens (H, K): each synapse's target G+ - G- (S). Returns (g_lt (2, H, K) the devices' final
    conductances, digital_w (H, K) synapses whose W the periphery computes, digital_f (H, K) synapses
    whose F it computes, report).
    """
    win = card.window
    g_min, g_max = win.g_min_siemens, win.g_max_siemens
    report = FaultReport(devices=g_target.numel())
    g = g_written.clone()
    tol = _tolerance(g_target, card, reads)

    def off_target(target: Tensor) -> Tensor:
        report.reads += reads * target.numel()
        return (_read(g, card, reads, generator) - target).abs() > _tolerance(target, card, reads)

    failing = off_target(g_target)
    for _ in range(retries):
        if not bool(failing.any()):
            break
        report.rewrites += int(failing.sum())
        g = torch.where(failing, respond(g_target, failing), g)
        failing = failing & off_target(g_target)
    # a device reading at a window end might be stuck there: probe it mid-window and write it back
    edge = ~failing & (((g_target - g_min).abs() <= tol) | ((g_target - g_max).abs() <= tol))
    mid = torch.full_like(g_target, (g_min + g_max) / 2)
    stuck_at_edge = edge
    for _ in range(1 + retries):  # a healthy device's probe can land in its programming tail: retry
        if not bool(stuck_at_edge.any()):
            break
        probed = torch.where(stuck_at_edge, respond(mid, stuck_at_edge), g)
        report.probes += int(stuck_at_edge.sum())
        report.reads += reads * int(stuck_at_edge.sum())
        missed = (_read(probed, card, reads, generator) - mid).abs() > _tolerance(mid, card, reads)
        stuck_at_edge = stuck_at_edge & missed
    g = torch.where(edge & ~stuck_at_edge, respond(g_target, edge & ~stuck_at_edge), g)
    faulty = failing | stuck_at_edge
    report.faulty_devices, report.faulty = int(faulty.sum()), faulty

    # compensation: a faulty synapse's F goes digital; its W to the partner device where it fits
    digital_f = faulty.any(0)
    one = faulty[0] ^ faulty[1]
    stuck_level = _read(g, card, reads, generator)  # the controller's estimate of the stuck conductance
    report.reads += reads * int(one.sum())
    partner_target = torch.stack([stuck_level[1] + w_siemens, stuck_level[0] - w_siemens])  # [G+, G-]
    partner = torch.stack([one & faulty[1], one & faulty[0]])  # the healthy device of a one-fault pair
    slack = _tolerance(partner_target.clamp(g_min, g_max), card, reads)  # the stuck level is a noisy read
    fits = partner & (partner_target >= g_min - slack) & (partner_target <= g_max + slack)
    g = torch.where(fits, respond(partner_target.clamp(g_min, g_max), fits), g)
    compensated = fits.any(0)
    report.partner_compensated = int(compensated.sum())
    digital_w = digital_f & ~compensated
    report.digital_weight_synapses = int(digital_w.sum())
    report.digital_state_synapses = int(digital_f.sum())
    return g, digital_w, digital_f, report
