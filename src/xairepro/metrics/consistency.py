"""Feature consistency check (Crabbé & van der Schaar 2022, section 4.1): mask the top-p% features.

Masking the features a label-free explanation marks as most important should move the representation
more than masking random ones.  Positions are ranked once per example by |attribution| summed over
channels; for every fraction p the top M = floor(p * P) positions are replaced, and the latent shift is
||f(x) - f(x_p)||^2.  Layouts: images (N, C, H, W) rank H*W pixels; series (N, T, C) rank T steps;
flat (N, P) rank P features.  Ties are broken towards the lowest flat index (stable sort).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from xairepro.errors import UsageError
from xairepro.imaging import gaussian_blur
from xairepro.utils import derive_seed, make_generator, preserved_state

#: The study's fractions of features perturbed (SPEC 6).
FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 0.8, 1.0)


def _channel_dim(ndim: int) -> int | None:
    """Channel axis by layout: 4-D images (N, C, H, W) -> 1; 3-D series (N, T, C) -> 2; 2-D -> none."""
    if ndim == 4:
        return 1
    if ndim == 3:
        return 2
    if ndim == 2:
        return None
    raise UsageError(f"expected images (N, C, H, W), series (N, T, C) or features (N, P); got {ndim}-D input")


def check_fractions(fractions: Sequence[float] | Tensor) -> list[float]:
    """Fractions as a list of floats in [0, 1]; a clear error otherwise."""
    values = [float(f) for f in (fractions.tolist() if isinstance(fractions, Tensor) else fractions)]
    if not values:
        raise UsageError("fractions is empty; give fractions of features in [0, 1], e.g. [0.05, 0.1]")
    bad = [f for f in values if not (0.0 <= f <= 1.0) or math.isnan(f)]
    if bad:
        raise UsageError(f"fractions must lie in [0, 1] (0.1 = 10%), got {bad}")
    return values


def n_masked(fraction: float, n_positions: int) -> int:
    """M = floor(p * P), as the original code's int(p * P); 1e-9 guards float error (0.29 * 100)."""
    return min(n_positions, int(math.floor(fraction * n_positions + 1e-9)))


def position_scores(attributions: Tensor, layout_ndim: int | None = None) -> Tensor:
    """Summed |attribution| per position: (N, C, H, W) -> (N, H*W); (N, T, C) -> (N, T); (N, P) as is."""
    ndim = attributions.ndim if layout_ndim is None else layout_ndim
    dim = _channel_dim(ndim)
    scores = attributions.abs()
    if dim is not None and attributions.ndim == ndim:
        scores = scores.sum(dim)
    return scores.reshape(scores.shape[0], -1)


def rank_positions(scores: Tensor) -> Tensor:
    """Rank of every position by descending score (0 = most important), ties to the lowest index.

    ``scores`` (N, P) -> LongTensor (N, P).  One stable sort and one ``scatter_``.
    """
    if torch.isnan(scores).any():
        raise UsageError("attributions contain NaN; masks would be arbitrary")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks


def topk_masks(attributions: Tensor, fractions: Sequence[float] | Tensor) -> Tensor:
    """Boolean masks of the top-M positions for every fraction: (F, N, *positions).

    Positions are H x W for images (N, C, H, W), T for series (N, T, C), P for (N, P).  Exactly
    M = floor(p * P) positions are True per example; among equal scores the lowest flat index wins.
    """
    values = check_fractions(fractions)
    dim = _channel_dim(attributions.ndim)
    spatial = [s for i, s in enumerate(attributions.shape[1:], start=1) if i != dim]
    scores = position_scores(attributions)
    ranks = rank_positions(scores)
    counts = torch.tensor([n_masked(f, scores.shape[1]) for f in values], device=scores.device)
    masks = ranks.unsqueeze(0) < counts.view(-1, 1, 1)
    return masks.reshape(len(values), attributions.shape[0], *spatial)


def random_attributions(x: Tensor, seed: int | None = 0) -> Tensor:
    """The Random control: i.i.d. U(0, 1) scores shaped like ``x`` (a uniformly random ranking)."""
    gen = make_generator(seed, "cpu")
    return torch.rand(x.shape, generator=gen, dtype=torch.float64).to(x.device)


def _replacement(x: Tensor, replacement: str | Tensor | float) -> Tensor:
    if isinstance(replacement, str):
        if replacement == "zeros":
            return torch.zeros_like(x[:1])
        if replacement == "blur":   # the study's CIFAR blur (21 x 21, sigma 5)
            return gaussian_blur(x, strict=True)
        raise UsageError(f"unknown replacement {replacement!r}; use 'zeros', 'blur', a number or a tensor")
    if isinstance(replacement, (int, float)):
        return torch.full_like(x[:1], float(replacement))
    if not isinstance(replacement, Tensor):
        raise UsageError(f"replacement must be 'zeros', 'blur', a number or a tensor, got {type(replacement).__name__}")
    r = replacement.to(device=x.device, dtype=x.dtype)
    if tuple(r.shape) == tuple(x.shape[1:]):
        r = r.unsqueeze(0)
    if r.ndim != x.ndim or tuple(r.shape[1:]) != tuple(x.shape[1:]) or r.shape[0] not in (1, x.shape[0]):
        raise UsageError(f"replacement has shape {tuple(replacement.shape)} but x is {tuple(x.shape)}")
    return r


def mask_inputs(x: Tensor, masks: Tensor, replacement: Tensor, layout_ndim: int | None = None) -> Tensor:
    """x_p = where(mask, replacement, x), the mask broadcast over channels.

    ``masks`` (..., N, *positions) against ``x`` (N, C, H, W) / (N, T, C) / (N, P); leading mask
    dimensions (e.g. one per fraction) broadcast, so all fractions are masked in one op.
    """
    dim = _channel_dim(x.ndim if layout_ndim is None else layout_ndim)
    m = masks if dim is None else masks.unsqueeze(-3 if dim == 1 else -1)
    return torch.where(m, replacement, x)


def feature_consistency(encoder: nn.Module, x: Tensor, attributions: Tensor | str,
                        fractions: Sequence[float] | Tensor = FRACTIONS,
                        replacement: str | Tensor | float = "zeros", *, seed: int | None = 0,
                        batch_size: int = 256, reduction: str = "mean", road_noise: float = 0.01) -> Tensor:
    """Latent shift after masking the top-p% features: mean ||f(x) - f(x_p)||^2 per fraction.

    ``x`` images (N, C, H, W) or series (N, T, C); ``attributions`` shaped like ``x`` (or its
    positions, (N, H, W) / (N, T)), or ``"random"`` for the Random control (drawn with ``seed``).
    ``replacement``: "zeros" (black), "blur" (Gaussian 21 / sigma 5 of x), a number, a baseline tensor
    shaped like x or like one example, or "road": ROAD's noisy linear imputation of the masked positions
    from the kept ones (``metrics.road``; noise ``road_noise``, drawn from ``seed`` per example; series
    interpolate linearly in time; every fraction must leave a position kept).  Returns (F,) means, or
    (F, N) with ``reduction="none"``.  The encoder runs in eval mode under ``no_grad``, at most
    ``batch_size`` rows per pass (the F masked copies of a batch included); its state is restored.
    """
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise UsageError(f"x must be a non-empty batch tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if reduction not in ("mean", "none"):
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if int(batch_size) < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    values = check_fractions(fractions)
    if isinstance(attributions, str):
        if attributions != "random":
            raise UsageError(f"attributions must be a tensor or 'random', got {attributions!r}")
        attributions = random_attributions(x, seed)
    scores = _scores_for(x, attributions)
    ranks = rank_positions(scores)
    counts = torch.tensor([n_masked(f, scores.shape[1]) for f in values], device=x.device)
    dim = _channel_dim(x.ndim)
    spatial = [s for i, s in enumerate(x.shape[1:], start=1) if i != dim]
    road = isinstance(replacement, str) and replacement == "road"
    if road and dim is None:
        raise UsageError("road imputation needs images (N, C, H, W) or series (N, T, C), not flat features")
    repl = None if road else _replacement(x, replacement)
    if road:
        from xairepro.metrics.road import road_imputation

    shifts = torch.empty(len(values), x.shape[0], dtype=torch.float64, device=x.device)
    with preserved_state(encoder, eval_mode=True), torch.no_grad():
        for start in range(0, x.shape[0], int(batch_size)):
            part = slice(start, start + int(batch_size))
            xb = x[part]
            z = _latent(encoder, xb)
            masks = (ranks[part].unsqueeze(0) < counts.view(-1, 1, 1)).reshape(len(values), xb.shape[0], *spatial)
            if road:   # every fraction at once: (F, n, ...)
                x_p = road_imputation(xb, masks, noise=road_noise, seed=derive_seed(seed or 0, "road"), first=start)
            else:
                x_p = mask_inputs(xb, masks, repl[part] if repl.shape[0] > 1 else repl)
            x_p = x_p.reshape(-1, *x.shape[1:])  # (F n, ...)
            step = int(batch_size)  # at most batch_size rows per pass
            z_p = torch.cat([_latent(encoder, x_p[i:i + step]) for i in range(0, x_p.shape[0], step)])
            z_p = z_p.reshape(len(values), xb.shape[0], -1)
            shifts[:, part] = ((z.unsqueeze(0) - z_p) ** 2).sum(-1).double()
    return shifts.mean(1) if reduction == "mean" else shifts


def _scores_for(x: Tensor, attributions: Tensor) -> Tensor:
    if not isinstance(attributions, Tensor):
        raise UsageError(f"attributions must be a tensor, got {type(attributions).__name__}")
    dim = _channel_dim(x.ndim)
    positions = tuple(s for i, s in enumerate(x.shape) if i != dim)
    if tuple(attributions.shape) == tuple(x.shape):
        return position_scores(attributions.to(x.device))
    if tuple(attributions.shape) == positions:
        return attributions.to(x.device).abs().reshape(x.shape[0], -1)
    raise UsageError(
        f"attributions have shape {tuple(attributions.shape)} but x is {tuple(x.shape)}: give one score "
        f"per input value {tuple(x.shape)} or per position {positions}"
    )


def _latent(encoder: nn.Module, x: Tensor) -> Tensor:
    z = encoder(x)
    if not isinstance(z, Tensor) or z.ndim != 2 or z.shape[0] != x.shape[0]:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise UsageError(f"the encoder must return a 2-D (batch, d) tensor, it returned {shape}")
    return z
