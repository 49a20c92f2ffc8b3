"""``shapes-seg``: RGB images of one object of K shape classes on a textured background, with its mask.

A stand-in for Imagenette/PartImageNet: trains a classifier and tests saliency IoU. Per image:
class (balanced), radius R ~ U(0.25, 0.4) * size, centre such that the object stays inside the
frame, rotation ~ U(0, 2 pi), a random object colour chosen far from the background colours,
and a background texture of two nearby random colours (each channel within +-0.15; smooth
noise, stripes or rotated checks), plus
pixel noise N(0, 0.02^2). The mask is the set of pixels whose centre lies inside the shape
(``shape_mask``), and exactly those pixels carry the object colour. Rendering is vectorised over
images (one pass per shape class); everything is drawn from ``seed``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from xairepro.data.dataset import ArraySource, TensorXDataset
from xairepro.data.files import memo
from xairepro.data.info import DatasetInfo
from xairepro.data.registry import LoadRequest, register_dataset
from xairepro.errors import UsageError
from xairepro.utils import derive_seed, make_generator

__all__ = ["SHAPE_NAMES", "shape_mask", "sample_shape_params", "render_shapes", "generate_shapes"]

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "heart", "ring", "diamond", "crescent",
               "arrow", "hexagon", "semicircle")
BACKGROUNDS = ("noise", "stripes", "checks")
PIXEL_NOISE = 0.02
# Per-channel mean/std of the default training split (n=2000, size=64, K=10, seed 0), checked by a test.
SHAPES_MEAN = (0.5004, 0.4946, 0.4936)
SHAPES_STD = (0.3017, 0.3031, 0.3021)


def shape_mask(kind: int, u: Tensor, v: Tensor) -> Tensor:
    """Inside test of shape ``kind`` in object coordinates (u right, v down, unit = radius R)."""
    r = torch.sqrt(u ** 2 + v ** 2)
    name = SHAPE_NAMES[kind]
    if name == "circle":
        return r <= 1.0
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if name == "triangle":  # equilateral, circumradius 1, apex up
        return torch.stack([u * math.cos(a) + v * math.sin(a) for a in
                            (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]).amax(0) <= 0.5
    if name == "star":  # five tips, the first pointing up
        phi = torch.atan2(v, u)
        return r <= 0.42 + 0.58 * ((1 + torch.cos(5 * (phi + math.pi / 2))) / 2) ** 2
    if name == "cross":
        return ((u.abs() <= 0.28) & (v.abs() <= 0.95)) | ((v.abs() <= 0.28) & (u.abs() <= 0.95))
    if name == "heart":
        hx, hy = 1.1 * u, 0.12 - 1.1 * v
        return (hx ** 2 + hy ** 2 - 1) ** 3 - hx ** 2 * hy ** 3 <= 0
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "diamond":  # a rhombus, not a rotated square
        return u.abs() / 0.6 + v.abs() <= 1.0
    if name == "crescent":
        return (r <= 1.0) & ((u - 0.5) ** 2 + v ** 2 > 0.75 ** 2)
    if name == "arrow":
        shaft = (v.abs() <= 0.2) & (u >= -1.0) & (u <= 0.15)
        head = (u >= 0.15) & (u <= 1.0) & (v.abs() <= 0.75 * (1.0 - u) / 0.85)
        return shaft | head
    if name == "hexagon":
        return torch.stack([u * math.cos(a) + v * math.sin(a) for a in
                            (k * math.pi / 3 for k in range(6))]).amax(0) <= math.cos(math.pi / 6)
    if name == "semicircle":
        return (r <= 1.0) & (v <= 0.0)
    raise ValueError(f"unknown shape {kind}")


def _u(g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=g)


def sample_shape_params(n: int, num_classes: int, size: int, seed: int) -> dict[str, Tensor]:
    """Every random choice of ``n`` images, drawn from ``seed`` (render with :func:`render_shapes`)."""
    g = make_generator(derive_seed(seed, "shapes-seg"))
    kind = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    radius = (0.25 + 0.15 * _u(g, n)) * size
    margin = 1.1 * radius + 1.0
    center = margin[:, None] + (size - 2 * margin)[:, None] * _u(g, n, 2)
    angle = 2 * math.pi * _u(g, n)
    bg_kind = torch.randint(0, len(BACKGROUNDS), (n,), generator=g)
    base = _u(g, n, 1, 3)  # background: a base colour and a second one up to +-0.15 away per channel
    bg_colors = torch.cat([base, (base + 0.3 * (_u(g, n, 1, 3) - 0.5)).clamp(0, 1)], 1)
    candidates = _u(g, n, 8, 3)  # object colour: the candidate farthest from both background colours
    dist = torch.cdist(candidates, bg_colors).amin(-1)
    object_color = candidates[torch.arange(n), dist.argmax(-1)]
    return {
        "kind": kind, "radius": radius, "center": center, "angle": angle, "bg_kind": bg_kind,
        "bg_colors": bg_colors, "object_color": object_color,
        "bg_freq": 3.0 + 5.0 * _u(g, n), "bg_angle": math.pi * _u(g, n), "bg_phase": 2 * math.pi * _u(g, n),
        "bg_noise": _u(g, n, 1, 6, 6), "pixel_noise": PIXEL_NOISE * torch.randn(n, 3, size, size, generator=g),
    }


def _background(p: dict[str, Tensor], size: int) -> Tensor:
    """Textures (n, 3, H, W): two colours mixed by smooth noise, hard stripes or rotated checks."""
    n = p["kind"].numel()
    xs = torch.arange(size, dtype=torch.float32) + 0.5
    t = torch.empty(n, size, size)
    for kind in range(len(BACKGROUNDS)):
        sel = (p["bg_kind"] == kind).nonzero().flatten()
        if sel.numel() == 0:
            continue
        if BACKGROUNDS[kind] == "noise":
            t[sel] = F.interpolate(p["bg_noise"][sel], size=(size, size), mode="bicubic",
                                   align_corners=False)[:, 0].clamp(0, 1)
            continue
        cos, sin = torch.cos(p["bg_angle"][sel])[:, None, None], torch.sin(p["bg_angle"][sel])[:, None, None]
        freq = p["bg_freq"][sel][:, None, None]
        along = (xs[None, None, :] * cos + xs[None, :, None] * sin) / size
        if BACKGROUNDS[kind] == "stripes":
            t[sel] = (torch.sin(2 * math.pi * freq * along + p["bg_phase"][sel][:, None, None]) > 0).float()
        else:
            across = (-xs[None, None, :] * sin + xs[None, :, None] * cos) / size
            t[sel] = ((torch.floor(along * freq) + torch.floor(across * freq)) % 2 == 1).float()
    c1, c2 = p["bg_colors"][:, 0, :, None, None], p["bg_colors"][:, 1, :, None, None]
    return torch.lerp(c1, c2, t[:, None])


def render_shapes(p: dict[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
    """(images (n, 3, size, size) float32 in [0, 1], masks (n, size, size) bool) from parameters."""
    n = p["kind"].numel()
    xs = torch.arange(size, dtype=torch.float32) + 0.5
    dx = xs[None, None, :] - p["center"][:, 0, None, None]
    dy = xs[None, :, None] - p["center"][:, 1, None, None]
    cos, sin = torch.cos(p["angle"])[:, None, None], torch.sin(p["angle"])[:, None, None]
    r = p["radius"][:, None, None]
    u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for kind in p["kind"].unique().tolist():
        sel = (p["kind"] == kind).nonzero().flatten()
        masks[sel] = shape_mask(kind, u[sel], v[sel])
    obj = p["object_color"][:, :, None, None].expand(n, 3, size, size)
    images = torch.where(masks[:, None], obj, _background(p, size))
    return (images + p["pixel_noise"]).clamp(0.0, 1.0), masks


def generate_shapes(n: int, num_classes: int, size: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(images uint8 (n, 3, size, size), labels (n,), masks (n, size, size) bool) of ``shapes-seg``."""
    p = sample_shape_params(n, num_classes, size, seed)
    images, masks = render_shapes(p, size)
    return (images * 255).round().to(torch.uint8), p["kind"], masks


def build_shapes(req: LoadRequest) -> TensorXDataset:
    n, size, k = req.option("n"), req.option("size"), req.option("num_classes")
    for name, value, low in (("n", n, 10), ("size", size, 16), ("num_classes", k, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an int >= {low}, got {value!r}")
    if k > len(SHAPE_NAMES):
        raise UsageError(f"num_classes must be <= {len(SHAPE_NAMES)} (shapes: {', '.join(SHAPE_NAMES)}), got {k}")
    images, labels, masks = memo((req.name, n, k, size, req.seed), lambda: generate_shapes(n, k, size, req.seed))
    info = req.info.replace(input_shape=(3, size, size), num_classes=k, class_names=SHAPE_NAMES[:k])
    return TensorXDataset(info, req.split, req.pool_indices(n), labels, ArraySource(images, 255.0),
                          masks=ArraySource(masks))


register_dataset(DatasetInfo(
    name="shapes-seg", task="segmentation", input_shape=(3, 64, 64), num_classes=10, class_names=SHAPE_NAMES[:10],
    mean=SHAPES_MEAN, std=SHAPES_STD, bundled=True, source="generated (shapes on textured backgrounds)",
    augmentation="crop-flip",
    description="one object of K shape classes (random size, position, rotation, colour) on noise/stripes/"
                "checks backgrounds, with its exact binary mask; n=2000 at 64 px: 400 test, 80 val, 1,520 train",
    options=(("n", 2000), ("size", 64), ("num_classes", 10), ("test_size", 0.2), ("val_size", 0.05))),
    build_shapes, aliases=("shapes", "shapesseg"))
