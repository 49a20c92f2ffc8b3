"""Faithfulness correlation (Bhatt et al. 2020): do the attributions of a pixel subset predict its effect?

For each image, R random subsets S_r of |S| pixels are replaced by the baseline (all channels); the
score is the Pearson correlation over r of

    sum_{i in S_r} s_i        and        f_t(x) - f_t(x with S_r replaced)

(higher is better).  Subsets are uniform without replacement, drawn per image from (seed, image index)
so chunking does not change them; ``subsets=`` (B, R, |S|) pixel indices replace the draw.  A subset
series with a constant attribution sum or a constant score drop has no correlation: NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import batched_forward
from xairepro.metrics._perturbation import (SCORES, Settings, check_choice, check_positive_int, checked_inputs,
                                            class_scores, score_images, seeded_generator)
from xairepro.utils import preserved_state, progress

__all__ = ["FaithfulnessCorrelationResult", "FaithfulnessCorrelationSettings", "faithfulness_correlation",
           "default_subset_size"]

BASELINES = ("zeros", "mean")


def default_subset_size(n_pixels: int) -> int:
    """|S| when none is given: Quantus' 224, at most a quarter of the pixels (>= 1)."""
    return max(1, min(224, n_pixels // 4))


@dataclass(frozen=True)
class FaithfulnessCorrelationSettings(Settings):
    """Every choice of a faithfulness-correlation run (``subset_size`` resolved to the pixels used)."""

    n_subsets: int = 100
    subset_size: int = 224
    baseline: str = "zeros"
    score: str = "raw"
    seed: int = 0
    given_subsets: bool = False

    def __post_init__(self) -> None:
        check_positive_int("n_subsets", self.n_subsets, minimum=2)
        check_positive_int("subset_size", self.subset_size)
        check_choice("baseline", self.baseline, BASELINES)
        check_choice("score", self.score, SCORES)


@dataclass(frozen=True)
class FaithfulnessCorrelationResult:
    """Per image: ``correlation`` (B,), and the series it came from, ``attribution_sums`` and
    ``score_drops`` (B, R)."""

    correlation: torch.Tensor
    attribution_sums: torch.Tensor
    score_drops: torch.Tensor
    targets: torch.Tensor
    settings: FaithfulnessCorrelationSettings

    def summary(self) -> dict[str, float]:
        """``faithfulness_correlation``: the mean over images with a defined correlation."""
        return {"faithfulness_correlation": float(torch.nanmean(self.correlation))}


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair of a, b (N, R) in float64 -> (N,); NaN for a constant row."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    den = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / den, torch.nan)


def faithfulness_correlation(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: object = None,
                             *, n_subsets: int = 100, subset_size: int | None = None, baseline: str = "zeros",
                             score: str = "raw", seed: int = 0, subsets: torch.Tensor | None = None,
                             batch_size: int | None = None, show_progress: bool = False
                             ) -> FaithfulnessCorrelationResult:
    """Faithfulness correlation of ``saliency`` (B, H, W) for ``images`` (B, C, H, W) in pixel space.

    ``subset_size`` defaults to ``default_subset_size(H * W)``; ``score`` "raw" (logit, Quantus'
    default) or "softmax"; ``subsets`` (B, R, |S|) LongTensor of flat pixel indices overrides the
    random draw (``n_subsets`` and ``subset_size`` are then read from it).
    """
    saliency, batch_size = checked_inputs(images, saliency, batch_size)
    b, c, h, w = images.shape
    hw = h * w
    device = images.device
    if subsets is not None:
        subsets = torch.as_tensor(subsets)
        if subsets.dim() != 3 or subsets.shape[0] != b or subsets.is_floating_point():
            raise UsageError(f"subsets must be a LongTensor (B={b}, R, |S|) of pixel indices, "
                             f"got shape {tuple(subsets.shape)}")
        if int(subsets.min()) < 0 or int(subsets.max()) >= hw:
            raise UsageError(f"subsets hold pixel indices outside 0..{hw - 1}")
        n_subsets, subset_size = subsets.shape[1], subsets.shape[2]
    subset_size = default_subset_size(hw) if subset_size is None else subset_size
    settings = FaithfulnessCorrelationSettings(n_subsets, subset_size, baseline, score, int(seed),
                                               subsets is not None)
    if subset_size >= hw:
        raise UsageError(f"subset_size {subset_size} must be smaller than the {hw} pixels of an image")
    if subsets is None:
        subsets = torch.stack([_draw_subsets(hw, n_subsets, subset_size, seed, i) for i in range(b)])
    subsets = subsets.to(device=device, dtype=torch.long).contiguous()
    sal = saliency.detach().to(device).reshape(b, -1).double()
    attribution_sums = sal.gather(1, subsets.view(b, -1)).view(b, n_subsets, subset_size).sum(dim=2)

    xs = images.detach()
    fill = torch.zeros_like(xs) if baseline == "zeros" else xs.mean(dim=(2, 3), keepdim=True).expand_as(xs)
    total = b * n_subsets
    drops = torch.empty(total, device=device, dtype=torch.float32)
    flat_subsets = subsets.view(total, subset_size)
    chunks = range(0, total, batch_size)
    with preserved_state(model), torch.inference_mode():
        _, classes, original = score_images(model, xs, targets, score, batch_size)
        for start in progress(chunks, enabled=show_progress, total=len(chunks), desc="faithfulness correlation"):
            stop = min(start + batch_size, total)
            image = torch.arange(start, stop, device=device) // n_subsets
            mask = torch.zeros(stop - start, hw, dtype=torch.bool, device=device)
            mask.scatter_(1, flat_subsets[start:stop], True)
            perturbed = torch.where(mask.view(-1, 1, h, w), fill[image], xs[image])
            after = class_scores(batched_forward(model, perturbed), classes[image], score)
            drops[start:stop] = original[image] - after
    score_drops = drops.view(b, n_subsets).clone()
    correlation = pearson_rows(attribution_sums, score_drops).float()
    return FaithfulnessCorrelationResult(correlation, attribution_sums.float(), score_drops, classes.clone(),
                                         settings)


def _draw_subsets(n_pixels: int, n_subsets: int, size: int, seed: int, index: int) -> torch.Tensor:
    """(R, |S|) uniform subsets without replacement for image ``index``: the |S| smallest of R x HW
    uniform keys per row."""
    keys = torch.rand((n_subsets, n_pixels), generator=seeded_generator(seed, "faithfulness-correlation", index))
    return keys.topk(size, dim=1, largest=False, sorted=False).indices
