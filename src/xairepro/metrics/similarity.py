"""Similarity rate of example importance (Crabbé & van der Schaar 2022, Section 4.1).

For each K: the share of a test example's K most (least) important training examples that carry the
test example's label, averaged over test examples.  Most should exceed Least when the scores find
related examples; at K = n_train both equal the mean frequency of the test labels among the training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from xairepro.errors import UsageError

#: Shares of the training set selected in the original study (5 % ... 100 %).
DEFAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.5, 0.7, 1.0)

__all__ = ["similarity_rates", "ks_from_fractions", "DEFAULT_FRACTIONS"]


def ks_from_fractions(n_train: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[int]:
    """K = int(fraction · n_train) for each fraction (at least 1), as the original study selected them."""
    if n_train < 1:
        raise UsageError(f"n_train must be >= 1, got {n_train}")
    out = []
    for f in fractions:
        if not 0 < float(f) <= 1:
            raise UsageError(f"fractions must be in (0, 1], got {f}")
        out.append(max(1, int(float(f) * n_train)))
    return out


def _labels(y: Tensor | Sequence[int], what: str) -> Tensor:
    t = torch.as_tensor(y)
    if t.dim() != 1:
        raise UsageError(f"{what} must be a 1-D tensor of labels, got shape {tuple(t.shape)}")
    return t


def similarity_rates(scores: Tensor, y_train: Tensor | Sequence[int], y_test: Tensor | Sequence[int],
                     ks: Sequence[int], *, reduction: Literal["mean", "none"] = "mean") -> dict[str, Tensor]:
    """{"most": (len(ks),), "least": (len(ks),)} similarity rates of ``scores`` (n_test, n_train).

    Higher score = more important.  Ranking: stable descending sort (ties by training index); the
    Least ranking is its reverse.  ``reduction="none"`` returns (len(ks), n_test) per-test-example rates.
    """
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise UsageError(f"scores must be a (n_test, n_train) tensor, got {shape}")
    n_test, n_train = scores.shape
    if n_train == 0 or n_test == 0:
        raise UsageError(f"scores has shape {(n_test, n_train)}: need at least one test and one training example")
    y_train_t = _labels(y_train, "y_train").to(scores.device)
    y_test_t = _labels(y_test, "y_test").to(scores.device)
    if y_train_t.shape[0] != n_train:
        raise UsageError(f"y_train has {y_train_t.shape[0]} labels but scores has {n_train} training columns")
    if y_test_t.shape[0] != n_test:
        raise UsageError(f"y_test has {y_test_t.shape[0]} labels but scores has {n_test} test rows")
    if torch.isnan(scores).any():
        raise UsageError("scores contain NaN")
    if reduction not in ("mean", "none"):
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    ks = [int(k) for k in ks]
    if not ks:
        raise UsageError("ks is empty: give at least one K")
    bad = [k for k in ks if not 1 <= k <= n_train]
    if bad:
        raise UsageError(f"every K must be in 1..n_train = {n_train}, got {bad}")
    same = (y_test_t[:, None] == y_train_t[None, :]).to(torch.float64)        # (n_test, n_train)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)          # most important first
    ranked = torch.gather(same, 1, order)
    k_index = torch.tensor(ks, device=scores.device) - 1
    most = ranked.cumsum(1)[:, k_index] / k_index.add(1)                        # (n_test, len(ks))
    least = ranked.flip(1).cumsum(1)[:, k_index] / k_index.add(1)
    if reduction == "none":
        return {"most": most.T.float(), "least": least.T.float()}
    return {"most": most.mean(0).float(), "least": least.mean(0).float()}
