"""ART checkpoints as safetensors: tensors plus a few metadata strings naming the architecture.

Loading never unpickles; it validates the format tag, the architecture, every tensor name and shape,
and that values are finite, and reports any mismatch as one ``CheckpointError`` line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from experiments.art.model import ARCHS, ARTModel
from hwloop.errors import CheckpointError

FORMAT_TAG = "hwloop-art/1"


def save_checkpoint(model: ARTModel, path: Path) -> None:
    """Write ``model``'s parameters and architecture to ``path`` (safetensors)."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    meta = {"format": FORMAT_TAG, "arch": model.arch, "hidden_size": str(model.hidden_size)}
    if model.arch == "stpn" and model.stpn.lambda_range is not None:
        meta["lambda_range"] = ",".join(repr(v) for v in model.stpn.lambda_range)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def load_model(path: str | Path) -> ARTModel:
    """Load an ART model (STPN or LSTM) from a safetensors checkpoint, in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            model = _model_for(path, f.metadata() or {})
            expected = model.state_dict()
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
            _check_layout(path, model.label, expected, shapes)  # before reading any tensor data
            tensors = {name: f.get_tensor(name) for name in expected}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        reason = " ".join(str(exc).split())
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file (corrupted?): {reason}"
        ) from None
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {path}: tensor {name!r} holds non-finite values (corrupted?)")
    model.load_state_dict({name: tensors[name].to(want.dtype) for name, want in expected.items()})
    return model.eval()


def _check_layout(
    path: Path, label: str, expected: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]
) -> None:
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match a {label} ART model: "
            f"missing tensors {missing}, unexpected tensors {unexpected}"
        )
    for name, want in expected.items():
        if shapes[name] != tuple(want.shape):
            raise CheckpointError(
                f"checkpoint {path}: tensor {name!r} has shape {shapes[name]}, "
                f"expected {tuple(want.shape)} for {label}"
            )


def _model_for(path: Path, meta: dict[str, str]) -> ARTModel:
    if meta.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"checkpoint {path} is not an hwloop ART checkpoint (format tag {FORMAT_TAG!r} absent)"
        )
    arch, hidden = meta.get("arch", ""), meta.get("hidden_size", "")
    if arch not in ARCHS or not hidden.isdigit() or int(hidden) < 1:
        raise CheckpointError(
            f"checkpoint {path} names an unknown architecture (arch={arch!r}, hidden_size={hidden!r}); "
            f"expected arch in {list(ARCHS)} and a positive hidden_size"
        )
    lambda_range = _lambda_range(path, meta.get("lambda_range"))
    return ARTModel(arch, int(hidden), lambda_range=lambda_range)  # type: ignore[arg-type]  # arch checked


def _lambda_range(path: Path, text: str | None) -> tuple[float, float] | None:
    """The bounded-lambda range of a hardware-aware checkpoint ("lo,hi"), or None (free lambda)."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise CheckpointError(
            f"checkpoint {path}: lambda_range {text!r} is not two numbers 'lo,hi'"
        ) from None
    if not 0.0 < lo < hi <= 1.0:
        raise CheckpointError(f"checkpoint {path}: lambda_range {text!r} is not 0 < lo < hi <= 1")
    return lo, hi
