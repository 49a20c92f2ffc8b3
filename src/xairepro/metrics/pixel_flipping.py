"""Pixel flipping (Bach et al. 2015) and region perturbation (Samek et al. 2017), whole pixels at a time.

Features are flipped in order of relevance and the target score is recorded after every step.  A
feature is a pixel (``region_size=1``) or an r x r cell of a non-overlapping grid (``region_size=r``,
centred on the image so the edge cells are the partial ones, as in Quantus); a cell's relevance is the
sum of its saliency.  Flipping replaces **all channels** of the feature's pixels by the baseline:

    "zeros":   black                          "mean":  the image's per-channel mean
    "uniform": U(0, 1) noise per pixel and channel (Samek et al.), image i's noise drawn from (seed, i)

With R features and s features per step there are n = ceil(R / s) steps; the curve holds the score at
k = 0..n (k = 0 is the unmodified image) and ``fractions`` the share of features flipped.  AUC is
the trapezoid on equally spaced points divided by n (as Petsiuk's deletion), so on pixels with the
"zeros" baseline pixel flipping equals deletion with the same step.  MoRF: lower AUC is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics._perturbation import (SCORES, Settings, check_choice, check_positive_int, checked_inputs,
                                            replacement_scores, score_images, seeded_generator)
from xairepro.metrics.insertion_deletion import DEFAULT_N_STEPS, auc, pixel_ranks
from xairepro.utils import preserved_state

__all__ = ["PixelFlippingResult", "PixelFlippingSettings", "pixel_flipping", "region_ranks"]

BASELINES = ("zeros", "mean", "uniform")
ORDERS = ("morf", "lerf")


@dataclass(frozen=True)
class PixelFlippingSettings(Settings):
    """Every choice of a pixel-flipping / region-perturbation run (stored with the result).

    Exactly one of ``regions_per_step`` and ``n_steps`` is set; neither gives ``n_steps = 28``
    (the Petsiuk deletion step).
    """

    region_size: int = 1
    regions_per_step: int | None = None
    n_steps: int | None = None
    baseline: str = "zeros"
    order: str = "morf"
    score: str = "softmax"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.regions_per_step is None and self.n_steps is None:
            object.__setattr__(self, "n_steps", DEFAULT_N_STEPS)
        if (self.regions_per_step is None) == (self.n_steps is None):
            raise UsageError("set exactly one of regions_per_step and n_steps "
                             f"(got regions_per_step={self.regions_per_step}, n_steps={self.n_steps})")
        check_positive_int("region_size", self.region_size)
        for name in ("regions_per_step", "n_steps"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("order", self.order, ORDERS)
        check_choice("score", self.score, SCORES)

    def flipped_counts(self, n_regions: int) -> torch.Tensor:
        """Features flipped after step k = 0..n: min(k * step, R), LongTensor (n + 1,)."""
        step = self.regions_per_step or math.ceil(n_regions / self.n_steps)  # type: ignore[operator]
        return (torch.arange(math.ceil(n_regions / step) + 1) * step).clamp_max(n_regions)


@dataclass(frozen=True)
class PixelFlippingResult:
    """Curves (B, n + 1) of the target score, the share of features flipped (n + 1,) and the settings."""

    curve: torch.Tensor
    fractions: torch.Tensor
    targets: torch.Tensor
    settings: PixelFlippingSettings

    @property
    def auc(self) -> torch.Tensor:
        """Area under each curve, (B,): uniform trapezoid / n (lower is better for MoRF)."""
        return auc(self.curve, self.fractions, "uniform")

    def summary(self) -> dict[str, float]:
        """``pixel_flipping``: the mean AUC over images."""
        return {"pixel_flipping": float(self.auc.mean())}


def region_ranks(saliency: torch.Tensor, region_size: int, order: str = "morf") -> tuple[torch.Tensor, int]:
    """Rank of every pixel's region (B, H, W) -> (LongTensor (B, H, W), number of regions R).

    Regions are the cells of an r x r grid centred on the image (when r does not divide H, the
    ceil(H / r) r - H missing rows are split floor-half before, ceil-half after, as Quantus pads), ranked
    by summed saliency (descending for "morf", ascending for "lerf"; ties by cell index, row-major);
    every pixel gets its cell's rank.
    """
    b, h, w = saliency.shape
    r = region_size
    cols = math.ceil(w / r)
    n_regions = math.ceil(h / r) * cols
    top, left = (-h % r) // 2, (-w % r) // 2                          # the grid is centred on the image
    cell = (((torch.arange(h, device=saliency.device) + top) // r)[:, None] * cols
            + ((torch.arange(w, device=saliency.device) + left) // r)[None, :]).flatten()        # (H*W,)
    sums = torch.zeros(b, n_regions, dtype=torch.float64, device=saliency.device)
    sums.index_add_(1, cell, saliency.reshape(b, -1).to(torch.float64))
    ranks = pixel_ranks(sums if order == "morf" else -sums)                             # (B, R)
    return ranks[:, cell].view(b, h, w), n_regions


def pixel_flipping(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: object = None, *,
                   region_size: int = 1, regions_per_step: int | None = None, n_steps: int | None = None,
                   baseline: str = "zeros", order: str = "morf", score: str = "softmax", seed: int = 0,
                   batch_size: int | None = None, show_progress: bool = False) -> PixelFlippingResult:
    """Pixel-flipping (``region_size=1``) or region-perturbation curves of ``saliency`` (B, H, W).

    ``images`` (B, C, H, W) in pixel space; ``targets``: None (predicted class), int or LongTensor (B,).
    ``seed`` only matters for the "uniform" baseline.  The model is left as it was.
    """
    settings = PixelFlippingSettings(region_size, regions_per_step, n_steps, baseline, order, score, int(seed))
    saliency, batch_size = checked_inputs(images, saliency, batch_size)
    b, c, h, w = images.shape
    device = images.device
    ranks, n_regions = region_ranks(saliency.detach().to(device), region_size, order)
    ranks = ranks.to(torch.int32).view(b, 1, h, w)
    counts = settings.flipped_counts(n_regions)
    n_points = counts.numel()
    xs = images.detach()
    finishes = _baseline(xs, baseline, int(seed))
    with preserved_state(model), torch.inference_mode():
        _, classes, original = score_images(model, xs, targets, score, batch_size)
        steps = torch.arange(1, n_points)
        img_of = torch.arange(b).repeat_interleave(n_points - 1)
        flipped = replacement_scores(model, xs, finishes, ranks, img_of, img_of, counts[steps].repeat(b),
                                     classes[img_of.to(device)], score, batch_size, show_progress=show_progress,
                                     desc="pixel flipping")
        curve = torch.cat([original[:, None], flipped.view(b, n_points - 1)], dim=1)
    fractions = counts.to(device=device, dtype=torch.float32) / n_regions
    return PixelFlippingResult(curve.clone(), fractions, classes.clone(), settings)


def _baseline(x: torch.Tensor, baseline: str, seed: int) -> torch.Tensor:
    """The replacement values (B, C, H, W) (possibly an expanded view) for images x."""
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    draws = [torch.rand(x.shape[1:], generator=seeded_generator(seed, "pixel-flipping", i)) for i in range(x.shape[0])]
    return torch.stack(draws).to(device=x.device, dtype=x.dtype)
