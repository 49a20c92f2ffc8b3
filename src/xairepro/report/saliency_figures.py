"""Saliency figures: an overlay grid (images x methods) and insertion/deletion curve plots.

Built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed); ``path=`` writes a PNG
atomically.  Images are (N, C, H, W) in [0, 1] pixel space (C = 1 or 3), maps (N, H, W) in [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from xairepro.errors import UsageError
from xairepro.utils import save_figure

if TYPE_CHECKING:
    from xairepro.metrics import InsertionDeletionResult

__all__ = ["saliency_grid", "insertion_deletion_curves"]

#: Resolution of the saliency figures.
DPI = 120


def _image_array(img: torch.Tensor) -> np.ndarray:
    arr = img.detach().float().cpu().clamp(0, 1).numpy()
    if arr.shape[0] == 1:
        return arr[0]
    if arr.shape[0] == 3:
        return arr.transpose(1, 2, 0)
    raise UsageError(f"images must have 1 or 3 channels to be drawn, got {arr.shape[0]}")


def saliency_grid(images: torch.Tensor, maps: Mapping[str, torch.Tensor], *, row_titles: Sequence[str] | None = None,
                  alpha: float = 0.5, cmap: str = "jet", cell_inches: float = 1.6,
                  path: str | os.PathLike[str] | None = None) -> Figure:
    """Grid with one row per image: the image, then each method's map over it (``alpha`` blend)."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise UsageError(f"images must be a non-empty (N, C, H, W) tensor, got {tuple(images.shape)}")
    n, _, h, w = images.shape
    for name, m in maps.items():
        if tuple(m.shape) != (n, h, w):
            raise UsageError(f"map {name!r} has shape {tuple(m.shape)} but images are {n} x {h} x {w}")
    if row_titles is not None and len(row_titles) != n:
        raise UsageError(f"row_titles has {len(row_titles)} entries for {n} images")
    cols = 1 + len(maps)
    fig = Figure(figsize=(cell_inches * cols, cell_inches * n))
    axes = np.atleast_2d(fig.subplots(n, cols, squeeze=False))
    for i in range(n):
        img = _image_array(images[i])
        gray = img.ndim == 2
        axes[i, 0].imshow(img, cmap="gray" if gray else None, vmin=0, vmax=1)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(img, cmap="gray" if gray else None, vmin=0, vmax=1)
            axes[i, j].imshow(m[i].detach().float().cpu().numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=DPI)
    return fig


def insertion_deletion_curves(results: Mapping[str, InsertionDeletionResult], *, title: str | None = None,
                              band: bool | None = None, path: str | os.PathLike[str] | None = None) -> Figure:
    """Two panels (insertion, deletion): mean curve over images per method, ± one std band, AUC in the legend.

    The x-axis is the fraction of pixels replaced (``result.fractions``).  ``band=None`` draws the std
    bands only for up to three methods (more would hide each other); probabilities' bands stay in [0, 1].
    """
    if not results:
        raise UsageError("no insertion/deletion results to plot")
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    if band is None:
        band = len(results) <= 3
    for name, r in results.items():
        low_clip, high_clip = (0.0, 1.0) if r.protocol.score == "softmax" else (-np.inf, np.inf)
        x = r.fractions.detach().cpu().numpy()
        for ax, curve, score in ((axes[0], r.insertion_curve, r.insertion), (axes[1], r.deletion_curve, r.deletion)):
            c = curve.detach().float().cpu().numpy()
            mean = c.mean(axis=0)
            (line,) = ax.plot(x, mean, label=f"{name} (AUC {float(score.mean()):.3f})")
            if band and c.shape[0] > 1:
                std = c.std(axis=0)
                ax.fill_between(x, np.clip(mean - std, low_clip, high_clip), np.clip(mean + std, low_clip, high_clip),
                                color=line.get_color(), alpha=0.15, linewidth=0)
    protocol: Any = next(iter(results.values())).protocol
    for ax, name in zip(axes, ("Insertion", "Deletion")):
        ax.set_title(f"{name} ({getattr(protocol, 'name', 'custom')} protocol)", fontsize=10)
        ax.set_xlabel("fraction of pixels replaced")
        ax.set_ylabel("class score" if getattr(protocol, "score", "softmax") == "raw" else "class probability")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=DPI)
    return fig
