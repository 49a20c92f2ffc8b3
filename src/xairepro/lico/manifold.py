"""LICO's manifold-matching loss (SPEC 4, seed 000 eq. 1).

For a batch, A^F_ij = softmax_j(-D(F_i, F_j) / tau) and A^G the same on the text tokens, with D the
Euclidean distance between flattened token sets; L_MM = mean_i KL(A^G_i || A^F_i)
= mean_i sum_j A^G_ij (log A^G_ij - log A^F_ij). ``sign="official"`` uses softmax(+D / tau), the
authors' sign.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xairepro.lico.config import MM_SIGNS

__all__ = ["manifold_matching_loss", "pairwise_distances", "mm_from_distances"]

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


def _check_tau(tau: float | torch.Tensor) -> None:
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a scalar, got shape {tuple(tau.shape)}")
    elif not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau}")


def mm_from_distances(dist_image: torch.Tensor, dist_text: torch.Tensor, tau: float | torch.Tensor,
                      *, sign: str = "paper") -> torch.Tensor:
    """L_MM from the two (B, B) distance matrices D^F and D^G; scalar."""
    if sign not in MM_SIGNS:
        raise ValueError(f"sign={sign!r} is not one of {', '.join(MM_SIGNS)}")
    _check_tau(tau)
    scale = -1.0 if sign == "paper" else 1.0
    log_af = F.log_softmax(scale * dist_image / tau, dim=1)
    log_ag = F.log_softmax(scale * dist_text / tau, dim=1)
    return (log_ag.exp() * (log_ag - log_af)).sum(dim=1).mean()


def manifold_matching_loss(image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                           tau: float | torch.Tensor, *, sign: str = "paper") -> torch.Tensor:
    """mean_i KL(A^G_i || A^F_i) over a batch.

    image_tokens (B, ...) and text_tokens (B, ...), any trailing shapes (flattened per sample), float32 or
    float64; tau a positive float or a scalar tensor (learnable). Returns a scalar >= 0, 0 when both
    token sets are equal, tending to 0 as tau grows.
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
    dist_image = pairwise_distances(image_tokens.flatten(1).to(dtype))
    dist_text = pairwise_distances(text_tokens.flatten(1).to(dtype))
    return mm_from_distances(dist_image, dist_text, tau, sign=sign)
