"""Associative-retrieval sequences (Ba et al. 2016), as used in the STPN paper.

A sequence is three letter-digit pairs with distinct letters, then ``??``, then a query letter:
``c9k8j3??k`` -> answer ``8``. Each of the 9 symbols is one-hot over 37 symbols ordered
a-z (0-25), 0-9 (26-35), ``?`` (36); the answer is the class index of the paired digit.
"""

from __future__ import annotations

import string
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

ALPHABET = string.ascii_lowercase + string.digits + "?"
N_SYMBOLS = len(ALPHABET)  # 37
SEQ_LEN = 9
N_PAIRS = 3
QUERY_MARK = ALPHABET.index("?")
FIRST_DIGIT = ALPHABET.index("0")
Split = Literal["train", "val", "test"]
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}


class ARTBatch(NamedTuple):
    """xs: (N, 9, 37) float32 one-hot; ys: (N,) int64 class index of the answer digit."""

    xs: Tensor
    ys: Tensor


def split_generator(seed: int, split: Split) -> torch.Generator:
    """A torch generator for one data split, so train/val/test streams never coincide for a seed."""
    state = np.random.SeedSequence([seed, _SPLIT_INDEX[split]]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def make_symbols(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` sequences as symbol indices (n, 9) and their answers (n,), both int64."""
    letters = torch.rand(n, 26, generator=generator).argsort(dim=1)[:, :N_PAIRS]  # distinct per row
    digits = torch.randint(0, 10, (n, N_PAIRS), generator=generator) + FIRST_DIGIT
    which = torch.randint(0, N_PAIRS, (n, 1), generator=generator)
    pairs = torch.stack([letters, digits], dim=2).reshape(n, 2 * N_PAIRS)
    marks = torch.full((n, 2), QUERY_MARK, dtype=torch.int64)
    symbols = torch.cat([pairs, marks, letters.gather(1, which)], dim=1)
    return symbols, digits.gather(1, which).squeeze(1)


def make_batch(n: int, generator: torch.Generator) -> ARTBatch:
    """``n`` one-hot sequences (n, 9, 37) float32 with their answer class indices (n,)."""
    symbols, answers = make_symbols(n, generator)
    return ARTBatch(torch.nn.functional.one_hot(symbols, N_SYMBOLS).float(), answers)


def make_split(n: int, seed: int, split: Split) -> ARTBatch:
    """``n`` sequences of one split (train/val/test) drawn from the stream that ``seed`` names."""
    return make_batch(n, split_generator(seed, split))


def decode(symbols: Tensor) -> list[str]:
    """Symbol indices (n, T) -> strings, e.g. ``"c9k8j3??k"``."""
    return ["".join(ALPHABET[i] for i in row) for row in symbols.tolist()]
