"""Associative retrieval (Ba et al. 2016) with an STPN, as in the STPN paper.

``from experiments.art import load_model; logits = load_model(path)(xs)`` with xs (B, 9, 37).
"""

from pathlib import Path

from experiments.art.checkpoint import load_model, save_checkpoint
from experiments.art.model import ARTModel

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "stpn11.safetensors"

__all__ = ["DEFAULT_CHECKPOINT", "ARTModel", "load_model", "save_checkpoint"]
