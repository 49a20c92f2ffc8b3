"""Figures of the label-free example-importance study: similarity rate vs % of examples selected.

One colour per method; Most important solid, Least important dashed (as in Crabbé & van der Schaar
2022, Figure 3).  Built without pyplot (safe in workers); save with ``save_figure`` (atomic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from xairepro.errors import UsageError
from xairepro.report.labelfree_figures import mean_ci, save_figure

__all__ = ["similarity_rate_figure", "similarity_rate_rows", "save_figure"]

KINDS = (("most", "Most important", "-"), ("least", "Least important", "--"))


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


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
            arr = _numpy(result[key])
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
            arr = _numpy(result[key])
            values = arr.mean(1) if arr.ndim == 2 else arr
            if values.shape[0] != len(fractions):
                raise UsageError(f"{method!r} {key}: {values.shape[0]} points but {len(fractions)} fractions")
            rows += [{"method": method, "kind": key, "fraction": float(f), "similarity_rate": float(v)}
                     for f, v in zip(fractions, values)]
    return rows
