"""Image and tensor helpers every layer shares (ground floor: imports only torch and ``xairepro.errors``).

- input checks in the user's terms: :func:`check_images` (batches of images, for models, explainers and
  metrics alike) and :func:`check_maps` (saliency maps against their images);
- :func:`resolve_targets`: a class index per image from ``None`` (the prediction), an int or a sequence;
- :func:`normalize_maps`: per-image min-max to [0, 1];
- :func:`gaussian_blur`: a separable Gaussian blur in pixel space, of images (B, C, H, W) or series (N, T, C);
- :func:`batched_forward` / :func:`auto_batch_size`: forwards of many perturbed images, fast on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError

__all__ = [
    "Target", "GPU_BATCH_SIZE", "CPU_BATCH_SIZE", "BLUR_KERNEL", "BLUR_SIGMA", "auto_batch_size", "batched_forward",
    "check_images", "check_maps", "resolve_targets", "normalize_maps", "gaussian_kernel1d", "gaussian_blur",
]

#: A class per image: ``None`` (the model's prediction), one int for all, or one per image.
Target = int | torch.Tensor | Sequence[int] | None

#: Sigma of every Gaussian blur substrate: Petsiuk et al.'s insertion start (and the LICO reproduction's),
#: and the label-free study's replacement and attribution baseline (seed 003).
BLUR_SIGMA = 5.0
#: Kernel of the label-free study's blur (seed 003: 21 x 21 on CIFAR-10), the default of :func:`gaussian_blur`.
BLUR_KERNEL = 21


#: Forwards per batch when none is given: large on accelerators; cache-sized on the CPU, where 32
#: images of 32 px ran 1.3-3x faster per image than 256 for WRN-28-2 (docs/benchmarks.md).
GPU_BATCH_SIZE, CPU_BATCH_SIZE = 256, 32


def auto_batch_size(device: torch.device | str) -> int:
    """Default forwards per batch on ``device``: 32 on the CPU, 256 elsewhere."""
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE


def batched_forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` for a batch of many perturbed images, in the fastest memory layout.

    On the CPU, 4-D inputs go in channels-last (NHWC): oneDNN's convolutions run about 10-30% faster
    per image than on NCHW at batch 32 (docs/benchmarks.md). The tensor's values and logical shape are
    the same; only float rounding in the convolutions can differ (~1e-6).
    """
    if images.device.type == "cpu" and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return model(images)


def check_images(x: object, who: str = "images", *, channels: int | None = None,
                 size: tuple[int, int] | None = None, min_size: int = 1, strict: bool = True,
                 model: nn.Module | None = None) -> None:
    """Raise a one-line :class:`UsageError` naming ``who`` unless ``x`` is a float batch (B, C, H, W).

    ``channels`` fixes C; ``size`` fixes (H, W) exactly, otherwise both sides must be at least ``min_size``.
    ``strict`` (explainers and metrics) also refuses an empty batch and NaN or infinite values; a model's
    forward checks with ``strict=False`` (reading every value would cost a pass over the batch). Given a
    ``model``, the images must also have the floating dtype of its weights (explainers: torch's own error
    would name neither).
    """
    want = f"(B, {channels if channels is not None else 'C'}, H, W)"
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"{who} expects a tensor of images, got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise UsageError(f"{who} expects a batch of images shaped {want}, got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise UsageError(f"{who} expects float images in [0, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        got = f"{int(x.shape[1])} channel" + ("" if x.shape[1] == 1 else "s")
        raise UsageError(f"{who} expects {channels}-channel images, got {got}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if size is not None and (h, w) != tuple(size):
        raise UsageError(f"{who} expects {size[0]} x {size[1]} images, got {h} x {w}")
    if h < min_size or w < min_size:
        raise UsageError(f"{who} expects images of at least {min_size} x {min_size} pixels, got {h} x {w}")
    if strict and x.shape[0] == 0:
        raise UsageError(f"{who} got an empty batch (shape {tuple(x.shape)})")
    if strict and not bool(torch.isfinite(x).all()):
        raise UsageError(f"{who} got images with NaN or infinite values")
    params = model.parameters() if isinstance(model, nn.Module) else ()
    weight = next((p for p in params if p.is_floating_point()), None)
    if weight is not None and weight.dtype != x.dtype:
        raise UsageError(f"{who}: images are {str(x.dtype).removeprefix('torch.')} but the model's weights are "
                         f"{str(weight.dtype).removeprefix('torch.')}; convert one to the other "
                         f"(e.g. images.to({weight.dtype}))")


def check_maps(maps: torch.Tensor, images: torch.Tensor, name: str = "saliency") -> torch.Tensor:
    """Check that ``maps`` is (B, H, W) (or (B, 1, H, W)) for images (B, C, H, W); return it as (B, H, W)."""
    if not isinstance(maps, torch.Tensor):
        raise UsageError(f"{name} must be a tensor, got {type(maps).__name__}")
    b, _, h, w = images.shape
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != b or tuple(maps.shape[1:]) != (h, w):
        raise UsageError(
            f"{name} has shape {tuple(maps.shape)} but images are {b} x {h} x {w} "
            f"(expected ({b}, {h}, {w}))")
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        raise UsageError(f"{name} contains NaN or infinite values")
    return maps


def resolve_targets(target: Target, logits: torch.Tensor | None, batch: int,
                    device: torch.device, num_classes: int | None = None) -> torch.Tensor:
    """Class index per image as a LongTensor (B,) on ``device``.

    ``None`` -> ``logits.argmax(1)``; an int -> the same class for every image; a sequence or
    LongTensor of length B -> one class per image.  Out-of-range classes raise ``UsageError``.
    """
    if target is None:
        if logits is None:
            raise UsageError("target=None needs the model's predictions")
        return logits.argmax(dim=1).to(device)
    if isinstance(target, bool):
        raise UsageError(f"target must be an int or a LongTensor of class indices, got {target!r}")
    if isinstance(target, int):
        t = torch.full((batch,), int(target), dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise UsageError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long().reshape(-1) if t.dim() == 0 else t.long()
        if t.dim() == 1 and t.numel() == 1 and batch != 1:
            t = t.expand(batch)
        if t.dim() != 1 or t.numel() != batch:
            raise UsageError(f"target has shape {tuple(t.shape)} but there are {batch} images")
    if num_classes is None and logits is not None:
        num_classes = logits.shape[1]
    low, high = int(t.min()), int(t.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bad = low if low < 0 else high
        limit = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise UsageError(f"target class {bad} is out of range (the model has classes {limit})")
    return t


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1]: (s - min) / (max - min); a constant map becomes zeros.  (B, H, W)."""
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny),
                      torch.zeros_like(flat))
    return out.clamp_(0.0, 1.0).reshape(maps.shape)


def gaussian_kernel1d(kernel_size: int, sigma: float, device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian g_i = exp(-(i - c)^2 / (2 sigma^2)) / sum, c = (k - 1) / 2.  (k,)."""
    if isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
        raise UsageError(f"blur kernel size must be an odd positive int, got {kernel_size}")
    if not sigma > 0:
        raise UsageError(f"blur sigma must be > 0, got {sigma}")
    pos = torch.arange(kernel_size, device=device, dtype=torch.float64) - (kernel_size - 1) / 2
    k = torch.exp(-pos.pow(2) / (2.0 * float(sigma) ** 2))
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA, *,
                  strict: bool = False) -> torch.Tensor:
    """Separable Gaussian blur per channel, in pixel space: images (B, C, H, W) over H and W, series
    (N, T, C) over T.  Same shape out.

    Borders are reflected (as torchvision's ``gaussian_blur``).  A side not longer than
    ``kernel_size // 2`` cannot be reflected: its border is replicated instead, or, with ``strict``,
    :class:`UsageError` says the input is too small for the kernel.
    """
    if x.ndim not in (3, 4):
        raise UsageError(f"blur works on images (N, C, H, W) or series (N, T, C), got shape {tuple(x.shape)}")
    k = gaussian_kernel1d(kernel_size, sigma, x.device, x.dtype)
    if kernel_size == 1:
        return x.clone()
    pad = kernel_size // 2
    sides = tuple(x.shape[2:]) if x.ndim == 4 else (x.shape[1],)
    if strict and min(sides) <= pad:
        what = "images" if x.ndim == 4 else "series"
        unit, got = ("px", " x ".join(map(str, sides))) if x.ndim == 4 else ("steps", str(sides[0]))
        raise UsageError(f"a blur kernel of {kernel_size} needs {what} larger than {pad} {unit}, got {got}")
    mode = "reflect" if min(sides) > pad else "replicate"
    if x.ndim == 3:
        n, t, c = x.shape
        y = x.permute(0, 2, 1).reshape(n * c, 1, t)
        y = F.conv1d(F.pad(y, (pad, pad), mode=mode), k.view(1, 1, -1))
        return y.reshape(n, c, t).permute(0, 2, 1)
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)
