"""RISE (Petsiuk, Das & Saenko 2018): randomized input sampling for black-box saliency.

Masks: an s x s grid of Bernoulli(p1) cells (1 = keep), upsampled bilinearly to (s + 1) * cell pixels
per side (cell = ceil(H / s)), and cropped to H x W at a random shift in [0, cell) per axis.

Saliency of class c:  S_c = sum_n p_c(x * M_n) M_n / (N p1),  p_c the softmax probability (or the raw
logit with ``score="raw"``), then min-max normalised per image to [0, 1] (``normalize=False`` keeps S).

Masked inputs are built chunk by chunk (``batch_size`` images per forward, never all N x B at once),
only the target class is reduced, and the masks live on the input's device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import Target, batched_forward, check_images, normalize_maps, resolve_targets
from xairepro.utils import make_generator, preserved_state, progress

__all__ = ["RISE", "generate_rise_masks", "N_MASKS", "CELL_SIZE", "P1", "BATCH_SIZE"]

#: Defaults (SPEC 5): N = 4000 masks of an s = 8 grid with keep probability p1 = 0.1.
N_MASKS, CELL_SIZE, P1, BATCH_SIZE = 4000, 8, 0.1, 256


def generate_rise_masks(n_masks: int, input_size: tuple[int, int], cell_size: int = CELL_SIZE, p1: float = P1,
                        seed: int | None = 0, device: torch.device | str = "cpu",
                        chunk: int = 256) -> torch.Tensor:
    """RISE masks (N, H, W) float32 in [0, 1] on ``device``, drawn from ``seed`` with a local generator.

    ``cell_size`` is s, the number of grid cells per side (SPEC 5: s = 8); each cell covers
    ceil(H / s) x ceil(W / s) pixels before the (s + 1)/s stretch of the bilinear upsampling.
    """
    if n_masks < 1:
        raise UsageError(f"n_masks must be >= 1, got {n_masks}")
    if cell_size < 1:
        raise UsageError(f"cell_size (grid cells per side) must be >= 1, got {cell_size}")
    if not 0.0 < p1 <= 1.0:
        raise UsageError(f"p1 (keep probability) must be in (0, 1], got {p1}")
    h, w = int(input_size[0]), int(input_size[1])
    if h < 1 or w < 1:
        raise UsageError(f"input_size must be positive, got {input_size}")
    device = torch.device(device)
    gen = make_generator(seed, device)
    s = cell_size
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    up_h, up_w = (s + 1) * cell_h, (s + 1) * cell_w
    grid = (torch.rand(n_masks, s, s, generator=gen, device=device) < p1).float()
    shift_y = torch.randint(0, cell_h, (n_masks,), generator=gen, device=device)
    shift_x = torch.randint(0, cell_w, (n_masks,), generator=gen, device=device)
    rows_base = torch.arange(h, device=device)
    cols_base = torch.arange(w, device=device)
    out = torch.empty(n_masks, h, w, device=device, dtype=torch.float32)
    for start in range(0, n_masks, chunk):
        stop = min(start + chunk, n_masks)
        up = F.interpolate(grid[start:stop, None], size=(up_h, up_w), mode="bilinear", align_corners=False)[:, 0]
        rows = (shift_y[start:stop, None] + rows_base)[:, :, None]            # (n, H, 1)
        cols = (shift_x[start:stop, None] + cols_base)[:, None, :]            # (n, 1, W)
        n_idx = torch.arange(stop - start, device=device)[:, None, None]
        out[start:stop] = up[n_idx, rows, cols]
    return out


class RISE:
    """RISE saliency: ``RISE(model, n_masks=4000, cell_size=8, p1=0.1, batch_size=256, seed=0)(x, target)``.

    ``masks=`` (N, H, W) in [0, 1] replaces the generated masks (reusable across images and models);
    otherwise masks are generated once per (H, W, device) from ``seed`` and kept.
    """

    def __init__(self, model: nn.Module, n_masks: int = N_MASKS, cell_size: int = CELL_SIZE, p1: float = P1,
                 batch_size: int = BATCH_SIZE, seed: int | None = 0, *, masks: torch.Tensor | None = None,
                 score: str = "softmax", normalize: bool = True, show_progress: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if score not in ("softmax", "raw"):
            raise UsageError(f"score must be 'softmax' or 'raw', got {score!r}")
        if not 0.0 < p1 <= 1.0:
            raise UsageError(f"p1 (keep probability) must be in (0, 1], got {p1}")
        if masks is not None:
            if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.shape[0] == 0:
                raise UsageError(f"masks must be a tensor (N, H, W), got "
                                 f"{tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__}")
            if not bool(torch.isfinite(masks).all()) or float(masks.min()) < 0 or float(masks.max()) > 1:
                raise UsageError("masks must hold finite values in [0, 1]")
            n_masks = masks.shape[0]
        elif n_masks < 1 or cell_size < 1:
            raise UsageError(f"n_masks and cell_size must be >= 1, got {n_masks}, {cell_size}")
        self.model = model
        self.n_masks = int(n_masks)
        self.cell_size = int(cell_size)
        self.p1 = float(p1)
        self.batch_size = int(batch_size)
        self.seed = seed
        self.score = score
        self.normalize = normalize
        self.show_progress = show_progress
        self._given = masks
        self._cache: dict[tuple, torch.Tensor] = {}

    def masks_for(self, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The masks (N, H, W) used for images of ``size`` on ``device``."""
        if self._given is not None:
            if tuple(self._given.shape[1:]) != tuple(size):
                raise UsageError(f"masks are {self._given.shape[1]} x {self._given.shape[2]} "
                                 f"but images are {size[0]} x {size[1]}")
            return self._given.to(device=device, dtype=torch.float32)
        key = (tuple(size), str(device))
        if key not in self._cache:
            self._cache[key] = generate_rise_masks(self.n_masks, size, self.cell_size, self.p1, self.seed, device)
        return self._cache[key]

    def __call__(self, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Saliency maps (B, H, W) on ``x``'s device (in [0, 1] unless ``normalize=False``)."""
        check_images(x, "RISE", model=self.model)
        b, _, h, w = x.shape
        masks = self.masks_for((h, w), x.device)
        n = masks.shape[0]
        flat_masks = masks.view(n, h * w)
        xs = x.detach()
        with preserved_state(self.model), torch.inference_mode():
            logits = torch.cat([self.model(xs[i:i + self.batch_size]) for i in range(0, b, self.batch_size)])
            t = resolve_targets(target, logits, b, x.device)
            classes = t.tolist()          # one host copy: a 0-d CUDA index below would sync once per run
            dtype = torch.promote_types(xs.dtype, torch.float32)
            flat_masks = flat_masks.to(dtype)
            image_masks = masks[:, None].to(xs.dtype)                         # (N, 1, H, W)
            sal = torch.zeros(b, h * w, device=x.device, dtype=dtype)
            total = b * n
            layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
            staging = torch.empty((min(self.batch_size, total), *xs.shape[1:]), device=x.device, dtype=xs.dtype,
                                  memory_format=layout)
            starts = range(0, total, self.batch_size)
            for start in progress(starts, enabled=self.show_progress, desc="RISE", total=len(starts)):
                stop = min(start + self.batch_size, total)
                # jobs are (image, mask) image-major: a chunk holds runs of consecutive masks of one image,
                # each built with one broadcast multiply (no gathers of images or masks)
                runs = []
                pos = start
                while pos < stop:
                    image, m0 = divmod(pos, n)
                    count = min(stop - pos, n - m0)
                    torch.mul(xs[image], image_masks[m0:m0 + count],
                              out=staging[pos - start:pos - start + count])
                    runs.append((image, m0, pos - start, count))
                    pos += count
                out = batched_forward(self.model, staging[:stop - start]).to(dtype)
                if self.score == "softmax":
                    out = torch.softmax(out, dim=1)
                for image, m0, offset, count in runs:                  # S_i += sum_n p_c(x_i * M_n) M_n
                    p = out[offset:offset + count, classes[image]]
                    sal[image].addmv_(flat_masks[m0:m0 + count].T, p)
            sal = (sal / (n * self.p1)).view(b, h, w)
        sal = sal.clone()
        return normalize_maps(sal) if self.normalize else sal

    def __repr__(self) -> str:
        return (f"RISE(n_masks={self.n_masks}, cell_size={self.cell_size}, p1={self.p1}, "
                f"seed={self.seed}, score={self.score!r})")
