"""Pictures of a Pong evaluation: the game as a GIF with the score, and reward / energy per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from experiments.pong.env import PongEnv
from experiments.pong.evaluate import EpisodeTrace
from hwloop.errors import HwloopError

GIF_FRAME_MS = 66  # display time per kept frame (every ``every``-th agent step)


class GifRecorder:
    """Keeps every ``every``-th screen of episode 0 (at most ``max_frames``) with the running score drawn."""

    def __init__(self, every: int = 2, max_frames: int = 600) -> None:
        self.every = every
        self.max_frames = max_frames
        self.frames: list[Image.Image] = []
        self._step = 0

    def __call__(self, episode: int, env: PongEnv, score: float) -> None:
        """Frame hook for ``evaluate``."""
        if episode != 0 or len(self.frames) >= self.max_frames:
            return
        self._step += 1
        if self._step % self.every:
            return
        image = Image.fromarray(env.screen_rgb())
        ImageDraw.Draw(image).text((4, 196), f"agent - CPU: {score:+.0f}", fill=(255, 255, 255))
        self.frames.append(image)

    def save(self, path: Path) -> None:
        """Write the kept frames as a looping GIF."""
        if not self.frames:
            raise HwloopError("nothing to record: the evaluation played no steps")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frames[0].save(
            path, save_all=True, append_images=self.frames[1:], duration=GIF_FRAME_MS, loop=0, optimize=True
        )


def plot_traces(
    traces: list[EpisodeTrace], path: Path, title: str, gpu_j_per_step: dict[str, float] | None = None
) -> None:
    """Cumulative score, the synaptic energy metric and the device energy (J) per step, all episodes one
    after the other; ``gpu_j_per_step`` (name -> J per step) draws the GPU estimates as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_energy = all(t.energy is not None for t in traces)
    has_joules = all(t.joules is not None for t in traces)
    rows = 1 + has_energy + has_joules
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.5 + 2.2 * (rows - 1)), sharex=True, squeeze=False)
    start = 0
    for i, t in enumerate(traces):
        steps = np.arange(start, start + len(t.rewards))
        axes[0, 0].plot(steps, np.cumsum(t.rewards), lw=1, label=f"seed {t.seed}" if i < 10 else None)
        if has_energy:
            axes[1, 0].plot(steps, t.energy, lw=0.5)
        if has_joules:
            axes[rows - 1, 0].plot(steps, t.joules, lw=0.5, color="C0", label="device" if i == 0 else None)
        start += len(t.rewards)
    axes[0, 0].set_ylabel("score (agent - CPU)")
    axes[0, 0].axhline(0, color="grey", lw=0.5)
    axes[0, 0].set_title(title)
    if len(traces) > 1:
        axes[0, 0].legend(fontsize=6, ncol=5)
    if has_energy:
        axes[1, 0].set_ylabel(r"metric $\sum_{ij}|G_{ij}/n_i|z_j^2$")
    if has_joules:
        ax = axes[rows - 1, 0]
        for k, (name, joules) in enumerate((gpu_j_per_step or {}).items()):
            ax.axhline(joules, color=f"C{k + 1}", lw=1, ls="--", label=f"GPU {name}")
        ax.set_yscale("log")
        ax.set_ylabel("J per step")
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("agent step (4 frames), episodes in sequence")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
