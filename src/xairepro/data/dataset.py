"""Data set containers: :class:`XDataset` (any split of any set) and :class:`TensorXDataset`.

A split is a list of ``indices`` into a *source* that produces float32 inputs on demand:
an in-memory tensor (uint8 or float, converted per batch), bit-packed binary images, or
image files decoded with PIL. Images are (C, H, W) in [0, 1];
series are (T, C). Tensor-backed sets add ``tensors()`` (the engine's fast path); file-backed
sets do not, so they go through a DataLoader and ``ds[i]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from xairepro.data.info import DatasetInfo

__all__ = [
    "XDataset", "TensorXDataset", "ArraySource", "PackedBitsSource", "RemapSource", "ImageFileSource",
    "MaskFileSource", "IndexLike",
]

IndexLike = int | slice | Sequence[int] | Tensor | np.ndarray
Device = torch.device | str | None


class ArraySource:
    """Inputs held as one tensor (N, ...): uint8 divided by ``scale`` per batch, float as is, bool as is."""

    def __init__(self, data: Tensor, scale: float | None = None) -> None:
        self.data = data
        self.scale = scale

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def get(self, index: Tensor, device: Device = None) -> Tensor:
        out = self.data.index_select(0, index.to(self.data.device))
        if device is not None:
            out = out.to(device)
        if out.dtype == torch.bool:
            return out
        out = out.to(torch.float32)
        return out / self.scale if self.scale not in (None, 1, 1.0) else out


class PackedBitsSource:
    """Binary images (N, H, W) stored with 8 pixels per byte (``np.packbits`` along W); get -> (B, 1, H, W)."""

    def __init__(self, packed: Tensor, width: int) -> None:
        self.packed = packed
        self.width = int(width)

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    def get(self, index: Tensor, device: Device = None) -> Tensor:
        rows = self.packed.index_select(0, index.to(self.packed.device))
        if device is not None:
            rows = rows.to(device)
        shifts = torch.arange(7, -1, -1, device=rows.device, dtype=torch.uint8)
        bits = (rows.unsqueeze(-1) >> shifts) & 1
        bits = bits.reshape(*rows.shape[:-1], -1)[..., : self.width]
        return bits.unsqueeze(1).to(torch.float32)


class RemapSource:
    """A source holding only some rows of a pool: pool index -> row via ``row_of`` (N_pool,)."""

    def __init__(self, inner: Any, row_of: Tensor) -> None:
        self.inner = inner
        self.row_of = row_of

    def __len__(self) -> int:
        return int(self.row_of.numel())

    def get(self, index: Tensor, device: Device = None) -> Tensor:
        rows = self.row_of.index_select(0, index.cpu())
        if bool((rows < 0).any()):
            raise IndexError("example not held by this split")
        return self.inner.get(rows, device)


def _resize_crop(img: Any, size: int, resize: int, resample: int) -> Any:
    """PIL image -> short side ``resize`` -> centre crop ``size`` x ``size``."""
    w, h = img.size
    scale = resize / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


class ImageFileSource:
    """Image files decoded with PIL: RGB, short side resized to ``resize``, centre-cropped to ``size``."""

    def __init__(self, paths: Sequence[Path], size: int, resize: int | None = None) -> None:
        self.paths = list(paths)
        self.size = int(size)
        self.resize = int(resize or size)

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, i: int) -> Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            img = _resize_crop(im.convert("RGB"), self.size, self.resize, Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def get(self, index: Tensor, device: Device = None) -> Tensor:
        out = torch.stack([self.decode(int(i)) for i in index.tolist()]) if len(index) else \
            torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        if device is not None:
            out = out.to(device)
        return out.to(torch.float32) / 255.0


class MaskFileSource:
    """Segmentation PNGs -> bool masks (B, H, W): every value other than ``background`` is foreground.

    Resized like the images (nearest neighbour) so a mask stays aligned with its image.
    """

    def __init__(self, paths: Sequence[Path], size: int, resize: int | None = None, background: int = 0) -> None:
        self.paths = list(paths)
        self.size = int(size)
        self.resize = int(resize or size)
        self.background = int(background)

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, i: int) -> Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                im = im.convert("L")
            img = _resize_crop(im, self.size, self.resize, Image.Resampling.NEAREST)
            arr = np.asarray(img)
        return torch.from_numpy(arr != self.background)

    def get(self, index: Tensor, device: Device = None) -> Tensor:
        out = torch.stack([self.decode(int(i)) for i in index.tolist()]) if len(index) else \
            torch.zeros(0, self.size, self.size, dtype=torch.bool)
        return out.to(device) if device is not None else out


class XDataset(Dataset):
    """One split of a data set: ``len``, ``ds[i] -> (x, y)``, ``batch(index)``, ``targets``, ``info``.

    ``x`` is float32 (C, H, W) in [0, 1] for images, (T, C) for series; ``y`` an int label.
    Optional extras: ``masks`` (N, H, W) bool for segmentation sets, ``latents`` (N, K) float32
    and ``latent_classes`` (N, K) int64 for dSprites. ``indices`` are the examples' positions in
    the source files (provenance). File-backed sets decode lazily and have no ``tensors()``.
    """

    def __init__(self, info: DatasetInfo, split: str, indices: Tensor, targets: Tensor, images: Any, *,
                 masks: Any = None, latents: Tensor | None = None, latent_classes: Tensor | None = None,
                 files: Sequence[Path] | None = None) -> None:
        self.info = info
        self.split = split
        self.indices = indices.to(torch.long)
        self.targets = targets.to(torch.long).index_select(0, self.indices)
        self._images = images
        self._masks = masks
        self.latents = None if latents is None else latents.index_select(0, self.indices).to(torch.float32)
        self.latent_classes = None if latent_classes is None else \
            latent_classes.index_select(0, self.indices).to(torch.long)
        self.files = None if files is None else [files[i] for i in self.indices.tolist()]

    # -- descriptive -------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in label order (``class_names[y]`` names label ``y``)."""
        return self.info.class_names

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def has_masks(self) -> bool:
        return self._masks is not None

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.info.input_shape)
        return f"{type(self).__name__}({self.info.name!r}, split={self.split!r}, n={len(self)}, input={shape})"

    # -- access ------------------------------------------------------------------------------
    def _positions(self, index: IndexLike) -> Tensor:
        n = len(self)
        if isinstance(index, slice):
            return torch.arange(n)[index]
        pos = torch.as_tensor(np.asarray(index) if isinstance(index, np.ndarray) else index)
        if pos.dtype == torch.bool:
            if pos.shape != (n,):
                raise IndexError(f"boolean index of shape {tuple(pos.shape)} for a split of {n} examples")
            return pos.nonzero().flatten()
        if pos.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        if pos.is_floating_point() or pos.is_complex():
            raise IndexError(f"indices must be integers, got {pos.dtype}")
        pos = pos.to(torch.long).flatten().cpu()
        if pos.numel() and (int(pos.min()) < -n or int(pos.max()) >= n):
            raise IndexError(f"index out of range for {self.info.name} {self.split} split of {n} examples")
        return torch.where(pos < 0, pos + n, pos)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if isinstance(i, Tensor):
            i = int(i)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"ds[i] takes one integer index; use ds.batch(index) for {type(i).__name__}")
        pos = self._positions([int(i)])
        x = self._images.get(self.indices.index_select(0, pos))[0]
        return x, int(self.targets[pos[0]])

    def batch(self, index: IndexLike, device: Device = None) -> tuple[Tensor, Tensor]:
        """Inputs (B, ...) float32 and labels (B,) int64 of the examples at ``index`` (on ``device``)."""
        pos = self._positions(index)
        x = self._images.get(self.indices.index_select(0, pos), device)
        y = self.targets.index_select(0, pos)
        return x, (y.to(device) if device is not None else y)

    def batch_masks(self, index: IndexLike, device: Device = None) -> Tensor:
        """Binary object masks (B, H, W) of the examples at ``index`` (segmentation sets only)."""
        if self._masks is None:
            raise AttributeError(f"{self.info.name} has no masks (task {self.info.task!r})")
        pos = self._positions(index)
        return self._masks.get(self.indices.index_select(0, pos), device)

    @property
    def masks(self) -> Tensor | None:
        """All masks of the split (N, H, W) bool, or ``None`` for sets without masks."""
        if self._masks is None:
            return None
        return self.batch_masks(slice(None))


class TensorXDataset(XDataset):
    """A split whose inputs are cheap to materialise: adds ``tensors()`` (the engine's fast path)."""

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All inputs (N, ...) float32 and labels (N,) int64 of the split, on the CPU."""
        return self.batch(slice(None))
