"""dSprites: the official ``.npz`` and ``dsprites-gen``, the same factor grid rendered from its definition.

Factors, in the official column order of ``latents``: color (1 value: 1.0), shape (1, 2, 3 =
square, ellipse, heart), scale (6 values linspace(0.5, 1)), orientation (40 values
linspace(0, 2 pi)), posX and posY (32 values linspace(0, 1) each): 737,280 binary 64x64 images,
posY varying fastest. ``y`` is the shape class. Splits: 10% test (as the label-free study),
validation 5% of the rest, both by ``seed``.

Rendering (``dsprites-gen``): a pixel is on when its centre lies inside the sprite. The sprite
centre is at pixel coordinates 16 + 32 * pos (x to the right, y down, the image spanning
[0, 64)); ``scale`` multiplies a base radius of 10 px; the sprite is rotated by ``orientation``.
Square: max(|u|, |v|) <= 1; ellipse: u^2 + (v / 0.5)^2 <= 1; heart: the classic quartic heart
(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 scaled to about the same extent. This follows the published
definition, not DeepMind's renderer, so images are close to but not bit-identical with the
official ones (sprite size and position range are our estimates).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xairepro.data.class_names import DSPRITES_SHAPES
from xairepro.data.dataset import PackedBitsSource, RemapSource, TensorXDataset
from xairepro.data.files import cached
from xairepro.data.info import DatasetInfo
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import UsageError

__all__ = ["FACTOR_NAMES", "FACTOR_SIZES", "factor_values", "factor_grid", "render_dsprites", "read_dsprites"]

FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)
IMAGE_SIZE = 64
POSITION_RANGE = (16.0, 48.0)  # sprite centre in pixels for pos = 0 and pos = 1
BASE_RADIUS = 10.0  # pixels at scale 1
DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = f"https://github.com/google-deepmind/dsprites-dataset/raw/master/{DSPRITES_FILE}"
# Share of "on" pixels over the grid rendered by render_dsprites (all shapes, scales, orientations;
# positions barely matter); std is that of a Bernoulli pixel.
DSPRITES_MEAN = 0.0414
DSPRITES_STD = math.sqrt(DSPRITES_MEAN * (1 - DSPRITES_MEAN))


def factor_values() -> list[Tensor]:
    """The value grid of each factor (float64), in ``FACTOR_NAMES`` order."""
    return [torch.tensor([1.0], dtype=torch.float64),
            torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
            torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
            torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
            torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
            torch.linspace(0.0, 1.0, 32, dtype=torch.float64)]


def _strides(stride: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(stride, bool):
        raise UsageError(f"stride must be an int or a list of 5 or 6 ints, got {stride!r}")
    if isinstance(stride, int):
        out = (1,) + (stride,) * 5
    elif isinstance(stride, Sequence) and len(stride) in (5, 6) and all(
            isinstance(s, int) and not isinstance(s, bool) for s in stride):
        out = tuple(stride) if len(stride) == 6 else (1, *stride)
    else:
        raise UsageError(f"stride must be an int or a list of 5 (shape, scale, orientation, posX, posY) "
                         f"or 6 ints (color first), got {stride!r}")
    if any(s < 1 for s in out):
        raise UsageError(f"strides must be >= 1, got {stride!r}")
    return out


def factor_grid(stride: int | Sequence[int] = 1) -> tuple[Tensor, Tensor]:
    """(latents_values (N, 6) float64, latents_classes (N, 6) int64) of the sub-grid taking every
    ``stride``-th value of each factor, in the official order (posY fastest)."""
    steps = _strides(stride)
    classes = [torch.arange(0, size, s) for size, s in zip(FACTOR_SIZES, steps)]
    grid = torch.stack(torch.meshgrid(*classes, indexing="ij"), dim=-1).reshape(-1, 6)
    values = torch.stack([factor_values()[k][grid[:, k]] for k in range(6)], dim=1)
    return values, grid


def _sprite_mask(shape: int, u: Tensor, v: Tensor) -> Tensor:
    """Inside test of dSprites shape 1 (square), 2 (ellipse) or 3 (heart) in sprite units."""
    if shape == 1:
        return torch.maximum(u.abs(), v.abs()) <= 1.0
    if shape == 2:
        return u ** 2 + (v / 0.5) ** 2 <= 1.0
    hx, hy = 1.1 * u, 0.12 - 1.1 * v  # heart lobes point up (towards row 0) at orientation 0
    return (hx ** 2 + hy ** 2 - 1) ** 3 - hx ** 2 * hy ** 3 <= 0


def render_dsprites(latents: Tensor, size: int = IMAGE_SIZE, chunk: int = 2048) -> Tensor:
    """Binary sprites (B, 1, size, size) float32 from latents_values (B, 6) (see module docstring)."""
    out = torch.zeros(latents.shape[0], 1, size, size)
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) * (IMAGE_SIZE / size)  # pixel centres, 64-px units
    lo, hi = POSITION_RANGE
    for start in range(0, latents.shape[0], chunk):
        lat = latents[start:start + chunk].to(torch.float64)
        cx = (lo + (hi - lo) * lat[:, 4])[:, None, None]
        cy = (lo + (hi - lo) * lat[:, 5])[:, None, None]
        radius = (BASE_RADIUS * lat[:, 2])[:, None, None]
        cos, sin = torch.cos(lat[:, 3])[:, None, None], torch.sin(lat[:, 3])[:, None, None]
        dx, dy = (coords[None, None, :] - cx) / radius, (coords[None, :, None] - cy) / radius  # (B,1,W), (B,H,1)
        u = (cos * dx).to(torch.float32) + (sin * dy).to(torch.float32)  # rotation, separable in x and y
        v = (-sin * dx).to(torch.float32) + (cos * dy).to(torch.float32)
        shape = lat[:, 1].round().long()
        block = out[start:start + chunk, 0]
        for value in shape.unique().tolist():
            sel = (shape == value).nonzero().flatten()
            block[sel] = _sprite_mask(int(value), u[sel], v[sel]).to(torch.float32)
    return out


def _pack(imgs: np.ndarray) -> np.ndarray:
    return np.packbits(imgs.astype(bool), axis=-1)


def read_dsprites(path: Path, chunk: int = 8192) -> tuple[Tensor, Tensor, Tensor]:
    """The official npz -> (bit-packed images (N, 64, 8) uint8, latents_values (N, 6), latents_classes (N, 6)).

    ``imgs`` is streamed from the archive in chunks and packed 8 pixels per byte (377 MB instead
    of 3 GB for the full set).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"imgs", "latents_values", "latents_classes"} - set(npz.files)
            if missing:
                raise UsageError(f"{path} lacks the arrays {', '.join(sorted(missing))} (has {', '.join(npz.files)})")
            values = np.asarray(npz["latents_values"], dtype=np.float64)
            classes = np.asarray(npz["latents_classes"], dtype=np.int64)
        with zipfile.ZipFile(path) as zf, zf.open("imgs.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if len(shape) != 3 or fortran:
                raise UsageError(f"{path}: imgs has shape {shape}, expected (N, H, W) in C order")
            n, h, w = shape
            row = h * w * dtype.itemsize
            packed = np.empty((n, h, (w + 7) // 8), dtype=np.uint8)
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                buf = fh.read(row * (stop - start))
                packed[start:stop] = _pack(np.frombuffer(buf, dtype=dtype).reshape(stop - start, h, w))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise UsageError(f"{path} is not a readable dSprites npz ({type(exc).__name__}: {exc})") from None
    if values.shape != (n, 6) or classes.shape != (n, 6):
        raise UsageError(f"{path}: latents have shapes {values.shape} / {classes.shape}, expected ({n}, 6)")
    return torch.from_numpy(packed), torch.from_numpy(values), torch.from_numpy(classes)


def build_dsprites(req: LoadRequest) -> TensorXDataset:
    r = req.root
    candidates = [r / "dsprites", r / "dsprites-dataset", r / "dSprites", r]

    def download(root: Path) -> None:
        from torchvision.datasets.utils import download_url

        download_url(DSPRITES_URL, str(root), DSPRITES_FILE)

    path = req.find("dSprites", [DSPRITES_FILE], candidates, DSPRITES_URL, download=download)[DSPRITES_FILE]
    packed, values, classes = cached(req.name, [path], lambda: read_dsprites(path))
    idx = req.pool_indices(int(packed.shape[0]))
    info = req.info.replace(input_shape=(1, int(packed.shape[1]), int(packed.shape[1])))
    return TensorXDataset(info, req.split, idx, classes[:, 1], PackedBitsSource(packed, int(packed.shape[1])),
                          latents=values, latent_classes=classes)


def build_dsprites_gen(req: LoadRequest) -> TensorXDataset:
    values, classes = factor_grid(req.option("stride"))
    idx = req.pool_indices(values.shape[0])
    # render the split once, keep it bit-packed; rows are found through a pool-index -> row map
    packed = torch.cat([torch.from_numpy(_pack(render_dsprites(values.index_select(0, idx[s:s + 8192]))[:, 0].numpy()))
                        for s in range(0, idx.numel(), 8192)])
    row = torch.full((values.shape[0],), -1, dtype=torch.long)
    row[idx] = torch.arange(idx.numel())
    source = RemapSource(PackedBitsSource(packed, IMAGE_SIZE), row)
    return TensorXDataset(req.info, req.split, idx, classes[:, 1], source, latents=values, latent_classes=classes)


def _register() -> None:
    common = dict(task="latents", input_shape=(1, IMAGE_SIZE, IMAGE_SIZE), num_classes=3,
                  class_names=DSPRITES_SHAPES, mean=(DSPRITES_MEAN,), std=(DSPRITES_STD,))
    register_dataset(DatasetInfo(
        name="dsprites", bundled=False, source=DSPRITES_URL,
        description="dSprites (official npz): 737,280 binary 64x64 sprites with 6 latent factors; 10% test, "
                    "val 5% of the rest; y = shape; held bit-packed in memory",
        options=(("test_size", 0.1), ("val_size", 0.05)), **common), build_dsprites)
    register_dataset(DatasetInfo(
        name="dsprites-gen", bundled=True, source="generated from the dSprites factor definition",
        description="dSprites factor grid rendered from the shape definitions (close to, not bit-identical "
                    "with, the official images); stride=k or a list of 5 strides picks a sub-grid; rendered "
                    "once per load and kept bit-packed; 10% test, val 5% of the rest; latents in the official "
                    "column order",
        options=(("stride", 1), ("test_size", 0.1), ("val_size", 0.05)), **common),
        build_dsprites_gen, aliases=("dspritesgen",))


_register()
