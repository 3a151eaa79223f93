"""Evaluate a Pong agent: greedy play over seeded sticky-action games, score and synaptic energy per step."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from experiments.pong.agent import AgentState, PongAgent
from experiments.pong.env import STEP_S, STICKY, PongEnv
from hwloop.stpn import STPN

FrameHook = Callable[[int, PongEnv, float], None]  # (episode, env after the step, score so far)


class EpisodeTrace(BaseModel):
    """Per-step reward (+1 player point, -1 CPU point) and synaptic energy metric (None for an LSTM);
    ``joules`` the backend's physical energy per step (J, None without counters) and ``counters`` its
    per-game totals by kind (read_j, program_j, bias_j)."""

    seed: int
    rewards: list[float]
    energy: list[float] | None
    joules: list[float] | None = None
    counters: dict[str, float] | None = None


class EvalResult(BaseModel):
    """Scores of greedy play; energy is the STPN paper's metric sum_ij |G_ij/n_i| z_j^2 (per step, summed
    per episode), None for a core without synapses (LSTM).

    ``anomalous_rewards`` lists steps whose reward is not a single point. Measured here: a game still
    running at agent step 16302 (emulator frame ~65,200) is stopped by the ROM: the ball vanishes
    mid-court, the CPU's score in RAM becomes 1, and nothing moves until ALE truncates the episode at
    27,000 steps. ALE derives the reward from the RAM scoreboard, so the CPU's score dropping from,
    say, 13 to 1 reads as one "+12". That is not earned play: ``earned_scores`` count single points
    only, and a game must be won before step 16302 to reach its full score.
    """

    core: str
    backend: str
    sticky: float
    seeds: list[int]
    scores: list[float]
    mean_score: float
    earned_scores: list[float]  # single-point rewards only
    mean_earned_score: float
    steps: int
    steps_per_episode: list[int]
    steps_per_second: float
    energy: dict[str, float | list[float]] | None
    energy_joules: dict[str, Any] | None = None  # device physics and GPU estimate (hwloop.energy)
    anomalous_rewards: list[list[tuple[int, float]]]  # per episode (step, reward) with |reward| > 1


def step_seconds(checkpoint: Path) -> float:
    """Seconds of real time per agent step for ``checkpoint``: its record's ``dt_s`` if it states one
    (top level or under ``config``), else one agent step of the game, 4 frames at 60 Hz = 1/15 s."""
    record_path = checkpoint.with_suffix(".json")
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return STEP_S
        for where in (record, record.get("config") or {}):
            dt = where.get("dt_s") if isinstance(where, dict) else None
            if isinstance(dt, int | float) and dt > 0:
                return float(dt)
    return STEP_S


def earned_score(rewards: list[float]) -> float:
    """Points won minus points lost, counting only single-point rewards (not scoreboard glitches)."""
    return float(sum(r for r in rewards if abs(r) <= 1))


Meter = Callable[[], dict[str, float]]  # a backend's energy counters (J) since its last reset


def play_episode(
    agent: PongAgent,
    env: PongEnv,
    seed: int,
    episode: int,
    on_frame: FrameHook | None,
    meter: Meter | None = None,
) -> EpisodeTrace:
    """One greedy game from ``seed``; the agent's memory starts at rest. ``meter`` (the backend's
    ``energy``) is read after every step for the physical joules per step."""
    frame = env.reset(seed=seed)
    state: AgentState | None = None
    want_energy = agent.core_name == "stpn"
    rewards: list[float] = []
    energy: list[float] = []
    joules: list[float] = []
    start = dict(meter()) if meter else {}
    last = sum(start.values())
    score = 0.0
    with torch.no_grad():
        while True:
            out = agent(torch.from_numpy(frame)[None, None], state, energy=want_energy)
            state = out.state
            if out.energy is not None:
                energy.append(float(out.energy[0, 0]))
            if meter:
                total = sum(meter().values())
                joules.append(total - last)
                last = total
            step = env.step(int(out.logits[0, -1].argmax()))
            rewards.append(step.reward)
            score += step.reward
            if on_frame:
                on_frame(episode, env, score)
            if step.done:
                end = meter() if meter else {}
                return EpisodeTrace(
                    seed=seed,
                    rewards=rewards,
                    energy=energy if want_energy else None,
                    joules=joules if end else None,
                    counters={k: v - start.get(k, 0.0) for k, v in end.items()} if end else None,
                )
            frame = step.obs


def evaluate(
    agent: PongAgent,
    episodes: int,
    seed: int,
    *,
    backend: str,
    sticky: float = STICKY,
    on_frame: FrameHook | None = None,
    on_episode: Callable[[int, EpisodeTrace], None] | None = None,
    dt_s: float = STEP_S,
) -> tuple[EvalResult, list[EpisodeTrace]]:
    """Play ``episodes`` games seeded ``seed``, ``seed + 1``, ...; returns the summary and per-step traces.

    ``dt_s``: real seconds per agent step, which sets each game's duration in the energy summary.
    """
    agent.eval()
    env = PongEnv(sticky=sticky, seed=seed)
    traces: list[EpisodeTrace] = []
    meter = agent.core.crossbar.energy if isinstance(agent.core, STPN) else None
    t0 = time.perf_counter()
    try:
        for i in range(episodes):
            traces.append(play_episode(agent, env, seed + i, i, on_frame, meter))
            if on_episode:
                on_episode(i, traces[-1])
    finally:
        env.close()
    wall = time.perf_counter() - t0
    scores = [float(sum(t.rewards)) for t in traces]
    earned = [earned_score(t.rewards) for t in traces]
    lengths = [len(t.rewards) for t in traces]
    energy: dict[str, float | list[float]] | None = None
    if all(t.energy is not None for t in traces):
        per_episode = [float(np.sum(t.energy)) for t in traces]  # type: ignore[arg-type]
        energy = {
            "per_step_mean": float(sum(per_episode) / sum(lengths)),
            "per_episode": per_episode,
        }
    energy_joules: dict[str, Any] | None = None
    if isinstance(agent.core, STPN):
        from hwloop.energy import device_energy_summary, gpu_energy_summary

        counters = [t.counters or {} for t in traces]
        energy_joules = {
            "device": device_energy_summary(counters, lengths, dt_s, backend),
            "gpu": gpu_energy_summary(agent.hidden, agent.core.input_size + agent.hidden, lengths),
        }
    result = EvalResult(
        core=agent.core_name,
        backend=backend,
        sticky=sticky,
        seeds=[seed + i for i in range(episodes)],
        scores=scores,
        mean_score=float(np.mean(scores)),
        earned_scores=earned,
        mean_earned_score=float(np.mean(earned)),
        steps=sum(lengths),
        steps_per_episode=lengths,
        steps_per_second=sum(lengths) / wall,
        energy=energy,
        energy_joules=energy_joules,
        anomalous_rewards=[[(i, r) for i, r in enumerate(t.rewards) if abs(r) > 1] for t in traces],
    )
    return result, traces
