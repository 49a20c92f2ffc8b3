"""ROAD, Remove And Debias (Rong et al. 2022): faithfulness without retraining, with noisy linear imputation.

For each image and percentage p, the k = floor(p * HW / 100) most relevant pixels (``order="morf"``) or
least relevant pixels (``"lerf"``) are removed and imputed, and the model scores the imputed image.
Pixels are ranked as in insertion/deletion (descending saliency, ties by pixel index; LeRF ascending,
ties by pixel index).  Imputation (all channels of a removed pixel):

    "linear":        each removed pixel = the weighted mean of its in-image 8 neighbours, weights 1/6
                     (direct) and 1/12 (diagonal) renormalised over the neighbours inside the image;
                     removed neighbours are unknowns too, so all removed pixels of an image solve one
                     sparse linear system  W_i x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij x_j
    "noisy-linear":  "linear" + noise * N(0, 1) on every removed value (noise = 0.01, pixel space)
    "fixed":         the channel mean of the unmodified image (the paper's fixed-value baseline)

All (image, percentage) systems of a chunk are one block-diagonal sparse system solved in float64 by
SuperLU on the CPU; the imputed images are scored in batched forwards on the model's device.  A good
explanation makes MoRF scores fall fast (low mean) and LeRF scores stay high (high mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import batched_forward, check_images, check_maps
from xairepro.metrics._perturbation import (SCORES, Settings, check_choice, check_percentages, checked_inputs,
                                            class_scores, percent_counts, score_images, seeded_generator)
from xairepro.metrics.insertion_deletion import pixel_ranks
from xairepro.utils import preserved_state, progress

__all__ = ["RoadResult", "RoadSettings", "road", "noisy_linear_imputation", "road_imputation", "NEIGHBOUR_WEIGHTS"]

#: (dy, dx, weight) of the 8 neighbours in the linear imputation (ROAD's code: 1/6 direct, 1/12 diagonal).
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
    (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))

IMPUTATIONS = ("noisy-linear", "linear", "fixed")
ORDERS = ("morf", "lerf")
#: Default percentages removed: 10, 20, ..., 90 (the paper's grid; pytorch-grad-cam's averages).
DEFAULT_PERCENTAGES: tuple[float, ...] = tuple(float(p) for p in range(10, 100, 10))
#: Unknowns per sparse solve: bounds SuperLU's memory; several images' systems share one solve.
MAX_UNKNOWNS = 1 << 19


@dataclass(frozen=True)
class RoadSettings(Settings):
    """Every choice of a ROAD run (stored with the result)."""

    percentages: tuple[float, ...] = DEFAULT_PERCENTAGES
    order: str = "morf"
    imputation: str = "noisy-linear"
    noise: float = 0.01
    score: str = "softmax"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("order", self.order, ORDERS)
        check_choice("imputation", self.imputation, IMPUTATIONS)
        check_choice("score", self.score, SCORES)
        if not (self.noise >= 0 and np.isfinite(self.noise)):
            raise UsageError(f"noise must be a finite number >= 0, got {self.noise!r}")


@dataclass(frozen=True)
class RoadResult:
    """Scores (B, P) of the target class after removing each percentage, and what they came from.

    ``correct`` (B, P): the imputed image is still classified as the target; ``original`` (B,): the
    score of the unmodified image.  ``score`` (B,) is the mean over percentages (pytorch-grad-cam's
    ``ROAD*Average``): lower is better for MoRF, higher for LeRF.
    """

    scores: torch.Tensor
    correct: torch.Tensor
    original: torch.Tensor
    percentages: torch.Tensor
    removed_counts: torch.Tensor
    targets: torch.Tensor
    settings: RoadSettings

    @property
    def score(self) -> torch.Tensor:
        """Mean score over the percentages, (B,)."""
        return self.scores.mean(dim=1)

    @property
    def accuracy(self) -> torch.Tensor:
        """Share of images still classified as their target, per percentage (P,) (the paper's curve)."""
        return self.correct.float().mean(dim=0)

    def summary(self) -> dict[str, float]:
        """``road_morf`` or ``road_lerf``: the mean score over images and percentages."""
        return {f"road_{self.settings.order}": float(self.score.mean())}


def road(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: object = None,
         percentages: object = DEFAULT_PERCENTAGES, order: str = "morf", imputation: str = "noisy-linear",
         seed: int = 0, *, noise: float = 0.01, score: str = "softmax", batch_size: int | None = None,
         show_progress: bool = False) -> RoadResult:
    """ROAD scores of ``saliency`` (B, H, W) for ``images`` (B, C, H, W) in [0, 1].

    ``targets``: None (the class predicted on the unmodified image), an int or a LongTensor (B,).
    ``percentages``: shares of pixels removed, each in [0, 100).  ``noise`` is the standard deviation
    of the Gaussian noise of "noisy-linear" (pixel space); the noise of image i is drawn from
    (seed, i) alone, so chunking does not change it.  ``batch_size`` = images per forward.
    """
    pct = check_percentages(percentages)
    settings = RoadSettings(tuple(float(p) for p in pct.tolist()), order, imputation, float(noise), score, int(seed))
    saliency, batch_size = checked_inputs(images, saliency, batch_size)
    b, c, h, w = images.shape
    device = images.device
    counts = percent_counts(pct, h * w)
    n_pct = counts.numel()
    sal = saliency.detach().to("cpu", torch.float64)
    ranks = pixel_ranks(sal if order == "morf" else -sal).view(b, h, w)       # 0 = removed first
    xs = images.detach()
    scores = torch.empty(b, n_pct, device=device)
    correct = torch.empty(b, n_pct, dtype=torch.bool, device=device)
    per_chunk = max(1, MAX_UNKNOWNS // max(1, int(counts.sum())))             # images per sparse solve
    chunks = range(0, b, per_chunk)
    with preserved_state(model), torch.inference_mode():
        _, classes, original = score_images(model, xs, targets, score, batch_size)
        for start in progress(chunks, enabled=show_progress, total=len(chunks), desc="ROAD"):
            stop = min(start + per_chunk, b)
            removed = ranks[start:stop, None] < counts.view(1, -1, 1, 1)       # (n, P, H, W)
            imputed = _impute(xs[start:stop], removed, settings, first=start)  # (n * P, C, H, W) on device
            target = classes[start:stop].repeat_interleave(n_pct)
            logits = torch.cat([batched_forward(model, imputed[i:i + batch_size])
                                for i in range(0, imputed.shape[0], batch_size)])
            scores[start:stop] = class_scores(logits, target, score).view(-1, n_pct)
            correct[start:stop] = (logits.argmax(dim=1) == target).view(-1, n_pct)
    return RoadResult(scores.clone(), correct.clone(), original.clone(), pct.float().to(device),
                      counts.to(device), classes.clone(), settings)


def _impute(x: torch.Tensor, removed: torch.Tensor, settings: RoadSettings, first: int) -> torch.Tensor:
    """Imputed copies (n * P, C, H, W) of images x (n, C, H, W) for masks ``removed`` (n, P, H, W);
    ``first`` is the batch index of x[0] (image i's noise is drawn from (seed, first + i))."""
    n, n_pct, h, w = removed.shape
    if settings.imputation == "fixed":
        rows = x.detach().repeat_interleave(n_pct, dim=0)                     # (n * P, C, H, W)
        fill = rows.mean(dim=(2, 3), keepdim=True).expand_as(rows)
        return torch.where(removed.reshape(n * n_pct, 1, h, w).to(rows.device), fill, rows)
    noise = settings.noise if settings.imputation == "noisy-linear" else 0.0
    out = road_imputation(x, removed.transpose(0, 1), noise=noise, seed=settings.seed, first=first)   # (P, n, ...)
    return out.transpose(0, 1).reshape(n * n_pct, *x.shape[1:])


def _linear_solve(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Linear imputation of images (N, C, H, W) float64 CPU at ``removed`` (N, H, W) bool CPU.

    Consecutive images are grouped into block-diagonal systems of at most ``MAX_UNKNOWNS`` unknowns
    (at least one image each), each solved by one sparse factorisation.
    """
    per_image = removed.flatten(1).sum(dim=1).tolist()
    out, start, unknowns = [], 0, 0
    for i, count in enumerate(per_image):
        if i > start and unknowns + count > MAX_UNKNOWNS:
            out.append(_solve_block(images[start:i], removed[start:i]))
            start, unknowns = i, 0
        unknowns += count
    out.append(_solve_block(images[start:], removed[start:]))
    return torch.cat(out)


def _solve_block(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """One block-diagonal sparse system for images (N, C, H, W) at ``removed`` (N, H, W).

    Unknowns are numbered over the zero-padded grids (N, H + 2, W + 2), so a neighbour is ``index +
    dy * (W + 2) + dx`` and out-of-image neighbours fall on the padding (their weight is not counted).
    The matrix is symmetric, so its rows, built with columns in increasing order (the neighbours in
    raster order, the diagonal in the middle), are also its columns: it is built directly in CSC form.
    """
    n, c, h, w = images.shape
    wp = w + 2
    rem_pad = F.pad(removed, (1, 1, 1, 1))                                     # border = not removed
    inside = F.pad(torch.ones((1, h, w), dtype=torch.float64), (1, 1, 1, 1)).expand(n, -1, -1).flatten()
    where = torch.nonzero(rem_pad.flatten()).flatten()                         # padded flat index per unknown
    n_unknowns = where.numel()
    if n_unknowns == 0:
        return images.clone()
    var = torch.full((rem_pad.numel(),), -1, dtype=torch.long)
    var[where] = torch.arange(n_unknowns)
    kept = F.pad(images * (~removed)[:, None], (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(-1, c)
    rhs = torch.zeros(n_unknowns, c, dtype=torch.float64)
    cols = torch.empty(n_unknowns, 9, dtype=torch.long)
    vals = torch.empty(n_unknowns, 9, dtype=torch.float64)
    diag = torch.zeros(n_unknowns, dtype=torch.float64)
    for k, (dy, dx, weight) in enumerate(NEIGHBOUR_WEIGHTS):
        nb = where + (dy * wp + dx)
        diag += weight * inside[nb]
        rhs += weight * kept[nb]
        slot = k if k < 4 else k + 1                                           # slot 4 is the diagonal
        cols[:, slot] = var[nb]
        vals[:, slot] = -weight
    cols[:, 4] = torch.arange(n_unknowns)
    vals[:, 4] = diag
    present = cols >= 0
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), present.sum(dim=1).cumsum(0)])
    system = sparse.csc_matrix((vals[present].numpy(), cols[present].numpy(), indptr.numpy()),
                               shape=(n_unknowns, n_unknowns))
    # symmetric, diagonally dominant: no pivoting needed.  Natural order keeps each image's band
    # (width ~W) intact, the fastest on small images; large ones use a fill-reducing symmetric order.
    options = {"DiagPivotThresh": 0.0, "Equil": False}
    if w <= 64:
        factor = sparse_linalg.splu(system, permc_spec="NATURAL", options=options)
    else:
        factor = sparse_linalg.splu(system, permc_spec="MMD_AT_PLUS_A", options={**options, "SymmetricMode": True})
    solution = factor.solve(rhs.numpy())
    grid = F.pad(images, (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(-1, c)
    grid[where] = torch.from_numpy(np.asarray(solution).reshape(n_unknowns, c))
    return grid.view(n, h + 2, w + 2, c)[:, 1:-1, 1:-1].permute(0, 3, 1, 2).contiguous()


def noisy_linear_imputation(images: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                            seed: int = 0) -> torch.Tensor:
    """ROAD's noisy linear imputation of images (N, C, H, W) at the pixels ``removed`` (N, H, W) (bool).

    Returns new images (same device and dtype): kept pixels unchanged, removed ones the solution of
    the neighbour-mean system plus ``noise`` * N(0, 1) (image i's noise drawn from (seed, "road", i), as
    :func:`road_imputation`).
    ``noise=0`` gives the plain linear imputation.  At least one pixel of every image must be kept.
    """
    check_images(images)
    removed = check_maps(removed, images, name="removed")
    if removed.dtype != torch.bool:
        raise UsageError(f"removed must be a bool mask, got dtype {removed.dtype}")
    if bool(removed.flatten(1).all(dim=1).any()):
        raise UsageError("an image has every pixel removed: linear imputation needs at least one kept pixel")
    return road_imputation(images, removed[None], noise=noise, seed=seed)[0]


def _interpolate_series(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """ROAD's linear imputation in 1-D: series (N, T, C) float64 at ``removed`` (N, T).

    With the two neighbours weighted equally the system's solution is the linear interpolation between
    the nearest kept steps on either side, and the nearest kept value beyond the first or last one.
    """
    n, t, _ = x.shape
    steps = torch.arange(t).expand(n, t)
    kept = ~removed
    before = torch.where(kept, steps, -1).cummax(dim=1).values                          # last kept <= t
    after = (t - 1) - torch.where(kept.flip(1), steps, -1).cummax(dim=1).values.flip(1)  # first kept >= t
    lo, hi = before.clamp_min(0), after.clamp_max(t - 1)
    left, right = x.gather(1, lo[..., None].expand_as(x)), x.gather(1, hi[..., None].expand_as(x))
    span = (after - before).clamp_min(1).double()
    share = ((steps - before).double() / span)[..., None]
    inner = left + share * (right - left)
    out = torch.where((before < 0)[..., None], right, torch.where((after >= t)[..., None], left, inner))
    return torch.where(removed[..., None], out, x)


def road_imputation(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.01, seed: int = 0,
                    first: int = 0) -> torch.Tensor:
    """ROAD imputations of x for several masks at once: images (N, C, H, W) with ``removed`` (F, N, H, W),
    or series (N, T, C) with ``removed`` (F, N, T) -> (F, N, ...) on x's device and dtype.

    Noise ``noise`` * N(0, 1) on the removed values; example i's noise (for all F masks) is drawn from
    (seed, first + i), so a caller working in chunks passes the chunk's offset as ``first``.  Every
    example must keep at least one position.
    """
    if x.ndim not in (3, 4) or removed.ndim != x.ndim or removed.shape[1] != x.shape[0] \
            or tuple(removed.shape[2:]) != tuple(x.shape[2:] if x.ndim == 4 else x.shape[1:2]):
        raise UsageError(f"road imputation needs images (N, C, H, W) or series (N, T, C) with masks (F, N, ...) "
                         f"over their positions, got x {tuple(x.shape)} and masks {tuple(removed.shape)}")
    if bool(removed.flatten(2).all(dim=2).any()):
        raise UsageError("road imputation needs at least one kept position per example: a fraction of 100% "
                         "removes everything (leave it out)")
    n_masks, n = removed.shape[:2]
    rows = x.detach().to("cpu", torch.float64).unsqueeze(0).expand(n_masks, *x.shape).reshape(-1, *x.shape[1:])
    mask = removed.detach().cpu().reshape(-1, *removed.shape[2:])
    out = _linear_solve(rows, mask) if x.ndim == 4 else _interpolate_series(rows, mask)
    if noise > 0:
        draws = torch.stack([torch.randn((n_masks, *x.shape[1:]), generator=seeded_generator(seed, "road", first + i),
                                         dtype=torch.float64) for i in range(n)], dim=1).reshape(out.shape)
        hit = mask[:, None] if x.ndim == 4 else mask[..., None]
        out = torch.where(hit, out + noise * draws, out)
    return out.reshape(n_masks, *x.shape).to(device=x.device, dtype=x.dtype)
