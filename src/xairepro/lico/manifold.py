"""LICO's manifold-matching loss (SPEC 4, seed 000 eq. 1).

For a batch, A^F_ij = softmax_j(-D(F_i, F_j) / tau) and A^G the same on the text tokens, with D the
Euclidean distance between **unit-norm aggregates**: each sample's token set is flattened into one vector
and that vector is L2-normalised (:func:`unit_aggregate`), so D lies in [0, 2] whatever the number of
tokens (the paper aggregates each sample "to a single vector representation"; the authors' code
L2-normalises the pooled embedding before its distances). L_MM = mean_i KL(A^G_i || A^F_i)
= mean_i sum_j A^G_ij (log A^G_ij - log A^F_ij). ``sign="official"`` uses softmax(+D / tau), the
authors' sign.

Without the normalisation, N unit tokens give distances ~ sqrt(2 N) (12.5 for WRN-28-2's 128 tokens), so
tau = 1 makes every row of A^F one-hot on its diagonal and alpha L_MM is cheapest when every image
feature is the same (docs/decisions.md, LICO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xairepro.lico.config import MM_SIGNS

__all__ = ["manifold_matching_loss", "pairwise_distances", "mm_from_distances", "unit_aggregate",
           "log_affinities"]

_GRAM_ULPS = 64.0


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of x (B, D) -> (B, B), in x's dtype.

    D_ij^2 = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j> from one Gram matrix computed in float64 (no cancellation
    error at float32 scale; several times faster than pairwise differences for wide rows). The diagonal
    and equal rows give exactly 0, and a zero distance passes a zero gradient (no 0/0).
    """
    xd = x.double()
    sq = xd.square().sum(dim=1)
    norms = sq.unsqueeze(1) + sq.unsqueeze(0)
    d2 = norms - 2.0 * (xd @ xd.T)
    # below the Gram's rounding error a squared distance is 0 (equal rows, the diagonal)
    positive = d2 > _GRAM_ULPS * torch.finfo(torch.float64).eps * norms
    return torch.where(positive, torch.where(positive, d2, 1.0).sqrt(), 0.0).to(x.dtype)


def unit_aggregate(tokens: torch.Tensor) -> torch.Tensor:
    """A sample's token set as one unit vector: (B, ...) -> (B, D), each row flattened and L2-normalised.

    Rows are divided by max(||row||, 1e-12) (``F.normalize``): an all-zero row stays zero, at distance 1
    from every unit row.
    """
    return F.normalize(tokens.flatten(1), dim=1)


def _check_tau(tau: float | torch.Tensor) -> None:
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a scalar, got shape {tuple(tau.shape)}")
    elif not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def log_affinities(dist: torch.Tensor, tau: float | torch.Tensor, *, sign: str = "paper") -> torch.Tensor:
    """log A with A_ij = softmax_j(-D_ij / tau) (``sign="official"``: +D_ij / tau); (B, B) -> (B, B)."""
    if sign not in MM_SIGNS:
        raise ValueError(f"sign={sign!r} is not one of {', '.join(MM_SIGNS)}")
    _check_tau(tau)
    scale = -1.0 if sign == "paper" else 1.0
    return F.log_softmax(scale * dist / tau, dim=1)


def mm_from_distances(dist_image: torch.Tensor, dist_text: torch.Tensor, tau: float | torch.Tensor,
                      *, sign: str = "paper") -> torch.Tensor:
    """L_MM from the two (B, B) distance matrices D^F and D^G; scalar."""
    log_af = log_affinities(dist_image, tau, sign=sign)
    log_ag = log_affinities(dist_text, tau, sign=sign)
    return (log_ag.exp() * (log_ag - log_af)).sum(dim=1).mean()


def manifold_matching_loss(image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                           tau: float | torch.Tensor, *, sign: str = "paper") -> torch.Tensor:
    """mean_i KL(A^G_i || A^F_i) over a batch, distances between unit-norm aggregates (in [0, 2]).

    image_tokens (B, ...) and text_tokens (B, ...), any trailing shapes (flattened per sample, then
    L2-normalised), float32 or float64; tau a positive float or a scalar tensor (learnable). Returns a
    scalar >= 0, 0 when both token sets are equal up to a positive factor per sample, tending to 0 as tau
    grows.
    """
    for name, t in (("image_tokens", image_tokens), ("text_tokens", text_tokens)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a (B, ...) tensor with a batch dimension, got {shape}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if image_tokens.shape[0] != text_tokens.shape[0]:
        raise ValueError(f"image_tokens has batch size {image_tokens.shape[0]} but text_tokens has "
                         f"{text_tokens.shape[0]}")
    dtype = torch.promote_types(image_tokens.dtype, text_tokens.dtype)
    dist_image = pairwise_distances(unit_aggregate(image_tokens.to(dtype)))
    dist_text = pairwise_distances(unit_aggregate(text_tokens.to(dtype)))
    return mm_from_distances(dist_image, dist_text, tau, sign=sign)
