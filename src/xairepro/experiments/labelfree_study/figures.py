"""Figures of the Label-Free XAI study (``matplotlib.figure.Figure``, no pyplot state: safe in workers).

- :func:`consistency_figure` / :func:`curve_figure`: latent shift vs % of features perturbed, one line per
  method, mean with a Student-t band (Figure 1); :func:`roar_figure`: ROAR's test loss vs % removed;
- :func:`similarity_rate_figure`: similarity rate of the Most (solid) and Least (dashed) important training
  examples vs % selected, one colour per method (Figure 2; as Crabbé & van der Schaar 2022, Figure 3);
- :func:`fraction_curves` turns ``prefix@P%`` records into (fractions, {variant: (F, runs)}) for those curves;
- :func:`correlation_heatmaps`: mean Pearson matrices between pretext tasks (Table 3 as a picture);
- :func:`metric_vs_beta`: box plots of a saliency statistic against beta per VAE type (Figure 4).

Figures are written with ``xairepro.utils.save_figure`` (atomic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from xairepro.errors import UsageError
from xairepro.experiments.base import Results
from xairepro.experiments.labelfree_study.common import parse_frac_metric
from xairepro.utils import save_figure

__all__ = ["mean_ci", "curve_figure", "consistency_figure", "roar_figure", "similarity_rate_figure",
           "similarity_rate_rows", "fraction_curves", "correlation_heatmaps", "metric_vs_beta", "LATENT_SHIFT_LABEL"]

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
