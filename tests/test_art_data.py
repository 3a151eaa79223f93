"""ART data: answers checked by decoding each one-hot sequence independently of the generator."""

from __future__ import annotations

import math

import torch

from experiments.art.data import make_batch, make_split, split_generator

# Written out by hand (not imported): the symbol order a-z, 0-9, '?'.
SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789?"


def _decode(xs: torch.Tensor) -> list[str]:
    return ["".join(SYMBOLS[i] for i in row) for row in xs.argmax(dim=2).tolist()]


def test_one_hot_format() -> None:
    batch = make_batch(500, torch.Generator().manual_seed(1))
    assert batch.xs.shape == (500, 9, 37) and batch.xs.dtype == torch.float32
    assert batch.ys.shape == (500,) and batch.ys.dtype == torch.int64
    assert set(batch.xs.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch.xs.sum(dim=2), torch.ones(500, 9))


def test_answers_are_the_digit_paired_with_the_query_letter() -> None:
    batch = make_batch(2000, torch.Generator().manual_seed(2))
    for text, y in zip(_decode(batch.xs), batch.ys.tolist(), strict=True):
        letters, digits, marks, query = text[0:6:2], text[1:6:2], text[6:8], text[8]
        assert all(c.isalpha() for c in letters) and all(c.isdigit() for c in digits), text
        assert marks == "??", text
        assert len(set(letters)) == 3, f"letters repeat in {text}"
        assert query in letters, text
        assert SYMBOLS[y] == dict(zip(letters, digits, strict=True))[query], text


def test_queries_and_answers_cover_their_ranges_evenly() -> None:
    texts = _decode(make_batch(30_000, torch.Generator().manual_seed(3)).xs)
    position = torch.tensor([t[0:6:2].index(t[8]) for t in texts])
    answer = torch.tensor([int(t[1:6:2][t[0:6:2].index(t[8])]) for t in texts])
    letters = torch.tensor([SYMBOLS.index(c) for t in texts for c in t[0:6:2]])
    for values, k in ((position, 3), (answer, 10), (letters, 26)):
        counts = torch.bincount(values, minlength=k).double()
        expected = len(values) / k
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert len(counts) == k
        # chi-square with k-1 dof: mean k-1, sd sqrt(2(k-1)); 6 sd is never reached by a fair draw
        assert chi2 < (k - 1) + 6 * math.sqrt(2 * (k - 1)), (k, counts.tolist())


def test_seeding_reproduces_and_splits_differ() -> None:
    a, b = make_split(300, 7, "train"), make_split(300, 7, "train")
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
    test, other_seed = make_split(300, 7, "test"), make_split(300, 8, "train")
    same_rows = (a.xs == test.xs).all(dim=(1, 2)).float().mean()
    assert same_rows < 0.05 and not torch.equal(a.xs, other_seed.xs)
    g1, g2 = split_generator(0, "train"), split_generator(0, "val")
    assert g1.initial_seed() != g2.initial_seed()
