"""Statistics of saliency maps: correlation between maps, entropy and active units (SPEC 6).

``maps`` are (B, K, ...): for every example, K maps (the d latent units of a VAE, or K models of the
pretext study) over the same features.  Correlations are computed per example between its K maps
and averaged over examples; ``pooled=True`` instead flattens each map over all examples first, as the
original code did (one K x K matrix for the whole set).  A constant map has no correlation: its
pairs are NaN and are left out of the averages.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xairepro.errors import UsageError


def _as_maps(maps: Tensor | np.ndarray, min_units: int = 2) -> Tensor:
    """(B, K, ...) -> float64 (B, K, P); a clear error for other shapes."""
    t = torch.as_tensor(maps).detach()
    if t.ndim < 3:
        raise UsageError(f"maps must be shaped (B, K, ...) with K maps per example, got shape {tuple(t.shape)}")
    if t.shape[1] < min_units:
        raise UsageError(f"need at least {min_units} maps per example to compare, got {t.shape[1]}")
    return t.to(torch.float64).reshape(t.shape[0], t.shape[1], -1)


def _pool(x: Tensor) -> Tensor:
    """(B, K, P) -> (1, K, B*P): each map flattened over all examples."""
    return x.transpose(0, 1).reshape(1, x.shape[1], -1)


def _correlation(x: Tensor) -> Tensor:
    """Pearson matrices of the rows of every (K, P) slice: (B, K, P) -> (B, K, K); NaN for constant rows."""
    xc = x - x.mean(-1, keepdim=True)
    cov = xc @ xc.transpose(-1, -2)
    std = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    corr = cov / (std.unsqueeze(-1) * std.unsqueeze(-2))
    corr = torch.where((std.unsqueeze(-1) > 0) & (std.unsqueeze(-2) > 0), corr, torch.nan)
    return corr.clamp(-1.0, 1.0)


def _offdiagonal_mean(mats: Tensor) -> float:
    """Mean over examples of the mean finite off-diagonal entry of each (K, K) matrix."""
    k = mats.shape[-1]
    off = ~torch.eye(k, dtype=torch.bool, device=mats.device)
    vals = mats[:, off]                                   # (B, K*(K-1))
    finite = torch.isfinite(vals)
    counts = finite.sum(1)
    per_example = torch.where(finite, vals, 0.0).sum(1) / counts.clamp(min=1)
    keep = counts > 0
    return float(per_example[keep].mean()) if keep.any() else float("nan")


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along the last axis, ties given their average rank (as scipy.stats.rankdata)."""
    s = torch.sort(x, dim=-1).values.contiguous()
    left = torch.searchsorted(s, x.contiguous(), right=False)
    right = torch.searchsorted(s, x.contiguous(), right=True)
    return (left + right + 1).to(torch.float64) / 2


def pearson_matrix(maps: Tensor | np.ndarray, reduction: str = "mean", *, pooled: bool = False) -> Tensor:
    """Pearson correlation between the K maps of each example.

    (B, K, ...) -> (K, K) mean over examples (NaN entries left out), or (B, K, K) with
    ``reduction="none"``; ``pooled=True``: one matrix of the maps flattened over all examples.
    """
    if reduction not in ("mean", "none"):
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    x = _as_maps(maps)
    mats = _correlation(_pool(x) if pooled else x)
    return torch.nanmean(mats, dim=0) if reduction == "mean" else mats


def pearson_offdiagonal(unit_maps: Tensor | np.ndarray, *, pooled: bool = False) -> float:
    """Mean off-diagonal Pearson correlation between the d unit maps of each example, averaged over examples.

    ``unit_maps`` (B, d, ...) -> float.  ``pooled=True`` follows the original code (maps flattened over
    the whole set, one d x d matrix).
    """
    x = _as_maps(unit_maps)
    return _offdiagonal_mean(_correlation(_pool(x) if pooled else x))


def spearman_offdiagonal(unit_maps: Tensor | np.ndarray, *, pooled: bool = False) -> float:
    """As ``pearson_offdiagonal`` on average ranks (Spearman's rho, ties averaged)."""
    x = _as_maps(unit_maps)
    x = _pool(x) if pooled else x
    return _offdiagonal_mean(_correlation(average_ranks(x)))


def cosine_offdiagonal(unit_maps: Tensor | np.ndarray) -> float:
    """Mean off-diagonal cosine similarity <a_j, a_k> / (||a_j|| ||a_k||) between unit maps, per example."""
    x = _as_maps(unit_maps)
    norm = x.norm(dim=-1)
    cos = (x @ x.transpose(-1, -2)) / (norm.unsqueeze(-1) * norm.unsqueeze(-2))
    cos = torch.where((norm.unsqueeze(-1) > 0) & (norm.unsqueeze(-2) > 0), cos, torch.nan)
    return _offdiagonal_mean(cos)


def _unit_shares(unit_maps: Tensor | np.ndarray) -> tuple[Tensor, int]:
    """Per feature with any saliency, the share of each unit: (n_salient, d), rows summing to 1."""
    x = _as_maps(unit_maps, min_units=1).abs()
    per_feature = x.transpose(1, 2).reshape(-1, x.shape[1])   # (B*P, d)
    total = per_feature.sum(1)
    salient = per_feature[total > 0]
    return salient / salient.sum(1, keepdim=True), x.shape[1]


def attribution_entropy(unit_maps: Tensor | np.ndarray) -> float:
    """Mean entropy (nats) of how each feature's saliency is shared among the d units.

    For every (example, feature) with saliency: p_j = |a_j| / sum_k |a_k|, H = -sum_j p_j log p_j;
    features with no saliency are left out.  0 = one unit per feature, log d = evenly shared.
    """
    p, _ = _unit_shares(unit_maps)
    if p.shape[0] == 0:
        return float("nan")
    h = -(torch.where(p > 0, p * p.log(), 0.0)).sum(1)
    return float(h.mean())


def active_units(unit_maps: Tensor | np.ndarray) -> float:
    """Mean number of units sensitive to a feature: units whose share p_j exceeds 1/d, per salient feature."""
    p, d = _unit_shares(unit_maps)
    if p.shape[0] == 0:
        return float("nan")
    return float((p > 1.0 / d).sum(1).to(torch.float64).mean())
