"""Shared machinery of the perturbation metrics (insertion/deletion, pixel flipping, ROAD, ...).

* ``Settings``: a frozen-dataclass mixin giving every metric's settings ``to_dict()`` and ``digest``.
* ``class_scores``: the score of one class per row, softmax probability or raw logit.
* ``score_images``: batched forwards of unmodified images -> (logits, target classes, scores).
* ``replacement_scores``: the batched engine for "replace the pixels ranked below a threshold":
  job j scores ``where(ranks[rank_row_j] < threshold_j, finishes[image_j], starts[image_j])``; a chunk
  of ``batch_size`` jobs is filled in a reused buffer, one broadcast ``where`` per run of consecutive
  jobs that share (image, rank_row), so no per-row gather of whole images.
* ``seeded_generator``: one CPU generator per (seed, image index), so noise and random subsets of an
  image do not depend on how the batch is chunked.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from xairepro.config import config_hash
from xairepro.errors import UsageError
from xairepro.imaging import auto_batch_size, batched_forward, check_images, check_maps, resolve_targets
from xairepro.utils import derive_seed, make_generator, progress

SCORES = ("softmax", "raw")


class Settings:
    """Mixin for frozen dataclasses of metric settings: ``to_dict()`` and a stable ``digest``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every public field (tuples become lists; ``_private`` fields left out)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self) if not f.name.startswith("_")}  # type: ignore[arg-type]

    @property
    def digest(self) -> str:
        """Stable 16-hex hash of ``to_dict()`` (independent of the Python hash seed)."""
        return config_hash(self.to_dict())


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """One-line ``UsageError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    """One-line ``UsageError`` unless ``value`` is an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an int >= {minimum}, got {value!r}")


def checked_inputs(images: torch.Tensor, saliency: torch.Tensor, batch_size: int | None
                   ) -> tuple[torch.Tensor, int]:
    """Check images (B, C, H, W) and maps (B, H, W) in the user's terms; -> (maps as (B, H, W), batch size).

    ``batch_size=None`` gives the device's default (32 forwards on the CPU, 256 on a GPU).
    """
    check_images(images)
    saliency = check_maps(saliency, images)
    batch_size = auto_batch_size(images.device) if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return saliency, batch_size


def class_scores(logits: torch.Tensor, classes: torch.Tensor, score: str) -> torch.Tensor:
    """Score of ``classes`` (N,) in ``logits`` (N, K) -> float32 (N,): softmax probability or raw logit."""
    logits = logits.float()
    if score == "softmax":
        logits = torch.softmax(logits, dim=1)
    return logits.gather(1, classes[:, None].to(logits.device))[:, 0]


def score_images(model: nn.Module, x: torch.Tensor, targets: object, score: str, batch_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward unmodified images (B, C, H, W) in batches -> (logits (B, K), targets (B,), scores (B,)).

    ``targets``: None (the predicted class), an int or a LongTensor (B,), range-checked against the
    model's classes.  Call inside ``inference_mode`` and ``preserved_state``.
    """
    logits = torch.cat([batched_forward(model, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    classes = resolve_targets(targets, logits, x.shape[0], x.device)  # type: ignore[arg-type]
    return logits, classes, class_scores(logits, classes, score)


def seeded_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and ``keys`` (e.g. the metric's name and the image index)."""
    return make_generator(derive_seed(int(seed), *keys))


def replacement_scores(model: nn.Module, starts: torch.Tensor, finishes: torch.Tensor, ranks: torch.Tensor,
                       job_image: torch.Tensor, job_rank_row: torch.Tensor, job_threshold: torch.Tensor,
                       job_target: torch.Tensor, score: str, batch_size: int, *, show_progress: bool = False,
                       desc: str = "perturbation") -> torch.Tensor:
    """Score of every job's image ``where(ranks[rank_row] < threshold, finishes[image], starts[image])``.

    starts, finishes: (R, C, H, W) on the model's device; ranks: (Q, 1, H, W) integer ranks (or region
    ranks) on the same device; job_image, job_rank_row, job_threshold: (J,) CPU LongTensors; job_target
    (J,) classes on the device.  Returns float32 (J,) scores.  Call inside ``inference_mode`` and
    ``preserved_state``.  Jobs that share (image, rank_row) should be consecutive: each run costs one
    broadcast ``where`` per chunk it touches.
    """
    device = starts.device
    total = int(job_image.numel())
    out = torch.empty(total, device=device, dtype=torch.float32)
    if total == 0:
        return out
    _, c, h, w = starts.shape
    thresholds = job_threshold.to(device=device, dtype=ranks.dtype).view(-1, 1, 1, 1)
    # runs of consecutive jobs with the same (image, rank_row), as Python ints (no device reads later)
    change = (job_image[1:] != job_image[:-1]) | (job_rank_row[1:] != job_rank_row[:-1])
    bounds = [0] + (torch.nonzero(change).flatten() + 1).tolist() + [total]
    images, rows = job_image.tolist(), job_rank_row.tolist()
    runs = [(a, b, images[a], rows[a]) for a, b in zip(bounds[:-1], bounds[1:])]
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format  # see batched_forward
    staging = torch.empty((min(batch_size, total), c, h, w), device=device, dtype=starts.dtype,
                          memory_format=layout)
    chunks = range(0, total, batch_size)
    run_index = 0
    for start in progress(chunks, enabled=show_progress, total=len(chunks), desc=desc):
        stop = min(start + batch_size, total)
        pos = start
        while pos < stop:                          # fill the chunk run by run
            while runs[run_index][1] <= pos:
                run_index += 1
            _, run_stop, image, row = runs[run_index]
            n = min(stop, run_stop) - pos
            torch.where(ranks[row] < thresholds[pos:pos + n], finishes[image], starts[image],
                        out=staging[pos - start:pos - start + n])
            pos += n
        out[start:stop] = class_scores(batched_forward(model, staging[:stop - start]), job_target[start:stop], score)
    return out


def check_saliency_range(saliency: torch.Tensor, what: str) -> None:
    """One-line ``UsageError`` unless every saliency value is in [0, 1] (needed where x * s is an image)."""
    low, high = float(saliency.min()), float(saliency.max())
    if low < 0.0 or high > 1.0:
        raise UsageError(f"saliency must be in [0, 1] for {what} (got values in [{low:.3g}, {high:.3g}]); "
                         "normalise the maps first, e.g. per-image min-max")


def percent_counts(percentages: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Pixels removed for each percentage p of ``n_pixels``: floor(p * HW / 100) (as ROAD and Quantus)."""
    return torch.floor(percentages.double() * n_pixels / 100 + 1e-9).long()


def check_percentages(percentages: object, *, upper_open: bool = True) -> torch.Tensor:
    """Percentages removed as a float64 tensor (P,), each in [0, 100) (or [0, 100] with ``upper_open=False``)."""
    if isinstance(percentages, (int, float)) and not isinstance(percentages, bool):
        percentages = [percentages]
    try:
        p = torch.as_tensor(percentages, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise UsageError(f"percentages must be a list of numbers, got {percentages!r}") from None
    if p.numel() == 0:
        raise UsageError("percentages is empty: give at least one percentage of pixels to remove")
    high = "100)" if upper_open else "100]"
    bad = (p < 0) | (p >= 100 if upper_open else p > 100) | ~torch.isfinite(p)
    if bool(bad.any()):
        raise UsageError(f"percentages must lie in [0, {high}, got {p[bad][0].item():g}")
    return p
