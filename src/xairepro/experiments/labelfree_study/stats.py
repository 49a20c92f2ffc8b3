"""The label-free study's comparisons over runs, for the shared rule of :mod:`~xairepro.experiments.verdict_rules`.

Quantities measured on the same runs (a method vs Random on one encoder, Most vs Least from one score
matrix, saliency vs examples of one pretext run) are paired by seed; different models (beta = 1 vs
beta = 10) use Welch.  :func:`per_method` gives a claim made for every attribution method: per method,
its comparisons (one per fraction) and their per-seed average, then the methods joined into holds /
partly / fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from xairepro.experiments.base import Results, Verdict
from xairepro.experiments.verdict_rules import combine_groups, directional, paired, paired_mean

__all__ = ["Pair", "per_seed", "per_method"]

#: One paired comparison: (label, {seed: value of a}, {seed: value of b}).
Pair = tuple[str, Mapping[int, float], Mapping[int, float]]


def per_seed(results: Results, metric: str, dataset: str | None = None, variant: str | None = None
             ) -> dict[int, float]:
    """{seed: value} of one (metric, dataset, variant); NaN values left out."""
    frame = results.select(metric, dataset, variant)
    return {int(s): float(v) for s, v in zip(frame["seed"], frame["value"]) if not math.isnan(float(v))}


def per_method(pairs: Mapping[str, Sequence[Pair]], what: str, *, want: int = 1) -> Verdict:
    """A claim "a > b" (``want`` = -1: "a < b") for every method: per method, the paired comparisons and their
    per-seed average (:func:`~xairepro.experiments.verdict_rules.paired_mean`), decided by ``directional`` with
    the counter-examples tested at level / number of methods; then :func:`combine_groups`."""
    verdicts = {}
    for method, items in pairs.items():
        comparisons = {label: paired(a, b) for label, a, b in items}
        overall = paired_mean([(a, b) for _, a, b in items]) if len(items) > 1 else None
        verdicts[method] = directional(comparisons, what, want=want, overall=overall, groups=len(pairs))
    return combine_groups(verdicts, what)
