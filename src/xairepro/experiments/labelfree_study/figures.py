"""Figures of the Label-Free XAI study (``matplotlib.figure.Figure``, no pyplot state: safe in workers).

- :func:`consistency_figure` / :func:`curve_figure`: latent shift vs % of features perturbed, one line per
  method, mean with a Student-t band (Figure 1); :func:`roar_figure`: ROAR's test loss vs % removed;
- :func:`similarity_rate_figure`: similarity rate of the Most (solid) and Least (dashed) important training
  examples vs % selected, one colour per method (Figure 2; as Crabbé & van der Schaar 2022, Figure 3);
- :func:`fraction_curves` turns ``prefix@P%`` records into (fractions, {variant: (F, runs)}) for those curves;
- :func:`correlation_heatmaps`: mean Pearson matrices between pretext tasks (Table 3 as a picture);
- :func:`metric_vs_beta`: box plots of a saliency statistic against beta per VAE type (Figure 4);
- :func:`picture_grid`: rows of images and heat maps, what the qualitative figures are made of:
  :func:`unit_map_grid` (per-unit VAE maps, Figures 3, 17), :func:`pretext_map_grid` and
  :func:`pretext_example_grid` (saliency maps and top examples per pretext task, Figures 7, 8, 11, 12, 15,
  16), :func:`masked_grid` (masked images, Figures 6, 13); :func:`load_cell_file` reads what a cell kept.

Figures are written with ``xairepro.utils.save_figure`` (atomic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

import torch

from xairepro.errors import UsageError
from xairepro.experiments.base import Results, cell_dir
from xairepro.experiments.labelfree_study.common import parse_frac_metric, pct
from xairepro.utils import save_figure

__all__ = ["mean_ci", "curve_figure", "consistency_figure", "roar_figure", "similarity_rate_figure",
           "similarity_rate_rows", "fraction_curves", "correlation_heatmaps", "metric_vs_beta", "LATENT_SHIFT_LABEL",
           "picture_grid", "unit_map_grid", "pretext_map_grid", "pretext_example_grid", "masked_grid", "load_cell_file"]

LATENT_SHIFT_LABEL = r"Latent shift $\|f(x) - f(x_p)\|^2$"


def mean_ci(samples: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and Student-t confidence interval along the last axis.

    ``samples`` (F, N) -> (mean, low, high), each (F,): mean ± t_{(1+level)/2, N-1} s / sqrt(N).
    With N = 1 (or (F,) input) the interval collapses to the mean.
    """
    a = np.asarray(_numpy(samples), dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise UsageError(f"samples must be (fractions, examples or runs), got shape {a.shape}")
    mean = a.mean(1)
    n = a.shape[1]
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf((1 + level) / 2, n - 1) * a.std(1, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _curves_from(data: Any, value: str) -> dict[str, Any]:
    """A mapping method -> (F, N) samples, from a mapping or a tidy DataFrame (method, fraction, value)."""
    if isinstance(data, Mapping):
        return dict(data)
    if hasattr(data, "groupby"):
        missing = {"method", "fraction", value} - set(data.columns)
        if missing:
            raise UsageError(f"the table needs columns method, fraction, {value}; missing {sorted(missing)}")
        out = {}
        for method, part in data.groupby("method", sort=False):
            groups = [g[value].to_numpy(dtype=float) for _, g in part.groupby("fraction", sort=True)]
            width = max(len(g) for g in groups)
            out[method] = np.array([np.pad(g, (0, width - len(g)), constant_values=np.nan) for g in groups])
        return out
    raise UsageError(f"curves must be a mapping method -> values or a DataFrame, got {type(data).__name__}")


def curve_figure(curves: Any, fractions: Sequence[float] | None = None, *, ylabel: str = LATENT_SHIFT_LABEL,
                 xlabel: str = "% of features perturbed", title: str | None = None, level: float = 0.95,
                 value: str = "latent_shift", size: tuple[float, float] = (5.0, 3.6)) -> Figure:
    """One line per method: mean over examples (or runs) with a shaded ``level`` confidence band.

    ``curves``: method -> (F,) or (F, N) values (tensor or array), or a tidy DataFrame with columns
    ``method``, ``fraction``, ``value``; ``fractions`` (F,) in [0, 1], shown as percentages.
    """
    table = _curves_from(curves, value)
    if not table:
        raise UsageError("no curves to draw")
    if fractions is None:
        if not hasattr(curves, "groupby"):
            raise UsageError("give the fractions of the curves")
        fractions = sorted(curves["fraction"].unique())
    x = 100 * np.asarray(fractions, dtype=np.float64)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    for method, samples in table.items():
        arr = np.asarray(_numpy(samples), dtype=np.float64)
        if arr.shape[0] != len(x):
            raise UsageError(f"{method!r} has {arr.shape[0]} points but there are {len(x)} fractions")
        arr = arr if arr.ndim == 2 else arr[:, None]
        mean, low, high = (np.nanmean(arr, 1), *_nan_ci(arr, level))
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=str(method))
        if arr.shape[1] > 1:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return fig


def _nan_ci(arr: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = [], []
    for row in arr:
        _, lo, hi = mean_ci(row[np.isfinite(row)][None, :], level)
        lows.append(lo[0])
        highs.append(hi[0])
    return np.array(lows), np.array(highs)


def consistency_figure(curves: Any, fractions: Sequence[float] | None = None, *,
                       title: str | None = None, level: float = 0.95) -> Figure:
    """Feature consistency: % of features perturbed vs latent shift, one line per method (mean, CI)."""
    return curve_figure(curves, fractions, title=title, level=level)


def roar_figure(result: Any, *, title: str | None = None) -> Figure:
    """ROAR: % of features removed vs test loss, one line per method (``RoarResult`` or mapping)."""
    if hasattr(result, "test_loss") and hasattr(result, "fractions"):
        curves, fractions = result.test_loss, result.fractions
    else:
        raise UsageError(f"expected a RoarResult, got {type(result).__name__}")
    return curve_figure({m: np.asarray(v, dtype=float) for m, v in curves.items()}, fractions,
                        ylabel="Test loss after retraining", xlabel="% of features removed", title=title)


KINDS = (("most", "Most important", "-"), ("least", "Least important", "--"))


def similarity_rate_figure(rates: Mapping[str, Mapping[str, Any]], fractions: Sequence[float], *,
                           title: str | None = None, level: float = 0.95,
                           size: tuple[float, float] = (5.0, 3.6)) -> Figure:
    """Similarity rate vs % of training examples selected, Most and Least, one colour per method.

    ``rates``: method -> ``similarity_rates(...)`` output, {"most", "least"} each (F,) (means) or
    (F, n_test) (``reduction="none"``: drawn as mean with a shaded ``level`` confidence band).
    ``fractions`` (F,): K / n_train of each point, in (0, 1].
    """
    if not rates:
        raise UsageError("no similarity rates to draw")
    x = 100 * np.asarray(fractions, dtype=np.float64)
    if x.ndim != 1 or not np.all((x > 0) & (x <= 100)):
        raise UsageError(f"fractions must be a list of values in (0, 1], got {list(fractions)}")
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    for i, (method, result) in enumerate(rates.items()):
        for key, label, style in KINDS:
            if key not in result:
                raise UsageError(f"{method!r}: expected keys 'most' and 'least', got {sorted(result)}")
            arr = np.asarray(_numpy(result[key]), dtype=np.float64)
            if arr.shape[0] != len(x):
                raise UsageError(f"{method!r} {key}: {arr.shape[0]} points but {len(x)} fractions")
            mean, low, high = mean_ci(arr if arr.ndim == 2 else arr[:, None], level)
            colour = colours[i % len(colours)]
            ax.plot(x, mean, linestyle=style, marker="o", markersize=3, color=colour, label=f"{method} ({label})")
            if arr.ndim == 2 and arr.shape[1] > 1:
                ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("% of training examples selected")
    ax.set_ylabel("Similarity rate")
    ax.set_ylim(-0.02, 1.02)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize="small")
    return fig


def similarity_rate_rows(rates: Mapping[str, Mapping[str, Any]], fractions: Sequence[float]) -> list[dict[str, Any]]:
    """Tidy rows (method, kind, fraction, similarity_rate) of mean rates, for tables and results.csv."""
    rows = []
    for method, result in rates.items():
        for key, _, _ in KINDS:
            arr = np.asarray(_numpy(result[key]), dtype=np.float64)
            values = arr.mean(1) if arr.ndim == 2 else arr
            if values.shape[0] != len(fractions):
                raise UsageError(f"{method!r} {key}: {values.shape[0]} points but {len(fractions)} fractions")
            rows += [{"method": method, "kind": key, "fraction": float(f), "similarity_rate": float(v)}
                     for f, v in zip(fractions, values)]
    return rows


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
    return save_figure(fig, path)


def metric_vs_beta(groups: Sequence[tuple[str, Sequence[tuple[float, np.ndarray]]]], path: Path, *,
                   ylabel: str, title: str | None = None) -> Path:
    """Box plots of a statistic against beta: groups = [(label, [(beta, values over runs), ...]), ...]."""
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
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------- qualitative figures
def load_cell_file(results: Results, figures_dir: Path, experiment: str, dataset: str, variant: str, seed: int,
                   name: str) -> dict[str, Any] | None:
    """What the cell of (dataset, variant, seed) kept in its folder as ``name`` (a ``torch.save`` dict), or
    None when that cell has no record or no such file (e.g. a cell computed before it kept one)."""
    frame = results.frame
    rows = frame[(frame["dataset"] == dataset) & (frame["variant"] == variant) & (frame["seed"] == seed)]
    if rows.empty:
        return None
    path = cell_dir(figures_dir, experiment, str(rows["config_hash"].iloc[0])) / name
    return torch.load(path, weights_only=True) if path.is_file() else None


def _picture(p: Any) -> np.ndarray:
    """An image (C, H, W) as (H, W) or (H, W, 3) floats in [0, 1] (uint8 scaled), or a map (H, W) as floats."""
    t = torch.as_tensor(p).detach().cpu()
    a = t.float().numpy() / 255.0 if t.dtype == torch.uint8 else t.float().numpy()
    if a.ndim == 3:
        if a.shape[0] == 1:
            return a[0]
        if a.shape[0] == 3:
            return a.transpose(1, 2, 0)
        raise UsageError(f"images must have 1 or 3 channels to be drawn, got {a.shape[0]}")
    return a


def picture_grid(rows: Sequence[Sequence[tuple[str, Any] | None]], path: Path, *,
                 column_titles: Sequence[str], row_titles: Sequence[str] | None = None, title: str | None = None,
                 cell_inches: float = 1.15) -> Path:
    """A grid of pictures, written as a PNG: each entry is None (empty) or ``(kind, picture)``.

    kind ``image``: (C, H, W) with C = 1 or 3, uint8 or floats in [0, 1], drawn as it is (grey for C = 1);
    kind ``map``: (H, W) saliency, drawn as a heat map; the maps of one row share one colour scale from 0 to
    the row's largest value, so that they compare.  Column titles go above the first row.
    """
    if not rows:
        raise UsageError("no pictures to draw")
    n_cols = len(column_titles)
    if any(len(r) != n_cols for r in rows):
        raise UsageError(f"every row needs {n_cols} entries (one per column title)")
    fig = Figure(figsize=(cell_inches * n_cols + 0.6, cell_inches * len(rows) + (0.5 if title else 0.2)),
                 layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for i, row in enumerate(rows):
        maps = [_picture(p) for e in row if e is not None for kind, p in [e] if kind == "map"]
        top = max((float(np.nanmax(m)) for m in maps), default=1.0) or 1.0
        for j, entry in enumerate(row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if entry is None:
                ax.axis("off")
                continue
            kind, picture = entry
            a = _picture(picture)
            if kind == "map":
                ax.imshow(a, cmap="hot", vmin=0.0, vmax=top)
            else:
                ax.imshow(np.clip(a, 0, 1), cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(column_titles[j], fontsize=7)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def unit_map_grid(blocks: Sequence[tuple[str, Any, Any]], path: Path, *, title: str | None = None) -> Path:
    """Per-unit saliency of VAEs: blocks of (label, images (n, C, H, W), maps (n, d, H, W)); one row per
    image, the image then the map of each latent unit."""
    d = max(int(maps.shape[1]) for _, _, maps in blocks)
    rows, titles = [], []
    for label, images, maps in blocks:
        for i in range(images.shape[0]):
            rows.append([("image", images[i])] + [("map", maps[i, j]) if j < maps.shape[1] else None
                                                  for j in range(d)])
            titles.append(f"{label}\nimage {i + 1}")
    return picture_grid(rows, path, column_titles=["image"] + [f"unit {j + 1}" for j in range(d)],
                        row_titles=titles, title=title)


def pretext_map_grid(kept: Mapping[str, Any], task_labels: Mapping[str, str], method: str, path: Path, *,
                     title: str) -> Path:
    """A pretext cell's kept test images, each with every task's ``method`` saliency map.  ``kept``:
    ``images`` (n, C, H, W), ``tasks``, ``maps`` {method: (n, tasks, H, W)}."""
    images, maps = kept["images"], kept["maps"][method]
    rows = [[("image", images[i])] + [("map", maps[i, t]) for t in range(maps.shape[1])] for i in range(len(images))]
    return picture_grid(rows, path, column_titles=["test image"] + [task_labels.get(t, t) for t in kept["tasks"]],
                        title=title)


def pretext_example_grid(kept: Mapping[str, Any], task_labels: Mapping[str, str], path: Path, *, title: str) -> Path:
    """A pretext cell's kept test images, each with every task's most important training example (DkNN).
    ``kept``: ``images`` (n, C, H, W), ``tasks``, ``top`` (n, tasks, C, H, W)."""
    images, top = kept["images"], kept["top"]
    rows = [[("image", images[i])] + [("image", top[i, t]) for t in range(top.shape[1])] for i in range(len(images))]
    return picture_grid(rows, path, column_titles=["test image"] + [task_labels.get(t, t) for t in kept["tasks"]],
                        title=title)


def masked_grid(kept: Mapping[str, Any], variants: Mapping[str, str], path: Path, *, title: str,
                n_images: int = 2) -> Path:
    """Masked inputs of a feature-consistency cell: for each of the first ``n_images`` test images and each
    method (``variants``: the record variant -> its label), the image with its top-p% features replaced at
    every fraction below 100%.  ``kept``: ``images`` (n, C, H, W), ``fractions``, ``masked`` {variant:
    (F, n, C, H, W)}."""
    fractions = [float(f) for f in kept["fractions"]]
    columns = [k for k, f in enumerate(fractions) if f < 1.0]
    rows, titles = [], []
    for i in range(min(n_images, kept["images"].shape[0])):
        for variant, label in variants.items():
            if variant in kept["masked"]:
                rows.append([("image", kept["images"][i])] + [("image", kept["masked"][variant][k, i]) for k in columns])
                titles.append(f"{label}\nimage {i + 1}")
    return picture_grid(rows, path, column_titles=["original"] + [f"{pct(fractions[k])} replaced" for k in columns],
                        row_titles=titles, title=title)
