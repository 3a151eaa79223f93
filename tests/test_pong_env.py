"""The Pong environment wrapper against the raw emulator and an independent area-resampling."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py")

import ale_py
import gymnasium as gym

from experiments.pong.env import FRAME_SKIP, OBS_SIZE, PongEnv, PongUnavailable, preprocess

gym.register_envs(ale_py)


def area_resample(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Each output pixel = mean of the input over its rectangle, by explicit rectangle overlaps."""
    h, w = img.shape
    sy, sx = h / out_h, w / out_w
    out = np.zeros((out_h, out_w))
    for oy in range(out_h):
        y0, y1 = oy * sy, (oy + 1) * sy
        for ox in range(out_w):
            x0, x1 = ox * sx, (ox + 1) * sx
            acc = 0.0
            for iy in range(int(y0), min(int(np.ceil(y1)), h)):
                wy = min(y1, iy + 1) - max(y0, iy)
                for ix in range(int(x0), min(int(np.ceil(x1)), w)):
                    acc += wy * (min(x1, ix + 1) - max(x0, ix)) * img[iy, ix]
            out[oy, ox] = acc / (sy * sx)
    return out


def test_preprocess_is_area_averaging() -> None:
    rng = np.random.default_rng(0)
    screen = rng.integers(0, 256, size=(210, 160), dtype=np.uint8)
    got = preprocess(screen)
    assert got.shape == (OBS_SIZE, OBS_SIZE) and got.dtype == np.uint8
    assert np.abs(got.astype(float) - area_resample(screen, OBS_SIZE, OBS_SIZE)).max() <= 0.5 + 1e-6


def test_preprocess_keeps_a_flat_screen_flat() -> None:
    assert (preprocess(np.full((210, 160), 87, dtype=np.uint8)) == 87).all()


def test_one_step_is_four_emulator_frames_of_the_same_action() -> None:
    env = PongEnv(sticky=0.0, seed=3)
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, obs_type="grayscale")
    first = env.reset(seed=3)
    raw_obs, _ = raw.reset(seed=3)
    assert first.shape == (OBS_SIZE, OBS_SIZE) and first.dtype == np.uint8
    assert (first == preprocess(raw_obs)).all()
    actions = [0, 2, 2, 3, 0, 3, 2, 0] * 10
    for a in actions:
        step = env.step(a)
        reward = 0.0
        for _ in range(FRAME_SKIP):
            raw_obs, r, *_ = raw.step(a)
            reward += float(r)
        assert step.reward == reward
        assert (step.obs == preprocess(raw_obs)).all()
        assert (env.ram() == raw.unwrapped.ale.getRAM()).all()  # type: ignore[attr-defined]
    raw.close()
    env.close()


def test_a_missing_game_is_one_clear_error() -> None:
    with pytest.raises(PongUnavailable, match="NoSuchGame"):
        PongEnv(env_id="ALE/NoSuchGame-v5")
