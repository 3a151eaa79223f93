"""Imitation training of the Pong agent: behaviour cloning with truncated BPTT, then DAgger rounds.

Schedule (all in ``TrainConfig``):
1. collect ``bc_segments`` segments with the expert driving (``epsilon`` random presses), labelled by it;
2. behaviour cloning for ``bc_epochs``;
3. ``dagger_rounds`` times: the agent drives (the expert's action is played with probability
   ``beta``), the expert labels, the data are aggregated and training continues ``dagger_epochs``;
4. STPN only: ``plastic_epochs`` epochs with the synaptic plasticity (gamma) trained, on a random
   subset of ``plastic_segments`` segments (full BPTT through F is ~10x slower per frame);
5. ``plastic_dagger_rounds`` DAgger rounds with the agent driving in its full dynamics (the STPN
   plastic): each trains one epoch at ``plastic_lr`` on its ``plastic_dagger_segments`` new segments
   plus ``plastic_replay_segments`` drawn from all earlier data. An LSTM runs them too, so both cores
   can be trained the same way.

Every phase minimises class-weighted cross-entropy to the expert's labels; ``hit_weight`` further
weights the ``hit_window`` steps before the ball reaches the paddle, where the agent's misses were
traced to (a press one step late, or none).

``init`` starts from a trained checkpoint instead of random weights (fine-tuning); an already plastic
checkpoint can only continue with steps 4-5.

For speed, steps 2-3 of the STPN run with gamma held at 0: F then stays 0 and the layer is exactly
h = tanh(W z / ||W_i|| + b), computed here without the (B, H, K) state (``static_stpn``). Step 4
re-initialises gamma to the paper's range and trains every STPN parameter through the full dynamics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor, nn

from experiments.pong.agent import AgentState, PongAgent, detach_state, load_agent, make_hardware_aware
from experiments.pong.data import Driver, Segments, collect, load_segments, noisy_expert_driver, save_segments
from experiments.pong.env import N_ACTIONS
from experiments.pong.expert import RamExpert
from hwloop.errors import CheckpointError, HwloopError
from hwloop.stpn import STPN

Log = Callable[[str], None]
PLASTIC_GAME_SEEDS = 100_000  # plastic DAgger games start here, apart from the static rounds' seeds
WARMUP_STEPS = 4  # loss ignored on a segment's first steps: the agent has not seen the ball move yet


class TrainConfig(BaseModel):
    """Everything that determines a training run (seeded: same config, same data and weights)."""

    core: str = "stpn"
    hidden: int = 64
    seed: int = 0
    segment_len: int = 128  # steps per training segment
    chunk: int = 32  # truncated-BPTT length, steps
    batch: int = 8  # segments per minibatch
    lr: float = 2e-3
    epsilon: float = 0.1  # random-press probability while the expert collects
    expert_offset: float = 2.0  # px, the expert's aim (RamExpert.offset)
    expert_delay_cost: float = 4.0  # px per step, the expert's preference for pressing early
    bc_segments: int = 400
    bc_epochs: int = 12
    dagger_rounds: int = 2
    dagger_segments: int = 100
    dagger_epochs: int = 3
    beta: float = 0.3  # probability the expert's action is played during DAgger collection
    plastic_epochs: int = 1
    plastic_segments: int = 150  # random subset of the aggregated data for the (slow) plastic phase
    plastic_lr: float = 3e-4
    plastic_dagger_rounds: int = 0
    plastic_dagger_segments: int = 100
    plastic_replay_segments: int = 100
    plastic_beta: float = 0.0  # expert's share of the driving in the plastic DAgger rounds
    hit_weight: float = 1.0  # loss weight of the steps just before the ball reaches the paddle
    hit_window: float = 12.0  # steps before the hit that get ``hit_weight``
    init: str | None = None  # checkpoint to fine-tune instead of a fresh agent
    hardware_aware: bool = False  # fine-tune on the 'aware' backend with lambda in the realisable range
    card: str | None = None  # hardware-aware: device card (None: the shipped card)
    calibration: str | None = None  # hardware-aware: calibration record
    dt_s: float = 1 / 15  # hardware-aware: one agent step = 4 frames at 60 Hz
    backend_seed: int = 10_000  # hardware-aware: first training chip (evaluation chips are others)
    backend_options: dict[str, Any] = {}  # hardware-aware: further options of the aware backend
    # hardware-aware DAgger collection: "round" plays one drawn chip for a whole collection round;
    # "segment" a fresh chip at every segment start (the agent's state carries over)
    collect_chip: Literal["round", "segment"] = "round"


def class_weights(labels: np.ndarray) -> Tensor:
    """Cross-entropy weights ~ 1/sqrt(frequency) for the actions present, normalised to mean 1 over them."""
    counts = np.bincount(labels.ravel(), minlength=N_ACTIONS).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    w = w / w[counts > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


def step_weights(steps_to_hit: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Per-step loss weights: ``hit_weight`` within ``hit_window`` steps of the ball reaching the paddle
    (where a press one step late loses the point), 1 elsewhere."""
    return np.where(steps_to_hit <= cfg.hit_window, cfg.hit_weight, 1.0).astype(np.float32)


def imitation_loss(logits: Tensor, labels: Tensor, class_w: Tensor, step_w: Tensor) -> Tensor:
    """Cross-entropy of logits (B, T, A) to labels (B, T), each step weighted class_w[label] * step_w,
    normalised by the total weight (torch's class-weighted mean when all step weights are 1)."""
    y = labels.reshape(-1)
    w = class_w[y] * step_w.reshape(-1)
    ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y, reduction="none")
    return (w * ce).sum() / w.sum()


def static_stpn(layer: STPN, feats: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """The STPN with gamma = 0 and F = 0: h_t = tanh(W [x_t, h_{t-1}] / ||W_i|| + b). feats (B, T, I)."""
    n = torch.linalg.vector_norm(layer.weight, dim=1) + 1e-16
    w_in, w_rec = (
        layer.weight[:, : layer.input_size] / n[:, None],
        layer.weight[:, layer.input_size :] / n[:, None],
    )
    drive = feats @ w_in.T + layer.bias
    hs = []
    for t in range(feats.shape[1]):
        h = torch.tanh(drive[:, t] + h @ w_rec.T)
        hs.append(h)
    return torch.stack(hs, dim=1), h


def _logits(agent: PongAgent, frames: Tensor, state: AgentState, plastic: bool) -> tuple[Tensor, AgentState]:
    if agent.core_name == "stpn" and not plastic:
        hs, h = static_stpn(agent.core, agent.encode(frames), state[0])  # type: ignore[arg-type]
        return agent.policy(hs), (h, state[1])
    out = agent(frames, state)
    return out.logits, out.state


def train_epochs(
    agent: PongAgent, data: Segments, epochs: int, cfg: TrainConfig, *, lr: float, plastic: bool, log: Log
) -> dict[str, float]:
    """Weighted cross-entropy to the expert's labels, truncated BPTT over each segment; returns last stats."""
    if epochs and len(data) < cfg.batch:
        raise HwloopError(f"{len(data)} training segments are fewer than one batch of {cfg.batch}")
    params = [p for p in agent.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    weights = class_weights(data.labels)
    rng = np.random.default_rng(cfg.seed)
    stats: dict[str, float] = {}
    for epoch in range(epochs):
        t0, seen, loss_sum, correct, counted = time.perf_counter(), 0, 0.0, 0, 0
        order = rng.permutation(len(data))
        for start in range(0, len(order) - cfg.batch + 1, cfg.batch):
            idx = np.sort(order[start : start + cfg.batch])
            frames, labels = torch.from_numpy(data.frames[idx]), torch.from_numpy(data.labels[idx])
            step_w = torch.from_numpy(step_weights(data.steps_to_hit[idx], cfg))
            state = agent.initial_state(cfg.batch)
            if agent.core_name == "stpn" and not plastic:
                state = (state[0], state[0].new_zeros(0))  # F is identically 0 on this path
            for c in range(0, data.frames.shape[1], cfg.chunk):
                logits, state = _logits(agent, frames[:, c : c + cfg.chunk], state, plastic)
                y = labels[:, c : c + cfg.chunk]
                keep = torch.arange(c, c + y.shape[1]) >= WARMUP_STEPS
                loss = imitation_loss(
                    logits[:, keep], y[:, keep], weights, step_w[:, c : c + cfg.chunk][:, keep]
                )
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                state = detach_state(state)
                loss_sum += loss.item() * int(keep.sum()) * cfg.batch
                correct += int((logits[:, keep].argmax(-1) == y[:, keep]).sum())
                counted += int(keep.sum()) * cfg.batch
                seen += y.numel()
        dt = time.perf_counter() - t0
        stats = {"loss": loss_sum / counted, "accuracy": correct / counted, "frames_per_s": seen / dt}
        kind = ("plastic " if plastic else "static ") * (agent.core_name == "stpn") + agent.core_name
        log(
            f"epoch {epoch + 1}/{epochs} {kind}: loss {stats['loss']:.4f} "
            f"acc {stats['accuracy']:.3f} ({stats['frames_per_s']:.0f} frames/s, {dt:.0f} s)"
        )
    return stats


def agent_driver(
    agent: PongAgent, beta: float, seed: int
) -> tuple[Callable[[np.ndarray, int], int], Callable[[], None]]:
    """A DAgger driver (the agent's greedy action, or with probability ``beta`` the expert's) and reset."""
    rng = np.random.default_rng(seed)
    state: list[AgentState | None] = [None]

    def drive(frame: np.ndarray, expert_action: int) -> int:
        with torch.no_grad():
            out = agent(torch.from_numpy(frame)[None, None], state[0])
        state[0] = out.state
        return expert_action if rng.random() < beta else int(out.logits[0, -1].argmax())

    def reset() -> None:
        state[0] = None

    return drive, reset


def set_plasticity(layer: STPN, trainable: bool, seed: int) -> None:
    """Hold gamma at 0 (static phase), or train it: from the paper's U(+-1e-3/sqrt(H)) if it is still 0,
    else from its trained values (fine-tuning a plastic checkpoint)."""
    with torch.no_grad():
        if trainable and not bool(layer.weight_gamma.any()):
            bound = 1e-3 / math.sqrt(layer.hidden_size)
            gen = torch.Generator().manual_seed(seed)
            layer.weight_gamma.copy_((torch.rand(layer.weight_gamma.shape, generator=gen) * 2 - 1) * bound)
        elif not trainable:
            layer.weight_gamma.zero_()
    layer.weight_gamma.requires_grad_(trainable)
    layer.lambda_parameter().requires_grad_(trainable)


def train(
    cfg: TrainConfig,
    log: Log,
    on_phase: Callable[[PongAgent, dict[str, object]], None] | None = None,
    cache_dir: Path | None = None,
) -> tuple[PongAgent, dict[str, object]]:
    """Run the whole schedule; returns the agent and a record of data sizes, stats and wall times (s).

    ``on_phase(agent, record)`` is called after each phase (BC, every DAgger round, plastic), so a
    checkpoint can be kept current while training runs. The expert data (deterministic for a config)
    are cached in ``cache_dir`` if given.
    """
    torch.manual_seed(cfg.seed)
    agent = _initial_agent(cfg)
    record: dict[str, object] = {}
    t0 = time.perf_counter()
    data = _expert_data(cfg, cache_dir)
    log(f"expert data: {data.steps} steps ({time.perf_counter() - t0:.0f} s)")
    record["bc"] = train_epochs(agent, data, cfg.bc_epochs, cfg, lr=cfg.lr, plastic=False, log=log)
    _phase_done(agent, record, data, t0, on_phase)
    for r in range(cfg.dagger_rounds):
        new = _agent_data(agent, cfg.dagger_segments, cfg.beta, cfg.seed + 1000 * (r + 1), cfg, log)
        data = data.concat(new)
        record[f"dagger_{r + 1}"] = train_epochs(
            agent, data, cfg.dagger_epochs, cfg, lr=cfg.lr, plastic=False, log=log
        )
        _phase_done(agent, record, data, t0, on_phase)
    if isinstance(agent.core, STPN) and cfg.plastic_epochs:
        set_plasticity(agent.core, True, cfg.seed)
        pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(data))[: cfg.plastic_segments])
        subset = data.pick(pick)
        record["plastic"] = train_epochs(
            agent, subset, cfg.plastic_epochs, cfg, lr=cfg.plastic_lr, plastic=True, log=log
        )
        _phase_done(agent, record, data, t0, on_phase)
    if cfg.plastic_dagger_rounds and isinstance(agent.core, STPN):
        set_plasticity(agent.core, True, cfg.seed)
    for r in range(cfg.plastic_dagger_rounds):
        game_seed = cfg.seed + PLASTIC_GAME_SEEDS + 1000 * r
        new = _agent_data(agent, cfg.plastic_dagger_segments, cfg.plastic_beta, game_seed, cfg, log)
        old = np.random.default_rng(game_seed).permutation(len(data))[: cfg.plastic_replay_segments]
        subset = new.concat(data.pick(np.sort(old)))
        data = data.concat(new)
        record[f"plastic_dagger_{r + 1}"] = train_epochs(
            agent, subset, 1, cfg, lr=cfg.plastic_lr, plastic=True, log=log
        )
        _phase_done(agent, record, data, t0, on_phase)
    agent.eval()
    if cfg.hardware_aware and isinstance(agent.core, STPN):
        agent.core.set_backend("ideal")
    return agent, record


def _initial_agent(cfg: TrainConfig) -> PongAgent:
    """A fresh agent (static STPN: gamma = 0), or the ``init`` checkpoint to fine-tune."""
    if cfg.init is None:
        agent = PongAgent(cfg.core, cfg.hidden)
        if isinstance(agent.core, STPN):
            set_plasticity(agent.core, False, cfg.seed)
        return agent
    agent = load_agent(Path(cfg.init))
    if (agent.core_name, agent.hidden) != (cfg.core, cfg.hidden):
        raise CheckpointError(
            f"--init {cfg.init} holds a {agent.core_name}-{agent.hidden} agent, "
            f"not the {cfg.core}-{cfg.hidden} being trained"
        )
    plastic = isinstance(agent.core, STPN) and bool(agent.core.weight_gamma.any())
    if cfg.hardware_aware:
        _to_aware(agent, cfg)
    if plastic and (cfg.bc_epochs or cfg.dagger_rounds):
        raise HwloopError(
            f"--init {cfg.init} is already plastic (gamma != 0): continue it with "
            "--bc-epochs 0 --dagger-rounds 0 and plastic epochs or rounds"
        )
    return agent


def _to_aware(agent: PongAgent, cfg: TrainConfig) -> None:
    """Bound the agent's lambda to the realisable range and put its STPN on the 'aware' backend."""
    from hwloop.backends.aware import AwareCrossbar, trainable_lambda_range
    from hwloop.crossbar import make_backend

    if not isinstance(agent.core, STPN):
        raise HwloopError("hardware-aware fine-tuning needs an STPN agent")
    if not agent.core.bounded:
        shape = (agent.core.hidden_size, agent.core.input_size + agent.core.hidden_size)
        make_hardware_aware(agent, trainable_lambda_range(cfg.card, cfg.dt_s, shape, cfg.calibration))
    options = {"card": cfg.card, "calibration": cfg.calibration, "seed": cfg.backend_seed, "dt_s": cfg.dt_s}
    backend = make_backend("aware", **{**options, **cfg.backend_options})  # refuses an unknown option
    assert isinstance(backend, AwareCrossbar)
    agent.core.set_backend(backend)


def _agent_data(
    agent: PongAgent, segments: int, beta: float, seed: int, cfg: TrainConfig, log: Log
) -> Segments:
    """One DAgger collection: the agent drives (the expert with probability ``beta``), the expert labels."""
    t1 = time.perf_counter()
    agent.eval()
    drive, reset = agent_driver(agent, beta, seed)
    chips = _chips_drawn(agent)
    if cfg.hardware_aware and cfg.collect_chip == "segment" and isinstance(agent.core, STPN):
        drive = new_chip_every(cfg.segment_len, agent.core, drive)
    new = collect(segments, cfg.segment_len, drive, seed=seed, reset_driver=reset, expert=_expert(cfg))
    agent.train()
    after = _chips_drawn(agent)
    on = "" if chips is None or after is None else f" on {after - chips} chip(s)"
    log(
        f"dagger (games from seed {seed}): +{new.steps} agent-driven steps{on} "
        f"({time.perf_counter() - t1:.0f} s)"
    )
    return new


def new_chip_every(steps: int, layer: STPN, drive: Driver) -> Driver:
    """``drive``, with ``layer`` re-programmed before every ``steps``-th step after the first (the aware
    backend draws a fresh chip at each program); the driver's state (h, F) carries over to the new chip."""
    played = [0]

    def wrapped(frame: np.ndarray, expert_action: int) -> int:
        if played[0] and played[0] % steps == 0:
            layer.set_backend(layer.crossbar)  # same backend: programmed (a new chip) at the next step
        played[0] += 1
        return drive(frame, expert_action)

    return wrapped


def _chips_drawn(agent: PongAgent) -> int | None:
    """Chips the agent's aware backend has drawn so far (None on any other backend)."""
    from hwloop.backends.aware import AwareCrossbar

    crossbar = agent.core.crossbar if isinstance(agent.core, STPN) else None
    return crossbar.chips_drawn if isinstance(crossbar, AwareCrossbar) else None


def _expert(cfg: TrainConfig) -> RamExpert:
    """The labelling expert of this run."""
    return RamExpert(offset=cfg.expert_offset, delay_cost=cfg.expert_delay_cost)


def _expert_data(cfg: TrainConfig, cache_dir: Path | None) -> Segments:
    """Collect the expert-driven data, or reuse it from ``cache_dir`` (it is deterministic per config)."""
    expert = f"off{cfg.expert_offset}-dc{cfg.expert_delay_cost}"
    name = f"expert-v2-{expert}-seed{cfg.seed}-{cfg.bc_segments}x{cfg.segment_len}-eps{cfg.epsilon}.npz"
    cached = cache_dir / name if cache_dir else None
    if cached and cached.is_file():
        return load_segments(cached)
    data = collect(
        cfg.bc_segments,
        cfg.segment_len,
        noisy_expert_driver(cfg.epsilon, cfg.seed),
        seed=cfg.seed,
        expert=_expert(cfg),
    )
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_segments(data, cached)
    return data


def _phase_done(
    agent: PongAgent,
    record: dict[str, object],
    data: Segments,
    t0: float,
    on_phase: Callable[[PongAgent, dict[str, object]], None] | None,
) -> None:
    record["data_steps"] = data.steps
    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    if on_phase:
        on_phase(agent, record)
