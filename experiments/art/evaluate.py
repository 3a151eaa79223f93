"""Accuracy of an ART model on fresh sequences."""

from __future__ import annotations

from collections.abc import Callable

import torch

from experiments.art.data import ARTBatch, make_split
from experiments.art.model import ARTModel

EVAL_BATCH = 2000  # sequences per forward pass: bounds memory (F is B x 11 x 48 per step)
TEST_SIZE = 20_000  # as Ba et al. 2016
TEST_SEED = 0


@torch.no_grad()
def accuracy(
    model: ARTModel,
    batch: ARTBatch,
    *,
    batch_size: int = EVAL_BATCH,
    on_chunk: Callable[[int], None] | None = None,
) -> float:
    """Fraction of ``batch`` whose arg-max logit is the answer; ``on_chunk(k)`` after each k sequences."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(batch.ys), batch_size):
        logits = model(batch.xs[start : start + batch_size])
        answers = batch.ys[start : start + batch_size]
        correct += int((logits.argmax(dim=1) == answers).sum())
        if on_chunk is not None:
            on_chunk(len(answers))
    model.train(was_training)
    return correct / len(batch.ys)


def fresh_accuracy(
    model: ARTModel,
    n: int = TEST_SIZE,
    seed: int = TEST_SEED,
    *,
    on_chunk: Callable[[int], None] | None = None,
) -> float:
    """Accuracy on ``n`` fresh sequences of the test stream named by ``seed`` (never used in training)."""
    return accuracy(model, make_split(n, seed, "test"), on_chunk=on_chunk)
