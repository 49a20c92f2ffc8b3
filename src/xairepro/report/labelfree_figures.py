"""Figures of the label-free feature-importance study: consistency curves and ROAR curves.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state, safe
in workers); ``save_figure`` writes it atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from xairepro.errors import UsageError
from xairepro.utils import atomic_path

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


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (.png, .pdf, .svg)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path
