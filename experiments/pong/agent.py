"""The Pong agent of the STPN paper: conv 16@8x8/4 -> conv 32@4x4/2 -> 2592 -> recurrent core -> heads.

The core is ``hwloop.stpn.STPN`` (64 units: 64 x 2656 plastic synapses) or, as the paper's baseline,
an LSTM. Frames are (B, T, 84, 84) uint8; outputs are policy logits over the 6 Pong actions and values.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from experiments.pong.env import N_ACTIONS, OBS_SIZE
from hwloop.crossbar import Crossbar
from hwloop.errors import CheckpointError
from hwloop.stpn import STPN

FEATURES = 32 * 9 * 9  # conv output for an 84x84 frame
ARCH = "pong-agent-v1"
CORES = ("stpn", "lstm")
COURT_GRAY = 87.0  # grey level of Pong's empty court in ALE's grayscale screen
CONTRAST = 64.0  # grey levels per input unit: paddles and ball land at ~1-2.3, the court at 0

AgentState = tuple[Tensor, Tensor]  # STPN: (h (B,H), F (B,H,K)); LSTM: (h (1,B,H), c (1,B,H))


class AgentOutput(NamedTuple):
    """logits (B, T, 6), values (B, T), the final recurrent state, and energy metric (B, T) or None."""

    logits: Tensor
    values: Tensor
    state: AgentState
    energy: Tensor | None


class PongAgent(nn.Module):
    """Pixels-to-actions recurrent agent; ``core`` is "stpn" or "lstm", ``hidden`` its unit count."""

    def __init__(
        self,
        core: str = "stpn",
        hidden: int = 64,
        backend: str | Crossbar = "ideal",
        lambda_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if core not in CORES:
            raise CheckpointError(f"unknown agent core {core!r}; expected one of {', '.join(CORES)}")
        self.core_name = core
        self.hidden = hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.core: nn.Module = (
            STPN(FEATURES, hidden, backend=backend, lambda_range=lambda_range)
            if core == "stpn"
            else nn.LSTM(FEATURES, hidden, batch_first=True)
        )
        self.policy = nn.Linear(hidden, N_ACTIONS)
        self.value = nn.Linear(hidden, 1)

    def encode(self, frames: Tensor) -> Tensor:
        """(B, T, 84, 84) uint8 frames -> (B, T, 2592) features; the court is mapped to 0.

        Centring on the court grey makes the few paddle and ball pixels the only non-zero input,
        which is what lets imitation learn from them within a CPU budget.
        """
        b, t = frames.shape[:2]
        x = (frames.reshape(b * t, 1, OBS_SIZE, OBS_SIZE).float() - COURT_GRAY) / CONTRAST
        return self.encoder(x).reshape(b, t, FEATURES)

    def initial_state(self, batch_size: int) -> AgentState:
        """The recurrent state at rest for ``batch_size`` games."""
        if isinstance(self.core, STPN):
            return self.core.initial_state(batch_size)
        zeros = self.policy.weight.new_zeros(1, batch_size, self.hidden)
        return zeros, zeros.clone()

    def forward(
        self, frames: Tensor, state: AgentState | None = None, *, energy: bool = False
    ) -> AgentOutput:
        """Run (B, T, 84, 84) uint8 frames from ``state`` (rest if None); energy only for the STPN core."""
        if frames.dim() != 4 or tuple(frames.shape[2:]) != (OBS_SIZE, OBS_SIZE):
            raise CheckpointError(f"agent expects frames (B, T, 84, 84), got {tuple(frames.shape)}")
        feats = self.encode(frames)
        state = self.initial_state(frames.shape[0]) if state is None else state
        e = None
        if isinstance(self.core, STPN):
            run = self.core.run(feats, state, energy=energy)
            hs, state, e = run.hs, run.state, run.energy
        else:
            hs, state = self.core(feats, state)
        return AgentOutput(self.policy(hs), self.value(hs).squeeze(-1), state, e)


def detach_state(state: AgentState) -> AgentState:
    """The same state cut from the autograd graph (truncated BPTT)."""
    return state[0].detach(), state[1].detach()


def save_agent(agent: PongAgent, path: Path) -> None:
    """Write the agent's weights and architecture as a safetensors checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in agent.state_dict().items()}
    meta = {"arch": ARCH, "core": agent.core_name, "hidden": str(agent.hidden)}
    if isinstance(agent.core, STPN) and agent.core.lambda_range is not None:  # hardware-aware agent
        meta["lambda_range"] = ",".join(repr(v) for v in agent.core.lambda_range)
    save_file(tensors, str(path), metadata=meta)


def load_agent(path: Path, backend: str | Crossbar = "ideal") -> PongAgent:
    """Load a checkpoint written by ``save_agent``; refuse files of another architecture in one line."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    if meta.get("arch") != ARCH or meta.get("core") not in CORES or not meta.get("hidden", "").isdigit():
        raise CheckpointError(f"{path} is not a Pong agent checkpoint (metadata {meta or 'missing'})")
    agent = PongAgent(
        meta["core"], int(meta["hidden"]), backend=backend, lambda_range=_lambda_range(path, meta)
    )
    expected = {k: tuple(v.shape) for k, v in agent.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        wrong = sorted(set(expected.items()) ^ set(got.items()))[:2]
        raise CheckpointError(
            f"{path} does not match the {meta['core']}-{meta['hidden']} Pong agent: {wrong}"
        )
    agent.load_state_dict(tensors)
    return agent


def _lambda_range(path: Path, meta: dict[str, str]) -> tuple[float, float] | None:
    """The bounded-lambda range of a hardware-aware agent ("lo,hi" in the metadata), or None."""
    text = meta.get("lambda_range")
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise CheckpointError(f"{path}: lambda_range {text!r} is not two numbers 'lo,hi'") from None
    if not 0.0 < lo < hi <= 1.0:
        raise CheckpointError(f"{path}: lambda_range {text!r} is not 0 < lo < hi <= 1")
    return lo, hi


def make_hardware_aware(agent: PongAgent, lambda_range: tuple[float, float]) -> None:
    """Give the agent's STPN a lambda bounded to ``lambda_range`` (``STPN.bounded_copy``), in place."""
    if not isinstance(agent.core, STPN):
        raise CheckpointError("only an STPN agent can be made hardware-aware")
    agent.core = agent.core.bounded_copy(lambda_range)
