"""Figures of the Label-Free XAI study drawn from tidy results (no pyplot state; atomic PNG files).

- :func:`fraction_curves` turns ``prefix@P%`` records into (fractions, {variant: (F, runs)}) for the
  consistency curves of ``xairepro.report.labelfree_figures`` / ``example_figures``;
- :func:`correlation_heatmaps`: mean Pearson matrices between pretext tasks (Table 3 as a picture);
- :func:`metric_vs_beta`: box plots of a saliency statistic against beta per VAE type (Figure 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xairepro.experiments.base import Results
from xairepro.experiments.labelfree_study.common import parse_frac_metric
from xairepro.utils import atomic_path

__all__ = ["save", "fraction_curves", "correlation_heatmaps", "metric_vs_beta"]


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def fraction_curves(results: Results, dataset: str, prefix: str,
                    variants: Sequence[str]) -> tuple[list[float], dict[str, np.ndarray]]:
    """Fractions found for ``prefix@P%`` metrics of ``dataset`` and, per variant, values (F, runs).

    Runs are aligned by seed; a missing value is NaN.  Variants without any value are left out.
    """
    frame = results.frame[results.frame["dataset"] == dataset]
    metrics = {m: f for m in dict.fromkeys(frame["metric"]) if (f := parse_frac_metric(m, prefix)) is not None}
    fractions = sorted(set(metrics.values()))
    by_fraction = {f: m for m, f in metrics.items()}
    seeds = sorted({int(s) for s in frame["seed"]})
    out: dict[str, np.ndarray] = {}
    for variant in variants:
        part = frame[frame["variant"] == variant]
        if part.empty:
            continue
        arr = np.full((len(fractions), len(seeds)), np.nan)
        for i, f in enumerate(fractions):
            rows = part[part["metric"] == by_fraction[f]]
            for s, v in zip(rows["seed"], rows["value"]):
                arr[i, seeds.index(int(s))] = float(v)
        out[variant] = arr
    return fractions, out


def correlation_heatmaps(panels: Sequence[tuple[str, Sequence[str], np.ndarray, np.ndarray]],
                         path: Path, *, suptitle: str | None = None) -> Path:
    """One heatmap per (title, labels, mean K x K, std K x K); cells annotated mean ± std."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, (title, labels, mean, std) in zip(axes, panels):
        image = ax.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
        k = len(labels)
        ax.set_xticks(range(k), labels, fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        for i in range(k):
            for j in range(k):
                text = "—" if np.isnan(mean[i, j]) else f"{mean[i, j]:.2f}"
                if not np.isnan(std[i, j]) and i != j:
                    text += f"\n±{std[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="Pearson")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, path)


def metric_vs_beta(groups: Sequence[tuple[str, Sequence[tuple[float, np.ndarray]]]], path: Path, *,
                   ylabel: str, title: str | None = None) -> Path:
    """Box plots of a statistic against beta: groups = [(label, [(beta, values over runs), ...]), ...]."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    betas = sorted({b for _, series in groups for b, _ in series})
    width = 0.8 / max(len(groups), 1)
    for g, (label, series) in enumerate(groups):
        data = dict(series)
        positions, values = [], []
        for i, beta in enumerate(betas):
            v = np.asarray(data.get(beta, []), dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                positions.append(i - 0.4 + width * (g + 0.5))
                values.append(v)
        if not values:
            continue
        parts = ax.boxplot(values, positions=positions, widths=width * 0.8, patch_artist=True,
                           manage_ticks=False)
        for box in parts["boxes"]:
            box.set_facecolor(f"C{g}")
            box.set_alpha(0.5)
        for x, v in zip(positions, values):
            ax.plot([x] * v.size, v, ".", color=f"C{g}", markersize=4)
        ax.plot([], [], "s", color=f"C{g}", alpha=0.5, label=label)
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, fontsize="small")
    return save(fig, path)
