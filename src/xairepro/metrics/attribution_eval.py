"""Ground truth for training-data attribution: linear datamodeling score, corrupted-example detection.

Convention (every example-importance method of ``xairepro.explain``): scores (n_test, n_train),
score[i, j] > 0 = training example j supports test example i: with j in the training set, test i's
output is higher (its loss lower).

- Linear datamodeling score (LDS, Park et al. 2023): M seeded random subsets S_m of the training set,
  each holding round(α·n) examples; a model retrained on each; for every test example i, the Spearman
  correlation over m between the predicted output sum_{j in S_m} score[i, j] and the actual output
  f_i(θ_{S_m}) (e.g. minus the test loss; label-free: minus the representation's shift, see
  :func:`representation_shift`).  LDS = the mean over test examples (those whose actual output is
  constant over the subsets have no correlation and are left out).
- Detection AUC: how well a per-example score (self-influence) ranks corrupted examples above clean
  ones: the probability that a random corrupted example scores higher than a random clean one (ties 1/2).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from xairepro.errors import UsageError
from xairepro.utils import make_generator

__all__ = ["datamodel_subsets", "subset_predictions", "linear_datamodeling_score", "detection_auc",
           "rank_correlation", "representation_shift", "HIGHER_IS_BETTER"]

HIGHER_IS_BETTER = {"lds": True, "detection_auc": True}


def datamodel_subsets(n_train: int, n_subsets: int, alpha: float, seed: int = 0) -> Tensor:
    """(n_subsets, n_train) boolean masks, each with round(alpha · n_train) members drawn without
    replacement from a generator seeded by ``seed`` (the same seed gives the same subsets)."""
    if n_train < 1 or n_subsets < 1:
        raise UsageError(f"n_train and n_subsets must be >= 1, got {n_train}, {n_subsets}")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be in (0, 1) (the share of the training set kept), got {alpha}")
    size = max(1, round(alpha * n_train))
    gen = make_generator(seed, "cpu")
    masks = torch.zeros(n_subsets, n_train, dtype=torch.bool)
    for m in range(n_subsets):
        masks[m, torch.randperm(n_train, generator=gen)[:size]] = True
    return masks


def subset_predictions(scores: Tensor, masks: Tensor) -> Tensor:
    """Predicted outputs (M, n_test): sum of each test row's scores over the members of each subset."""
    _check_scores(scores)
    if masks.dim() != 2 or masks.shape[1] != scores.shape[1]:
        raise UsageError(f"masks must be (n_subsets, {scores.shape[1]}) for scores {tuple(scores.shape)}, "
                         f"got {tuple(masks.shape)}")
    return masks.to(scores.device, torch.float64) @ scores.double().T


def _ranks(x: Tensor) -> Tensor:
    """Ranks along the last dimension (1-based, ties get their average rank), float64."""
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(x.detach().cpu().double().numpy(), axis=-1)).to(x.device)


def rank_correlation(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Spearman correlation of ``a`` and ``b`` along ``dim`` (NaN where either is constant), float64."""
    if a.shape != b.shape:
        raise UsageError(f"rank_correlation needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a.movedim(dim, -1).double()), _ranks(b.movedim(dim, -1).double())
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    denom = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    return torch.where(denom > 0, (ra * rb).sum(-1) / denom.clamp_min(1e-300), torch.nan)


def linear_datamodeling_score(scores: Tensor, masks: Tensor, outputs: Tensor, *,
                              reduction: Literal["mean", "none"] = "mean") -> Tensor:
    """LDS of ``scores`` (n_test, n_train) against ``outputs`` (M, n_test) of models trained on ``masks``
    (M, n_train): the mean over test examples (or, ``reduction="none"``, each one's, NaN where the actual
    output is constant) of the Spearman correlation over the M subsets."""
    predicted = subset_predictions(scores, masks)
    if outputs.shape != predicted.shape:
        raise UsageError(f"outputs must be (n_subsets, n_test) = {tuple(predicted.shape)}, "
                         f"got {tuple(outputs.shape)}")
    if masks.shape[0] < 3:
        raise UsageError(f"the LDS needs at least 3 subsets to rank, got {masks.shape[0]}")
    if reduction not in ("mean", "none"):
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    per_test = rank_correlation(predicted, outputs.to(predicted.device).double(), dim=0)
    if reduction == "none":
        return per_test
    valid = per_test[~per_test.isnan()]
    return valid.mean() if valid.numel() else torch.tensor(float("nan"), dtype=torch.float64)


def detection_auc(scores: Tensor, corrupted: Tensor) -> float:
    """Area under the ROC curve of ``scores`` (n,) ranking the ``corrupted`` (n,) boolean flags first."""
    scores, flags = scores.detach().reshape(-1).double().cpu(), corrupted.detach().reshape(-1).bool().cpu()
    if scores.shape != flags.shape:
        raise UsageError(f"scores and corrupted must have the same length, got {scores.numel()} and {flags.numel()}")
    if torch.isnan(scores).any():
        raise UsageError("scores contain NaN")
    n_pos, n_neg = int(flags.sum()), int((~flags).sum())
    if n_pos == 0 or n_neg == 0:
        raise UsageError(f"detection AUC needs corrupted and clean examples, got {n_pos} and {n_neg}")
    ranks = _ranks(scores[None])[0]
    return float((ranks[flags].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def representation_shift(h: Tensor, h_ref: Tensor, anchors: Tensor, anchors_ref: Tensor) -> Tensor:
    """||(h - μ) Q + μ_ref - h_ref||² per row (n,): how far representations h (n, d) of a retrained model
    are from the reference model's h_ref (n, d), after the orthogonal Procrustes map Q (and shift) that
    best aligns the two models' representations of shared ``anchors`` (m, d) / ``anchors_ref`` (m, d)
    (retrained encoders agree only up to such a map)."""
    if h.shape != h_ref.shape or anchors.shape != anchors_ref.shape or h.shape[1:] != anchors.shape[1:]:
        raise UsageError(f"representation_shift: shapes {tuple(h.shape)}, {tuple(h_ref.shape)}, "
                         f"{tuple(anchors.shape)}, {tuple(anchors_ref.shape)} do not match")
    a, b = anchors.double(), anchors_ref.double()
    mu, mu_ref = a.mean(0), b.mean(0)
    u, _, vh = torch.linalg.svd((a - mu).T @ (b - mu_ref))
    q = u @ vh
    return ((h.double() - mu) @ q + mu_ref - h_ref.double()).square().sum(1)


def _check_scores(scores: Tensor) -> None:
    if not isinstance(scores, Tensor) or scores.dim() != 2 or 0 in scores.shape:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise UsageError(f"scores must be a non-empty (n_test, n_train) tensor, got {shape}")
    if torch.isnan(scores).any():
        raise UsageError("scores contain NaN")
