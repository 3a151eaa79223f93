"""Imitation data: play Pong with some driver while the RAM expert labels every step.

The stream of steps is cut into fixed-length segments of consecutive frames (games follow each other
inside the stream), the unit of truncated-BPTT training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.pong.env import OBS_SIZE, PongEnv
from experiments.pong.expert import RamExpert

Driver = Callable[[np.ndarray, int], int]  # (frame (84, 84) uint8, expert's action) -> action to play


@dataclass
class Segments:
    """frames (N, S, 84, 84) uint8, expert labels (N, S) int64 and the expert's steps until the ball
    reaches the paddle (N, S) float32 (``NO_HIT`` while none approaches): N segments of S steps."""

    frames: np.ndarray
    labels: np.ndarray
    steps_to_hit: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def steps(self) -> int:
        """Total agent steps held."""
        return int(self.labels.size)

    def concat(self, other: Segments) -> Segments:
        """Both datasets together (DAgger aggregation)."""
        return Segments(
            np.concatenate([self.frames, other.frames]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.steps_to_hit, other.steps_to_hit]),
        )

    def pick(self, index: np.ndarray) -> Segments:
        """The segments at ``index`` (in that order)."""
        return Segments(self.frames[index], self.labels[index], self.steps_to_hit[index])


def collect(
    n_segments: int,
    segment_len: int,
    driver: Driver,
    *,
    seed: int,
    reset_driver: Callable[[], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    expert: RamExpert | None = None,
) -> Segments:
    """Play ``n_segments * segment_len`` steps with ``driver``; label each frame with the expert's action.

    The expert watches every step (it tracks the ball from the RAM), whoever drives. Games are seeded
    ``seed``, ``seed + 1``, ...; ``reset_driver`` is called at each game start. ``expert`` is the
    labeller (a default ``RamExpert`` if None).
    """
    total = n_segments * segment_len
    frames = np.empty((total, OBS_SIZE, OBS_SIZE), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    to_hit = np.empty(total, dtype=np.float32)
    env, expert = PongEnv(seed=seed), expert or RamExpert()
    game = 0
    frame = env.reset(seed=seed)
    if reset_driver:
        reset_driver()
    for t in range(total):
        label = expert.act(env.ram())
        frames[t], labels[t], to_hit[t] = frame, label, expert.steps_to_hit
        result = env.step(driver(frame, label))
        frame = result.obs
        if result.done:
            game += 1
            frame = env.reset(seed=seed + game)
            expert.reset()
            if reset_driver:
                reset_driver()
        if on_step:
            on_step(t)
    env.close()
    shape = (n_segments, segment_len)
    return Segments(frames.reshape(*shape, OBS_SIZE, OBS_SIZE), labels.reshape(shape), to_hit.reshape(shape))


def noisy_expert_driver(epsilon: float, seed: int) -> Driver:
    """Play the expert's action, or with probability ``epsilon`` a uniformly random one of 0, 2, 3."""
    rng = np.random.default_rng(seed)

    def drive(frame: np.ndarray, expert_action: int) -> int:
        return int(rng.choice([0, 2, 3])) if rng.random() < epsilon else expert_action

    return drive


def save_segments(data: Segments, path: Path) -> None:
    """Store as an uncompressed .npz (uint8 frames)."""
    np.savez(path, frames=data.frames, labels=data.labels, steps_to_hit=data.steps_to_hit)


def load_segments(path: Path) -> Segments:
    """Read a dataset written by ``save_segments``."""
    with np.load(path) as z:
        return Segments(z["frames"], z["labels"], z["steps_to_hit"])
