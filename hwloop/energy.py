"""Energy accounting, three ways: the STPN paper's metric, device physics in joules, and a GPU estimate.

1. ``synaptic_energy_metric``: the paper's per-step sum_ij |G_ij / n_i| z_j^2 (unitless in weight units).
2. Device physics, from a backend's ``energy()`` counters (J): reads V^2 G t_read, update pulses
   V^2 G t_pulse, the decay bias V^2 G held over each step's real duration dt_s (the bias each device
   actually sits at: its line voltages by default), and exact normalisation's row refreshes (reads, an
   erase pulse and the rewrite). Excluded, as in
   Weilenmann et al.: ADCs/DACs, drivers and every other peripheral, the digital neurons (tanh, row
   norms), the CNN and the heads.
3. The same synaptic work on a GPU (``GpuModel``, default an NVIDIA A100): bytes moved and FLOPs of one
   STPN step (``stpn_step_work``) priced three ways (``gpu_energy_per_step_j``), every constant with its
   source.

``WEILENMANN_2024`` holds the published per-game figures the report compares against; docs/energy.md
explains every number.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from pydantic import BaseModel, Field
from torch import Tensor

PAPER = "Weilenmann et al., Nat. Commun. 2024 (SrTiO3 memristive STPN, Pong)"

# Published per-game figures for the STPN-64 Pong agent (64 x 2656 = 169,984 plastic synapses).
WEILENMANN_2024: dict[str, float] = {
    "synapses": 169_984,
    "idle_power_per_synapse_w": 4.3e-9,  # at the worst-case decay bias
    "decay_bias_v": 0.6,
    "decay_bias_j": 35.6e-3,
    "programming_j": 0.4e-3,
    "device_total_j": 36.0e-3,
    "gpu_best_efficiency_j": 3463.9e-3,  # A100 at its best-efficiency point (~96x)
    "gpu_as_written_j": 34780.5e-3,  # A100 running the network as written (~966x)
}

DEVICE_EXCLUDED = (
    "ADCs and DACs, sense amplifiers, drivers and every other peripheral circuit",
    "the digital periphery: neurons (tanh, bias), row norms n_i, the CNN encoder and the policy/value heads",
    "the instruments and the host computer",
)


def synaptic_energy_metric(G: Tensor, n: Tensor, z: Tensor) -> Tensor:
    """The STPN paper's per-step synaptic energy, sum_ij |G_ij / n_i| * z_j^2, per sample.

    G: (B, H, K) efficacy, n: (B, H) row norms, z: (B, K) presynaptic activity read as volts.
    Returns (B,). With G in siemens and z in volts this is a power (W) per unit read time.
    """
    per_row = torch.einsum("bhk,bk->bh", G.abs(), z * z)
    return (per_row / n).sum(dim=1)


# -- device physics --------------------------------------------------------------------------------


def decay_bias_energy_j(synapses: int, power_per_synapse_w: float, duration_s: float) -> float:
    """Energy (J) of holding ``synapses`` at their decay bias, each drawing ``power_per_synapse_w`` (W),
    for ``duration_s`` (s): the dominant term of a volatile-memristor STPN."""
    return synapses * power_per_synapse_w * duration_s


def duration_for_bias_energy_s(energy_j: float, synapses: int, power_per_synapse_w: float) -> float:
    """The duration (s) over which ``synapses`` at ``power_per_synapse_w`` (W) spend ``energy_j`` (J)."""
    return energy_j / (synapses * power_per_synapse_w)


def device_energy_summary(
    counters_per_game: list[dict[str, float]], steps_per_game: list[int], dt_s: float, backend: str
) -> dict[str, Any]:
    """Per-game and per-step joules from a backend's counters (one dict of J per game), with what is
    counted and what is excluded. ``dt_s``: real seconds per agent step (the game's duration is
    steps * dt_s)."""
    keys = sorted({k for c in counters_per_game for k in c})
    per_game = [float(sum(c.values())) for c in counters_per_game]
    steps = sum(steps_per_game)
    return {
        "backend": backend,
        "dt_s": dt_s,
        "duration_s_per_game": [n * dt_s for n in steps_per_game],
        "per_game_j": per_game,
        "per_step_mean_j": sum(per_game) / steps if steps else 0.0,
        "breakdown_per_game_j": {k: [float(c.get(k, 0.0)) for c in counters_per_game] for k in keys},
        "counted": {
            "read_j": "V_read^2 G t_read of every device read",
            "program_j": "V^2 G t_pulse of every update pulse",
            "bias_j": "V_bias^2 G of every device held at its decay bias, times the step's real duration",
            "refresh_j": "exact normalisation's row refreshes: reads, one erase pulse, rewrite (V^2 G t)",
        },
        "excluded": list(DEVICE_EXCLUDED),
    }


# -- the same synaptic work on a GPU ---------------------------------------------------------------


class Constant(BaseModel):
    """A number with its unit and where it comes from."""

    value: float
    unit: str
    source: str


class GpuModel(BaseModel):
    """The GPU constants the estimate uses; every one carries its source (docs/energy.md)."""

    name: str = "NVIDIA A100 SXM4 40 GB"
    board_power_w: Constant = Constant(
        value=400.0, unit="W", source="NVIDIA A100 Tensor Core GPU datasheet: max TDP (SXM4)"
    )
    peak_fp32_flop_per_s: Constant = Constant(
        value=19.5e12, unit="FLOP/s", source="NVIDIA A100 datasheet: peak FP32 (non-tensor)"
    )
    memory_bandwidth_b_per_s: Constant = Constant(
        value=1.555e12, unit="B/s", source="NVIDIA A100 datasheet: HBM2 bandwidth, 40 GB SXM4"
    )
    dram_energy_j_per_b: Constant = Constant(
        value=3.9e-12 * 8,
        unit="J/B",
        source="O'Connor et al., 'Fine-Grained DRAM', MICRO 2017: HBM2 access energy 3.9 pJ/bit",
    )
    fp32_flop_energy_j: Constant = Constant(
        value=(3.7e-12 + 0.9e-12) / 2,
        unit="J/FLOP",
        source="Horowitz, ISSCC 2014: FP32 multiply 3.7 pJ + add 0.9 pJ at 45 nm (an upper bound at 7 nm)",
    )
    kernel_launch_s: Constant = Constant(
        value=5e-6,
        unit="s",
        source="typical CUDA kernel launch latency (NVIDIA CUDA C++ Best Practices Guide, 'a few us')",
    )
    kernels_per_step: Constant = Constant(
        value=11,
        unit="kernels",
        source="the STPN step as written in PyTorch eager: W+F, norm, matvec, /n, +b, tanh, lambda*F, "
        "/n, h z^T, gamma*, + (one kernel each)",
    )
    bytes_per_value: Constant = Constant(value=4, unit="B", source="float32, as the network is written")


class StepWork(NamedTuple):
    """The synaptic work of one STPN step: FLOPs and bytes moved to and from GPU memory."""

    flops: float
    bytes: float


def stpn_step_work(hidden: int, presynaptic: int, bytes_per_value: float = 4) -> StepWork:
    """FLOPs and bytes (B) of one batch-1 STPN step over H x K synapses, synapses only.

    FLOPs = 10 HK: G = W + F (HK), row norms (2 HK), G z (2 HK), lambda F / n + gamma h z^T (5 HK).
    Bytes = 5 HK values: W, F, lambda, gamma read once and F written once, all from/to DRAM (an
    assumption: the STPN-64's 3.4 MB would fit the A100's 40 MB L2, which a persistent kernel could use).
    """
    hk = float(hidden * presynaptic)
    return StepWork(10 * hk, 5 * hk * bytes_per_value)


def gpu_energy_per_step_j(work: StepWork, gpu: GpuModel | None = None) -> dict[str, float]:
    """Energy (J) of one step's synaptic work on ``gpu``, three ways.

    floor: bytes * DRAM energy per byte + FLOPs * energy per FLOP (data movement and arithmetic only);
    best_efficiency: board power x the roofline time max(bytes / bandwidth, FLOPs / peak), the GPU
        fully utilised (its best-efficiency point);
    as_written: board power x max(roofline time, kernels per step x launch latency), a batch-1 recurrent
        step launched kernel by kernel as PyTorch eager code runs it.
    """
    g = gpu or GpuModel()
    roofline_s = max(work.bytes / g.memory_bandwidth_b_per_s.value, work.flops / g.peak_fp32_flop_per_s.value)
    launch_s = g.kernels_per_step.value * g.kernel_launch_s.value
    return {
        "floor": work.bytes * g.dram_energy_j_per_b.value + work.flops * g.fp32_flop_energy_j.value,
        "best_efficiency": g.board_power_w.value * roofline_s,
        "as_written": g.board_power_w.value * max(roofline_s, launch_s),
    }


def gpu_energy_summary(hidden: int, presynaptic: int, steps_per_game: list[int]) -> dict[str, Any]:
    """Per-step and per-game GPU joules for an STPN of ``hidden`` x ``presynaptic`` synapses, with every
    constant and its source."""
    gpu = GpuModel()
    work = stpn_step_work(hidden, presynaptic, gpu.bytes_per_value.value)
    per_step = gpu_energy_per_step_j(work, gpu)
    return {
        "gpu": gpu.name,
        "synapses": hidden * presynaptic,
        "flops_per_step": work.flops,
        "bytes_per_step": work.bytes,
        "per_step_j": per_step,
        "per_game_j": {k: [v * n for n in steps_per_game] for k, v in per_step.items()},
        "constants": gpu.model_dump(exclude={"name"}),
    }


class EnergyReport(BaseModel):
    """The comparison in the paper's form (``paper_form``): this run's figures beside the published ones."""

    rows: list[tuple[str, float | None, float | None, str]] = Field(
        default_factory=list, description="(quantity, this run J per game, paper J per game, note)"
    )
    assumptions: list[str] = Field(default_factory=list)
    metric_per_game: float | None = Field(default=None, description="the paper's metric summed per game")


def paper_form(result: dict[str, Any]) -> EnergyReport:
    """Build the per-game comparison from a ``hwloop pong --json`` result (its ``energy_joules``)."""
    from hwloop.errors import HwloopError

    joules = result.get("energy_joules")
    if not isinstance(joules, dict) or "device" not in joules or "gpu" not in joules:
        raise HwloopError(
            "the result has no energy_joules (device and gpu): write it with "
            "`hwloop pong --json-out RESULT.json` on an STPN agent"
        )
    dev, gpu = joules["device"], joules["gpu"]
    games = len(dev["per_game_j"]) or 1

    def mean(values: list[float]) -> float:
        return float(sum(values) / len(values)) if values else 0.0

    device = mean(dev["per_game_j"])
    parts = {k: mean(v) for k, v in dev["breakdown_per_game_j"].items()}
    p = WEILENMANN_2024
    steps = mean([float(d) / dev["dt_s"] for d in dev["duration_s_per_game"]])
    duration = mean(dev["duration_s_per_game"])
    best, written = mean(gpu["per_game_j"]["best_efficiency"]), mean(gpu["per_game_j"]["as_written"])
    floor = mean(gpu["per_game_j"]["floor"])
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("memristive synapses, total", device, p["device_total_j"], f"{dev['backend']} backend"),
        ("  decay bias", parts.get("bias_j"), p["decay_bias_j"], "bias power x game duration"),
        ("  update pulses (programming)", parts.get("program_j"), p["programming_j"], ""),
        ("  reads", parts.get("read_j"), None, "not given by the paper"),
        *(
            (("  row refreshes (exact normalisation)", parts["refresh_j"], None, "read + erase + rewrite"),)
            if "refresh_j" in parts
            else ()
        ),
        *(
            (f"  lab block: {what}", parts[key], None, "measured controller I/O")
            for key, what in (
                ("lab_read_j", "reads"),
                ("lab_program_j", "update pulses"),
                ("lab_bias_j", "line bias (V^2 G dt)"),
            )
            if key in parts
        ),
        ("GPU, floor (DRAM + FLOPs)", floor, None, gpu["gpu"]),
        ("GPU, best-efficiency point", best, p["gpu_best_efficiency_j"], gpu["gpu"]),
        ("GPU, as written (batch 1)", written, p["gpu_as_written_j"], gpu["gpu"]),
    ]
    paper_s = duration_for_bias_energy_s(p["decay_bias_j"], int(p["synapses"]), p["idle_power_per_synapse_w"])
    ratio = f"GPU / device: best {best / device:,.0f}x, as written {written / device:,.0f}x" if device else ""
    assumptions = [
        f"{games} game(s) of {steps:,.0f} agent steps on average, dt = {dev['dt_s']:.4g} s per step, "
        f"so {duration:.1f} s of real time per game",
        *(f"device counts {k}: {v}" for k, v in dev["counted"].items()),
        *(f"device excludes {x}" for x in dev["excluded"]),
        f"GPU work per step: {gpu['flops_per_step']:,.0f} FLOPs, {gpu['bytes_per_step']:,.0f} B "
        f"({gpu['synapses']:,} synapses; synapses only, the CNN and heads are digital in both)",
        *(f"GPU {name} = {c['value']:g} {c['unit']} ({c['source']})" for name, c in gpu["constants"].items()),
        f"paper: {PAPER}; {p['synapses']:,.0f} synapses, {p['idle_power_per_synapse_w'] * 1e9:.1f} nW idle "
        f"per synapse at a worst-case {p['decay_bias_v']} V decay bias, over "
        f"{paper_s:.1f} s (the duration its decay-bias figure implies); peripherals and ADCs excluded",
    ]
    stats = result.get("backend_stats")
    if isinstance(stats, dict) and "bias" in stats:
        assumptions.insert(
            0,
            f"decay bias held by {stats['bias']} ({stats.get('dac_count', 0):,.0f} bias sources, DACs not "
            f"counted in joules); exact normalisation refreshed {stats.get('refreshes_per_step', 0.0):.2f} "
            "rows per step, each a read, erase and rewrite of the row's short-term devices",
        )
    if ratio:
        assumptions.insert(0, ratio)
    else:
        assumptions.insert(
            0, f"the {dev['backend']} backend has no physical energy counters: its device rows are 0"
        )
    metric = result.get("energy")
    per_episode = metric.get("per_episode") if isinstance(metric, dict) else None
    return EnergyReport(
        rows=rows, assumptions=assumptions, metric_per_game=mean(per_episode) if per_episode else None
    )
