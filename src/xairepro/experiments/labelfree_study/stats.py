"""Deciding claims across runs: a difference counts only when it exceeds its uncertainty.

For a quantity measured once per run (seed), the difference between two conditions is
- paired (same runs, e.g. a method vs Random on the same model): d_s = a_s - b_s, mean d̄ over the
  n runs both have, uncertainty u = z · sd(d) / sqrt(n);
- unpaired (different models, e.g. beta = 1 vs beta = 10): d̄ = mean(a) - mean(b),
  u = z · sqrt(var(a)/n_a + var(b)/n_b) (Welch's standard error).
Sample variances use ddof = 1; with fewer than two runs on a side u is NaN and nothing is decided.
``z`` defaults to 2 (about a 95% normal interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xairepro.experiments.base import Results, Verdict

__all__ = ["CLAIM_Z", "Difference", "per_seed", "paired_difference", "unpaired_difference", "combine",
           "bounded_above", "fmt_diff"]

#: Multiplier of the standard error: a difference counts when |mean| > CLAIM_Z · SE.
CLAIM_Z = 2.0


@dataclass(frozen=True)
class Difference:
    """A mean difference over runs and its uncertainty (z · standard error)."""

    mean: float
    uncertainty: float
    n: int

    @property
    def sign(self) -> int:
        """+1 when mean > uncertainty, -1 when mean < -uncertainty, 0 when unclear (or undefined)."""
        if math.isnan(self.mean) or math.isnan(self.uncertainty):
            return 0
        if self.mean > self.uncertainty:
            return 1
        if self.mean < -self.uncertainty:
            return -1
        return 0

    @property
    def low(self) -> float:
        return self.mean - self.uncertainty

    @property
    def high(self) -> float:
        return self.mean + self.uncertainty


def per_seed(results: Results, metric: str, dataset: str | None = None, variant: str | None = None
             ) -> dict[int, float]:
    """{seed: value} of one (metric, dataset, variant); NaN values left out."""
    frame = results.select(metric, dataset, variant)
    return {int(s): float(v) for s, v in zip(frame["seed"], frame["value"]) if not math.isnan(float(v))}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], z: float = 2.0) -> Difference:
    """Mean of a_s - b_s over the seeds both have, with u = z · sd / sqrt(n) (NaN for n < 2)."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    if d.size == 0:
        return Difference(math.nan, math.nan, 0)
    u = z * float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else math.nan
    return Difference(float(d.mean()), u, int(d.size))


def unpaired_difference(a: Sequence[float], b: Sequence[float], z: float = 2.0) -> Difference:
    """mean(a) - mean(b) with u = z · sqrt(var(a)/n_a + var(b)/n_b) (NaN when a side has < 2 values)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return Difference(math.nan, math.nan, 0)
    mean = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Difference(mean, math.nan, int(min(x.size, y.size)))
    u = z * math.sqrt(float(x.var(ddof=1)) / x.size + float(y.var(ddof=1)) / y.size)
    return Difference(mean, u, int(min(x.size, y.size)))


def bounded_above(values: Sequence[float], threshold: float, z: float = 2.0) -> Difference:
    """mean(values) - threshold with u = z · sd / sqrt(n): sign -1 means confidently below ``threshold``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Difference(math.nan, math.nan, 0)
    u = z * float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else math.nan
    return Difference(float(x.mean()) - threshold, u, int(x.size))


def fmt_diff(label: str, d: Difference) -> str:
    return f"{label} {d.mean:+.3g} ± {d.uncertainty:.2g} (n={d.n})"


def combine(outcomes: Mapping[str, Difference], *, claim: str, want: int = 1) -> Verdict:
    """Verdict of a claim that every difference has sign ``want``.

    holds: all do; fails: some difference is confidently of the opposite sign; inconclusive otherwise
    (a difference within its uncertainty, or fewer than two runs).  ``numbers`` holds every mean
    difference and the smallest margin |mean| - uncertainty in the wanted direction.
    """
    if not outcomes:
        return Verdict("inconclusive", f"{claim}: no results to compare")
    against = [k for k, d in outcomes.items() if d.sign == -want]
    unclear = [k for k, d in outcomes.items() if d.sign == 0]
    numbers = {k: d.mean for k, d in outcomes.items()}
    if against:
        status, which = "fails", against
        reason = "opposite beyond the uncertainty: "
    elif unclear:
        status, which = "inconclusive", unclear
        reason = "within the uncertainty: "
    else:
        status, which = "holds", list(outcomes)
        reason = "every difference exceeds its uncertainty: "
    shown = which[:4]
    more = f" (+{len(which) - len(shown)} more)" if len(which) > len(shown) else ""
    text = f"{claim}; {reason}" + "; ".join(fmt_diff(k, outcomes[k]) for k in shown) + more
    return Verdict(status, text, numbers)
