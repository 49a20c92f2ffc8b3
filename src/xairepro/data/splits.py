"""Deterministic train/val/test splits and subsets, drawn from ``seed`` with a local generator.

Two patterns:

- official train/test files: validation is carved from the training files
  (:func:`carve`), the test split is the official test file;
- one pool (bundled, generated, ECG5000, dSprites): test first, then validation from the rest
  (:func:`three_way`).

Index lists come back sorted (file order), so a split is a set, not an order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xairepro.errors import UsageError
from xairepro.utils import derive_seed, make_generator

__all__ = ["SPLITS", "check_split", "resolve_count", "carve", "three_way", "take_subset"]

SPLITS = ("train", "val", "test")


def check_split(split: str) -> str:
    """``split`` itself, or :class:`UsageError` listing the valid splits."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def resolve_count(size: int | float, n: int, what: str) -> int:
    """A size given as a count (int >= 0) or a fraction (0 <= float < 1) of ``n``, as a count <= ``n``."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise UsageError(f"{what} must be a count or a fraction, got {size!r}")
    if isinstance(size, float) and 0.0 <= size < 1.0:
        count = int(round(size * n))
    elif isinstance(size, float) and not size.is_integer():
        raise UsageError(f"{what}={size} must be a count or a fraction in [0, 1)")
    else:
        count = int(size)
    if count < 0 or count > n:
        raise UsageError(f"{what}={size} does not fit {n} examples")
    return count


def _perm(n: int, seed: int, *keys: object) -> Tensor:
    return torch.randperm(n, generator=make_generator(derive_seed(seed, *keys)))


def carve(n_train_files: int, val_size: int | float, seed: int, key: str) -> tuple[Tensor, Tensor]:
    """(train, val) indices into the training files: ``val_size`` examples drawn by ``seed``."""
    n_val = resolve_count(val_size, n_train_files, "val_size")
    perm = _perm(n_train_files, seed, key, "val")
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def three_way(n: int, test_size: int | float, val_size: int | float, seed: int,
              key: str) -> tuple[Tensor, Tensor, Tensor]:
    """(train, val, test) indices of one pool: test first, then validation from the remainder.

    ``val_size`` as a fraction is a fraction of what is left after the test split.
    """
    n_test = resolve_count(test_size, n, "test_size")
    perm = _perm(n, seed, key, "test")
    test, rest = perm[:n_test], perm[n_test:]
    n_val = resolve_count(val_size, rest.numel(), "val_size")
    order = _perm(rest.numel(), seed, key, "val")
    rest = rest[order]
    return rest[n_val:].sort().values, rest[:n_val].sort().values, test.sort().values


def take_subset(indices: Tensor, subset: int | float | None, seed: int, key: str) -> Tensor:
    """A seeded random subset of ``indices`` (count or fraction), kept in file order; ``None``: all."""
    if subset is None:
        return indices
    k = resolve_count(subset, indices.numel(), "subset")
    if k == 0:
        raise UsageError("subset must keep at least one example")
    pick = _perm(indices.numel(), seed, key, "subset")[:k]
    return indices[pick.sort().values]
