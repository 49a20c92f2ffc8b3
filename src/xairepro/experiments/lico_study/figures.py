"""Figures of the LICO study: grouped bars (mean ± std over seeds, seeds as dots) and saliency examples.

Built on ``matplotlib.figure.Figure`` (no pyplot state); files are written atomically as PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from xairepro.experiments.base import Results
from xairepro.utils import save_figure

__all__ = ["grouped_bars", "saliency_examples"]


def _draw_groups(ax: Any, results: Results, groups: Sequence[tuple[str, str, str]],
                 variants: Sequence[str], labels: Mapping[str, str]) -> None:
    """Bars of each variant within groups (label, metric, dataset); error bars = std over seeds."""
    width = 0.8 / max(len(variants), 1)
    for j, variant in enumerate(variants):
        xs, means, stds = [], [], []
        for i, (_, metric, dataset) in enumerate(groups):
            values = results.values(metric, dataset, variant)
            values = values[~np.isnan(values)]
            x = i - 0.4 + width * (j + 0.5)
            xs.append(x)
            means.append(float(values.mean()) if values.size else np.nan)
            stds.append(float(values.std(ddof=1)) if values.size > 1 else 0.0)
            ax.plot([x] * values.size, values, "k.", markersize=3, zorder=3)
        ax.bar(xs, means, width * 0.95, yerr=stds, capsize=2, label=labels.get(variant, variant))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def grouped_bars(results: Results, panels: Sequence[tuple[str, Sequence[tuple[str, str, str]]]],
                 variants: Sequence[str], labels: Mapping[str, str], ylabel: str, path: Path) -> Path | None:
    """One panel per (title, groups); returns None when nothing of it is in ``results``."""
    wanted = [(t, [g for g in groups if any(results.values(g[1], g[2], v).size for v in variants)])
              for t, groups in panels]
    wanted = [(t, g) for t, g in wanted if g]
    if not wanted:
        return None
    fig = Figure(figsize=(max(3.5, 1.1 * max(len(g) for _, g in wanted) * (1 + len(variants) / 4)) * len(wanted)
                          / max(len(wanted) ** 0.5, 1), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(wanted), squeeze=False)[0])
    for ax, (title, groups) in zip(axes, wanted):
        _draw_groups(ax, results, groups, variants, labels)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[-1].legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def _rgb(img: torch.Tensor) -> np.ndarray:
    arr = img.detach().float().cpu().clamp(0, 1).numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def saliency_examples(images: torch.Tensor, columns: Sequence[tuple[str, torch.Tensor]], path: Path,
                      row_titles: Sequence[str] | None = None) -> Path:
    """Rows = images (N, C, H, W); columns: the image, then each (title, maps (N, H, W)) over it."""
    n = images.shape[0]
    cols = 1 + len(columns)
    fig = Figure(figsize=(1.5 * cols, 1.5 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_rgb(images[i]))
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=7)
        for j, (title, maps) in enumerate(columns, start=1):
            axes[i, j].imshow(_rgb(images[i]))
            axes[i, j].imshow(maps[i].float().cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(title, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=7)
    return save_figure(fig, path)
