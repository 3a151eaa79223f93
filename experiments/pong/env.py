"""The Pong environment as the agent sees it: ALE/Pong-v5, frame skip 4, one 84x84 grayscale frame.

No frame stacking: the agent gets a single frame per step, so motion must be carried by its memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from hwloop.errors import HwloopError

ENV_ID = "ALE/Pong-v5"
FRAME_SKIP = 4  # emulator frames per agent step
FRAME_RATE_HZ = 60  # the Atari 2600 emulator's frame rate
STEP_S = FRAME_SKIP / FRAME_RATE_HZ  # s of real time per agent step (1/15 s): the backends' dt_s
STICKY = 0.25  # ALE v5 default probability of repeating the previous action
OBS_SIZE = 84  # pixels, square
N_ACTIONS = 6  # Pong's minimal action set: NOOP, FIRE, RIGHT(up), LEFT(down), RIGHTFIRE, LEFTFIRE


class PongUnavailable(HwloopError):
    """gymnasium, ale-py or the Pong ROM cannot be loaded."""


@cache
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of area-averaging n_in pixels into n_out: each output averages its footprint."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        for i in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            m[o, i] = min(hi, i + 1) - max(lo, i)
    return m / scale


def preprocess(gray: np.ndarray) -> np.ndarray:
    """A (210, 160) uint8 grayscale screen -> (84, 84) uint8 by area averaging (as OpenCV INTER_AREA)."""
    # torch rather than numpy: numpy's BLAS spawns threads that crawl on a shared, loaded machine
    rows = torch.from_numpy(_area_matrix(gray.shape[0], OBS_SIZE))
    cols = torch.from_numpy(_area_matrix(gray.shape[1], OBS_SIZE))
    out = rows @ torch.from_numpy(gray).float() @ cols.T
    return out.round_().clamp_(0, 255).to(torch.uint8).numpy()


@dataclass
class StepResult:
    """One agent step: the next 84x84 frame, reward summed over the skipped frames, and episode end."""

    obs: np.ndarray
    reward: float
    done: bool


class PongEnv:
    """ALE Pong with frame skip 4 and sticky actions; observations are preprocessed 84x84 uint8 frames.

    ``ram()`` exposes the console RAM for the scripted expert; ``screen_rgb()`` the full colour frame
    for recordings.
    """

    def __init__(self, *, sticky: float = STICKY, seed: int = 0, env_id: str = ENV_ID) -> None:
        try:
            import ale_py
            import gymnasium as gym

            gym.register_envs(ale_py)
            self._env = gym.make(
                env_id,
                frameskip=FRAME_SKIP,
                repeat_action_probability=sticky,
                obs_type="grayscale",
                full_action_space=False,
            )
        except ImportError as exc:
            raise PongUnavailable(f"Pong needs gymnasium and ale-py>=0.12 installed: {exc}") from exc
        except Exception as exc:  # gymnasium raises its own error types for a missing env or ROM
            raise PongUnavailable(f"cannot create {env_id} (is its ROM in ale-py?): {exc}") from exc
        self._seed = seed
        self._ale = self._env.unwrapped.ale  # type: ignore[attr-defined]

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode (seeded by ``seed`` or the constructor's seed) and return the first frame."""
        gray, _ = self._env.reset(seed=self._seed if seed is None else seed)
        return preprocess(gray)

    def step(self, action: int) -> StepResult:
        """Act for FRAME_SKIP emulator frames."""
        gray, reward, terminated, truncated, _ = self._env.step(int(action))
        return StepResult(preprocess(gray), float(reward), bool(terminated or truncated))

    def ram(self) -> np.ndarray:
        """The 128-byte console RAM."""
        return self._ale.getRAM()

    def screen_rgb(self) -> np.ndarray:
        """The current (210, 160, 3) colour screen."""
        return self._ale.getScreenRGB()

    def close(self) -> None:
        """Release the emulator."""
        self._env.close()
