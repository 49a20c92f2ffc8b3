"""Batched augmentations (SPEC 4) as tensor ops on any device, seeded by a ``torch.Generator``.

Every transform is called as ``t(x, generator=g)`` on a batch (B, C, H, W) (or one (C, H, W)
image) and returns a new tensor on ``x``'s device; ``x`` is never modified. Random parameters
are drawn on the generator's device and then moved to ``x``'s, so a CPU generator gives the same
crops on CPU and GPU. ``sample(...)`` returns the parameters and ``apply(...)`` uses them, so a
test (or a paired view) can reuse one draw.

- :class:`RandomCropFlip`: pad by ``padding`` (reflect / zeros / replicate) and crop back to
  H x W at a random offset, then flip horizontally with probability 1/2 (CIFAR, LICO).
- :class:`RandomResizedCropFlip`: ImageNet-style random resized crop (area ``scale``, aspect
  ``ratio``, torchvision's 10-attempt rule with its centre-crop fallback) + flip.
- :class:`ResizeCenterCrop`: eval transform, short side to ``resize`` then centre crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from xairepro.data.info import DatasetInfo

__all__ = ["RandomCropFlip", "RandomResizedCropFlip", "ResizeCenterCrop", "Normalize", "Compose",
           "default_train_transform"]

PAD_MODES = ("reflect", "zeros", "replicate")


def _as_batch(x: Tensor) -> tuple[Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"expected images (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x, False


def _to_integer(x: Tensor, dtype: torch.dtype) -> Tensor:
    """A float result back in an integer image dtype: rounded to the nearest value in range, not truncated."""
    info = torch.iinfo(dtype)
    return x.round().clamp(info.min, info.max).to(dtype)


def _draw_device(generator: torch.Generator | None, x: Tensor) -> torch.device:
    return generator.device if generator is not None else x.device


def _reflect(idx: Tensor, n: int, mode: str) -> tuple[Tensor, Tensor | None]:
    """Source indices for padded positions ``idx`` of an axis of length ``n`` (+ validity for zeros)."""
    if mode == "reflect":
        idx = idx.abs()
        return torch.where(idx > n - 1, 2 * (n - 1) - idx, idx), None
    valid = (idx >= 0) & (idx <= n - 1) if mode == "zeros" else None
    return idx.clamp(0, n - 1), valid


class RandomCropFlip:
    """Random crop of the padded image back to its own size + horizontal flip (p = 1/2).

    out[b, :, i, j] = pad(x)[b, :, oy_b + i, ox_b + j'] with j' = j or W - 1 - j when flipped;
    offsets oy, ox ~ U{0..2 padding}. ``padding=0`` is a flip only.
    """

    def __init__(self, padding: int = 4, mode: str = "reflect", flip: bool = True) -> None:
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        if mode not in PAD_MODES:
            raise ValueError(f"mode must be one of {', '.join(PAD_MODES)}, got {mode!r}")
        self.padding, self.mode, self.flip = padding, mode, bool(flip)

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, mode={self.mode!r}, flip={self.flip})"

    def sample(self, batch: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """Offsets (oy, ox) in [0, 2 padding] and flip flags, each (batch,), on the generator's device."""
        dev = generator.device if generator is not None else torch.device(device)
        span = 2 * self.padding + 1
        oy = torch.randint(0, span, (batch,), generator=generator, device=dev)
        ox = torch.randint(0, span, (batch,), generator=generator, device=dev)
        flip = torch.rand(batch, generator=generator, device=dev) < 0.5
        return oy, ox, flip & self.flip

    def apply(self, x: Tensor, oy: Tensor, ox: Tensor, flip: Tensor) -> Tensor:
        """The crops/flips given by ``sample`` (one gather per axis, no padded copy)."""
        xb, single = _as_batch(x)
        b, c, h, w = xb.shape
        if self.mode == "reflect" and self.padding > min(h, w) - 1:
            raise ValueError(f"reflect padding {self.padding} needs images larger than {self.padding} px, "
                             f"got {h} x {w}")
        oy, ox, flip = oy.to(xb.device), ox.to(xb.device), flip.to(xb.device)
        rows = oy[:, None] - self.padding + torch.arange(h, device=xb.device)
        cols = ox[:, None] - self.padding + torch.arange(w, device=xb.device)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        rows, row_ok = _reflect(rows, h, self.mode)
        cols, col_ok = _reflect(cols, w, self.mode)
        out = xb.gather(2, rows[:, None, :, None].expand(b, c, h, w))
        out = out.gather(3, cols[:, None, None, :].expand(b, c, h, w))
        if row_ok is not None:
            keep = row_ok[:, None, :, None] & col_ok[:, None, None, :]
            out = out * keep.to(out.dtype)
        return out[0] if single else out

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        xb, _ = _as_batch(x)
        params = self.sample(xb.shape[0], generator, device=_draw_device(generator, x))
        return self.apply(x, *params)


class RandomResizedCropFlip:
    """ImageNet train transform: random crop of area ``scale`` x H W and aspect ``ratio``, resized
    to ``size`` x ``size`` (``roi_align``: one bilinear sample per output pixel when enlarging, the
    mean of ceil(box / size)^2 samples when shrinking; samples near the box edge may use the pixels
    just outside it instead of clamping), then a horizontal flip (p = 1/2). Boxes follow
    torchvision's rule: 10 attempts, else a centre crop."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio!r}")
        self.size, self.scale, self.ratio, self.flip = size, tuple(scale), tuple(ratio), bool(flip)

    def __repr__(self) -> str:
        return f"RandomResizedCropFlip(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip})"

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", attempts: int = 10) -> tuple[Tensor, Tensor]:
        """Boxes (batch, 4) as (top, left, h, w) integer pixels and flip flags (batch,)."""
        dev = generator.device if generator is not None else torch.device(device)
        area = height * width
        target = area * (self.scale[0] + (self.scale[1] - self.scale[0])
                         * torch.rand(batch, attempts, generator=generator, device=dev, dtype=torch.float64))
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * torch.rand(batch, attempts, generator=generator, device=dev,
                                                        dtype=torch.float64))
        w = torch.sqrt(target * aspect).round().long()
        h = torch.sqrt(target / aspect).round().long()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.to(torch.int8).argmax(1)
        rows = torch.arange(batch, device=dev)
        h, w, found = h[rows, first], w[rows, first], ok.any(1)
        # fallback: the largest centre crop whose aspect lies in ratio
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fh, fw = height, int(round(height * self.ratio[1]))
        else:
            fw, fh = width, height
        h = torch.where(found, h, torch.full_like(h, fh))
        w = torch.where(found, w, torch.full_like(w, fw))
        u = torch.rand(batch, 2, generator=generator, device=dev, dtype=torch.float64)
        top = torch.where(found, (u[:, 0] * (height - h + 1)).floor().long(), (height - h) // 2)
        left = torch.where(found, (u[:, 1] * (width - w + 1)).floor().long(), (width - w) // 2)
        flip = (torch.rand(batch, generator=generator, device=dev) < 0.5) & self.flip
        return torch.stack([top, left, h, w], 1), flip

    def apply(self, x: Tensor, boxes: Tensor, flip: Tensor) -> Tensor:
        """Crop each image to its box, resize to ``size``, flip where flagged."""
        from torchvision.ops import roi_align

        xb, single = _as_batch(x)
        xf = xb if xb.is_floating_point() else xb.float()
        boxes = boxes.to(xb.device, torch.float32)
        b = xb.shape[0]
        rois = torch.stack([torch.arange(b, device=xb.device, dtype=torch.float32), boxes[:, 1], boxes[:, 0],
                            boxes[:, 1] + boxes[:, 3], boxes[:, 0] + boxes[:, 2]], 1)
        out = roi_align(xf, rois, output_size=(self.size, self.size), spatial_scale=1.0, sampling_ratio=-1,
                        aligned=True)
        out = torch.where(flip.to(xb.device)[:, None, None, None], out.flip(-1), out)
        out = out if xb.is_floating_point() else _to_integer(out, xb.dtype)
        return out[0] if single else out

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        xb, _ = _as_batch(x)
        boxes, flip = self.sample(xb.shape[0], xb.shape[2], xb.shape[3], generator, _draw_device(generator, x))
        return self.apply(x, boxes, flip)


class ResizeCenterCrop:
    """Eval transform: resize so the short side is ``resize`` (bilinear, antialiased), centre-crop ``crop``."""

    def __init__(self, resize: int, crop: int | None = None) -> None:
        self.resize = int(resize)
        self.crop = int(crop if crop is not None else resize)
        if self.crop > self.resize or self.crop < 1:
            raise ValueError(f"crop ({self.crop}) must be between 1 and resize ({self.resize})")

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(resize={self.resize}, crop={self.crop})"

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        xb, single = _as_batch(x)
        h, w = xb.shape[-2:]
        s = self.resize / min(h, w)
        nh, nw = max(self.crop, round(h * s)), max(self.crop, round(w * s))
        if (nh, nw) != (h, w):
            resized = F.interpolate(xb.float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
            xb = resized.to(xb.dtype) if xb.is_floating_point() else _to_integer(resized, xb.dtype)
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        out = xb[..., top:top + self.crop, left:left + self.crop]
        return out[0] if single else out


class Normalize:
    """(x - mean) / std per channel; models usually carry this as their first layer instead."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = torch.tensor(list(mean)), torch.tensor(list(std))
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        shape = (-1, 1, 1)
        return (x - self.mean.to(x).view(shape)) / self.std.to(x).view(shape)


class Compose:
    """Apply transforms in order, passing the same generator to each."""

    def __init__(self, *transforms: object) -> None:
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)  # type: ignore[operator]
        return x


def default_train_transform(info: DatasetInfo) -> RandomCropFlip | RandomResizedCropFlip | None:
    """The SPEC-4 training augmentation named by ``info.augmentation`` (``None`` for "none")."""
    if info.augmentation == "crop-flip":
        return RandomCropFlip(padding=4, mode="reflect")
    if info.augmentation == "crop":
        return RandomCropFlip(padding=4, mode="reflect", flip=False)
    if info.augmentation == "resized-crop-flip":
        return RandomResizedCropFlip(info.input_shape[-1])
    return None
