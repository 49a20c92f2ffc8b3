"""One statistical rule for every claim of both studies (study-independent).

A claim compares conditions over runs (seeds).  Each comparison is an :class:`Estimate`: a difference
d (condition a - condition b, or a contrast of such differences) with its standard error and
degrees of freedom for Student's t:

- :func:`welch`: different models on each side (mean_a - mean_b, se^2 = s_a^2/n_a + s_b^2/n_b,
  Welch-Satterthwaite df); :func:`welch_from_summary` from published mean ± std and n;
- :func:`paired`: both sides from the same runs (d_s = a_s - b_s over the seeds both have; df = n - 1);
- :func:`contrast`: sum_i w_i d_i of independent estimates (a gain difference, an average over data
  sets); the variance components keep their own df so Welch-Satterthwaite applies to the whole;
- :func:`one_sample`: mean - threshold.

Every test is one-sided at ``level`` (alpha = 0.05).  Three kinds of claim:

- :func:`directional` ("X better than Y", in each of k comparisons).  **fails** when some comparison is
  significantly the other way (one-sided t, Holm-corrected over the claim's k comparisons); **holds** when
  no estimate points the other way and the claim's effect is significant: the average over its
  comparisons (``overall``, one t-test; per-seed averages when the comparisons share runs) or, without
  an average, every comparison on its own (intersection-union); **inconclusive (within-noise)** otherwise.
  With ``groups`` (e.g. methods) the verdict is given per group and combined: all hold -> holds, some
  hold and some fail -> partly, none holds and some fail -> fails.
- :func:`equivalent` ("no difference", within +-margin): **holds** when every comparison is inside the
  margin by two one-sided tests (TOST, intersection-union); **fails** when some comparison lies beyond
  it (Holm over the one-sided tests d > m, d < -m); **inconclusive (within-noise)** otherwise.  Failing
  to find a difference is never evidence of none.
- :func:`not_worse` ("no decrease by more than m"): **holds** when every comparison is significantly
  above -m; **fails** when one is significantly below -m (Holm); otherwise within noise.

A comparison with fewer than two runs on a side has no spread: it is listed as untestable and left out
(published tables without a spread); a claim with no testable comparison is inconclusive (within-noise).
A comparison missing from the results (a variant or metric not run) keeps a claim from holding: it is then
inconclusive (not-run), unless another comparison already makes it fail.  :func:`sanity` shows a check that
cannot fail at any plausible value (counted apart from the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from xairepro.experiments.base import Verdict

__all__ = [
    "LEVEL", "RULE", "Estimate", "welch", "welch_from_summary", "paired", "paired_mean", "contrast", "one_sample",
    "holm", "directional", "equivalent", "not_worse", "sanity", "combine_groups",
]

#: Significance level of every one-sided test (and of Holm's family-wise error within a claim).
LEVEL = 0.05

#: The rule in words, for the report and provenance.
RULE = (
    "Each comparison is a difference over runs with Student's t: Welch when the two sides are different "
    "models, paired by seed when they come from the same runs; published tables (mean ± std, n) use Welch. "
    f"Tests are one-sided at alpha = {LEVEL:g}. Directional claims (X better than Y): fails when a comparison "
    "is significantly the other way (Holm over the claim's comparisons); holds when no estimate points the "
    "other way and the claim's effect averaged over its comparisons is significant (every comparison on its "
    "own when no average can be formed); per-method claims say partly when some methods hold and others fail. "
    "No-difference claims: holds when every difference lies within a stated margin by two one-sided tests "
    "(TOST), fails when one lies beyond it (Holm). No-decrease claims: holds when every change is "
    "significantly above -margin, fails when one is significantly below. Otherwise inconclusive: "
    "within-noise, or not-learned when the compared models did not learn (chance guard, collapsed latent "
    "units), or not-run when results are missing. Sanity checks that cannot fail at plausible values are "
    "shown apart and not counted as tests.")


@dataclass(frozen=True)
class Estimate:
    """A difference ``diff`` with standard error ``se`` over ``n`` runs (fewest on a side).

    ``parts`` are the variance components (v_i, dof_i) of se^2 = sum v_i; the degrees of freedom are
    Welch-Satterthwaite's (sum v_i)^2 / sum v_i^2 / dof_i.  ``se`` is NaN when a side has fewer than two
    runs (untestable), 0 when the runs agree exactly (the difference is then known).
    """

    diff: float
    parts: tuple[tuple[float, float], ...]
    n: int

    @property
    def se(self) -> float:
        if not self.parts or any(math.isnan(v) for v, _ in self.parts):
            return math.nan
        return math.sqrt(sum(v for v, _ in self.parts))

    @property
    def df(self) -> float:
        var = sum(v for v, _ in self.parts)
        den = sum(v * v / d for v, d in self.parts if v > 0)
        return var * var / den if den > 0 else math.inf

    @property
    def testable(self) -> bool:
        return not math.isnan(self.diff) and not math.isnan(self.se)

    def p_above(self, bound: float = 0.0) -> float:
        """One-sided p of H0: d <= bound (small when d is clearly above ``bound``); NaN when untestable."""
        return self._p(self.diff - bound)

    def p_below(self, bound: float = 0.0) -> float:
        """One-sided p of H0: d >= bound (small when d is clearly below ``bound``); NaN when untestable."""
        return self._p(bound - self.diff)

    def _p(self, excess: float) -> float:
        if not self.testable:
            return math.nan
        se = self.se
        if se == 0.0:
            return 0.0 if excess > 0 else 1.0
        return float(stats.t.sf(excess / se, self.df))

    def direction(self, level: float = LEVEL) -> int | None:
        """+1 / -1 when d is above / below 0 by a one-sided test at ``level`` (no multiplicity correction: a
        descriptive sign, e.g. for a table of comparisons), 0 within the noise, None when untestable."""
        if not self.testable:
            return None
        if self.p_above() <= level:
            return 1
        if self.p_below() <= level:
            return -1
        return 0

    def half_width(self, level: float = LEVEL) -> float:
        """t_{1-level, df} x se: the one-sided bound's distance from ``diff`` (NaN when untestable)."""
        if not self.testable:
            return math.nan
        return 0.0 if self.se == 0.0 else float(stats.t.ppf(1.0 - level, self.df)) * self.se

    def describe(self) -> str:
        if math.isnan(self.diff):
            return "missing"
        if not self.testable:
            return f"{self.diff:+.3g} (one run: no spread, untestable)"
        return f"{self.diff:+.3g} ± {self.se:.2g} se (df {self.df:.3g}, n={self.n})"


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[~np.isnan(x)]


def welch(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b) of two independent groups of runs (NaNs dropped)."""
    x, y = _clean(a), _clean(b)
    if not x.size or not y.size:
        return Estimate(math.nan, (), 0)
    return welch_from_summary(float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, x.size,
                              float(y.mean()), float(y.std(ddof=1)) if y.size > 1 else math.nan, y.size)


def welch_from_summary(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> Estimate:
    """Welch's difference from mean ± sample std (ddof = 1) and run counts; NaN se when n < 2 on a side."""
    parts = []
    for sd, n in ((sd_a, n_a), (sd_b, n_b)):
        parts.append((sd * sd / n, n - 1.0) if n >= 2 and not math.isnan(sd) else (math.nan, 0.0))
    return Estimate(float(mean_a - mean_b), tuple(parts), int(min(n_a, n_b)))


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Estimate:
    """mean_s (a_s - b_s) over the seeds both have (NaNs dropped): one-sample t on the differences."""
    seeds = sorted(s for s in set(a) & set(b) if not (math.isnan(a[s]) or math.isnan(b[s])))
    return one_sample([a[s] - b[s] for s in seeds], 0.0)


def paired_mean(pairs: Sequence[tuple[Mapping[int, float], Mapping[int, float]]]) -> Estimate:
    """The average of several paired differences that share runs: per seed, the mean over the pairs of
    a_s - b_s (seeds every pair has), then a one-sample t over seeds (valid whatever the pairs' correlation)."""
    if not pairs:
        return Estimate(math.nan, (), 0)
    seeds = set.intersection(*({s for s in set(a) & set(b) if not (math.isnan(a[s]) or math.isnan(b[s]))}
                               for a, b in pairs))
    per_seed = [float(np.mean([a[s] - b[s] for a, b in pairs])) for s in sorted(seeds)]
    return one_sample(per_seed, 0.0)


def one_sample(values: Sequence[float], threshold: float) -> Estimate:
    """mean(values) - threshold, se = sd / sqrt(n), df = n - 1 (NaNs dropped)."""
    x = _clean(values)
    if not x.size:
        return Estimate(math.nan, (), 0)
    var = float(x.var(ddof=1)) / x.size if x.size > 1 else math.nan
    return Estimate(float(x.mean()) - threshold, ((var, x.size - 1.0),), int(x.size))


def contrast(terms: Sequence[tuple[float, Estimate]]) -> Estimate:
    """sum_i w_i d_i of independent estimates (different models): variances add as w_i^2 v."""
    if not terms or any(math.isnan(e.diff) for _, e in terms):
        return Estimate(math.nan, (), 0)
    parts = tuple((w * w * v, d) for w, e in terms for v, d in e.parts)
    return Estimate(float(sum(w * e.diff for w, e in terms)), parts, min(e.n for _, e in terms))


def holm(pvalues: Mapping[str, float], level: float = LEVEL) -> list[str]:
    """Labels whose hypotheses Holm's step-down procedure rejects at family-wise ``level`` (NaNs skipped)."""
    ordered = sorted((p, k) for k, p in pvalues.items() if not math.isnan(p))
    m, rejected = len(ordered), []
    for i, (p, k) in enumerate(ordered):
        if p > level / (m - i):
            break
        rejected.append(k)
    return rejected


def _numbers(comparisons: Mapping[str, Estimate]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, e in comparisons.items():
        if not math.isnan(e.diff):
            out[f"{label} diff"] = e.diff
        if e.testable:
            out[f"{label} se"] = e.se
    return out


def _listing(comparisons: Mapping[str, Estimate], limit: int = 6) -> str:
    items = list(comparisons.items())
    shown = "; ".join(f"{k}: {e.describe()}" for k, e in items[:limit])
    return shown + (f"; (+{len(items) - limit} more in the numbers)" if len(items) > limit else "")


Judge = Callable[[dict[str, Estimate], dict[str, float], str], Verdict]


def _decide(comparisons: Mapping[str, Estimate], what: str, listing: str, judge: Judge) -> Verdict:
    """The frame every kind of claim shares; ``judge(testable, numbers, detail)`` decides the rest.

    Nothing to compare -> inconclusive (not-run); no comparison with a spread -> inconclusive
    (within-noise); comparisons with one run on a side are listed and left out; a comparison missing from
    the results keeps the verdict from holding (not-run) unless it fails on the others.
    """
    if not comparisons:
        return Verdict.inconclusive("not-run", f"{what}: nothing to compare in this run")
    testable = {k: e for k, e in comparisons.items() if e.testable}
    missing = [k for k, e in comparisons.items() if math.isnan(e.diff)]
    one_run = [k for k in comparisons if k not in testable and k not in missing]
    detail = (f"{what}: {listing}."
              + (f" Not testable (fewer than two runs on a side): {', '.join(one_run)}." if one_run else "")
              + (f" Missing from the results: {', '.join(missing)}." if missing else ""))
    numbers = _numbers(comparisons)
    if not testable:
        verdict = Verdict.inconclusive("within-noise", f"no comparison has a spread to test. {detail}", numbers)
    else:
        verdict = judge(testable, numbers, detail)
    if not missing or verdict.status == "fails":
        return verdict
    return Verdict.inconclusive("not-run", f"missing from the results: {', '.join(missing)}; on the rest: "
                                f"{verdict.label}: {verdict.reason}", verdict.numbers)


def directional(comparisons: Mapping[str, Estimate], what: str, *, want: int = 1,
                overall: Estimate | None = None, level: float = LEVEL, groups: int = 1) -> Verdict:
    """A claim that every comparison's difference has the sign ``want`` (+1: a > b; -1: a < b).

    ``overall``: the claim's effect averaged over its comparisons, built by the caller so that its test
    is valid (per-seed averages for comparisons that share runs, :func:`contrast` for independent ones);
    ``None``: every comparison must be significant on its own.  ``groups``: how many such verdicts
    :func:`combine_groups` joins into one claim; the counter-example family is then tested at
    ``level / groups`` (Bonferroni over the groups, Holm within), so "fails" somewhere keeps alpha.
    """

    def against(e: Estimate) -> float:
        return e.p_below(0.0) if want > 0 else e.p_above(0.0)

    def towards(e: Estimate) -> float:
        return e.p_above(0.0) if want > 0 else e.p_below(0.0)

    def judge(testable: dict[str, Estimate], numbers: dict[str, float], detail: str) -> Verdict:
        counter = holm({k: against(e) for k, e in testable.items()}, level / groups)
        if counter:
            return Verdict("fails", f"significantly the other way (one-sided t, Holm over {len(testable)} at "
                           f"alpha {level / groups:.3g}) in {', '.join(counter)}. {detail}", numbers)
        wrong_sign = [k for k, e in testable.items() if e.diff * want <= 0]
        if wrong_sign:
            return Verdict.inconclusive("within-noise", f"estimate the other way (not significantly) in "
                                        f"{', '.join(wrong_sign)}. {detail}", numbers)
        if overall is not None and overall.testable:
            p = towards(overall)
            numbers = {**numbers, "average diff": overall.diff, "average se": overall.se, "average p": p}
            summary = f"average over the comparisons {overall.describe()}, one-sided p = {p:.2g}"
            if p <= level:
                return Verdict("holds", f"every estimate points the claimed way and the {summary} <= {level:g}. "
                               f"{detail}", numbers)
            return Verdict.inconclusive("within-noise", f"every estimate points the claimed way but the "
                                        f"{summary} > {level:g}. {detail}", numbers)
        weak = [k for k, e in testable.items() if towards(e) > level]
        if weak:
            return Verdict.inconclusive("within-noise", f"not significant on its own (one-sided p > {level:g}) "
                                        f"in {', '.join(weak)}. {detail}", numbers)
        return Verdict("holds", f"significant in every comparison (one-sided p <= {level:g}). {detail}", numbers)

    return _decide(comparisons, what, _listing(comparisons), judge)


def combine_groups(verdicts: Mapping[str, Verdict], what: str) -> Verdict:
    """Per-subject verdicts (e.g. one per method) into one: all hold -> holds; some hold, some fail ->
    partly; none holds, some fail -> fails; otherwise inconclusive (not-learned before not-run before
    within-noise)."""
    if not verdicts:
        return Verdict.inconclusive("not-run", f"{what}: nothing to compare in this run")
    by = {s: [k for k, v in verdicts.items() if v.status == s] for s in ("holds", "fails", "partly")}
    numbers = {f"{k}: {n}": x for k, v in verdicts.items() for n, x in v.numbers.items()}
    reason = f"{what}: " + " | ".join(f"{k} {v.label}: {v.reason}" for k, v in verdicts.items())
    if len(by["holds"]) == len(verdicts):
        return Verdict("holds", reason, numbers)
    if by["holds"] and (by["fails"] or by["partly"]):
        return Verdict("partly", f"holds for {', '.join(by['holds'])}, fails for "
                       f"{', '.join(by['fails'] + by['partly'])}. {reason}", numbers)
    if by["fails"] or by["partly"]:
        return Verdict("fails", reason, numbers)
    causes = [v.cause for v in verdicts.values() if v.status == "inconclusive"]
    cause = next((c for c in ("not-learned", "not-run") if c in causes), "within-noise")
    return Verdict.inconclusive(cause, reason, numbers)


def equivalent(comparisons: Mapping[str, Estimate], margins: Mapping[str, float], what: str, *,
               level: float = LEVEL) -> Verdict:
    """A "no difference" claim: every |d| < margin (``margins`` per comparison label), by TOST."""

    def judge(testable: dict[str, Estimate], numbers: dict[str, float], detail: str) -> Verdict:
        beyond = {}
        for k, e in testable.items():
            beyond[f"{k} > +margin"] = e.p_above(margins[k])
            beyond[f"{k} < -margin"] = e.p_below(-margins[k])
        out = holm(beyond, level)
        if out:
            return Verdict("fails", f"a difference beyond its margin (one-sided t, Holm over {len(beyond)} tests "
                           f"at alpha {level:g}): {', '.join(out)}. {detail}", numbers)
        unclear = [k for k, e in testable.items() if max(e.p_above(-margins[k]), e.p_below(margins[k])) > level]
        if unclear:
            return Verdict.inconclusive("within-noise", f"not shown within the margin (TOST at {level:g}) in "
                                        f"{', '.join(unclear)}. {detail}", numbers)
        return Verdict("holds", f"every difference within its margin (TOST, both one-sided p <= {level:g}). "
                       f"{detail}", numbers)

    listing = "; ".join(f"{k}: {e.describe()} (margin {margins[k]:g})" for k, e in comparisons.items())
    return _decide(comparisons, what, listing, judge)


def not_worse(comparisons: Mapping[str, Estimate], margin: float, what: str, *, level: float = LEVEL) -> Verdict:
    """A "no decrease by more than ``margin``" claim: every d > -margin significantly."""

    def judge(testable: dict[str, Estimate], numbers: dict[str, float], detail: str) -> Verdict:
        worse = holm({k: e.p_below(-margin) for k, e in testable.items()}, level)
        if worse:
            return Verdict("fails", f"a decrease significantly larger than {margin:g} (one-sided t, Holm over "
                           f"{len(testable)} at alpha {level:g}) in {', '.join(worse)}. {detail}", numbers)
        unclear = [k for k, e in testable.items() if e.p_above(-margin) > level]
        if unclear:
            return Verdict.inconclusive("within-noise", f"not shown above -{margin:g} (one-sided p > {level:g}) "
                                        f"in {', '.join(unclear)}. {detail}", numbers)
        return Verdict("holds", f"every change significantly above -{margin:g} (one-sided p <= {level:g}). "
                       f"{detail}", numbers)

    return _decide(comparisons, f"{what} (margin {margin:g})", _listing(comparisons), judge)


def sanity(comparisons: Mapping[str, Estimate], what: str, *, want: int = -1, level: float = LEVEL) -> Verdict:
    """A sanity check (e.g. every correlation below 0.7): the same test as :func:`directional` without an
    average; reported with the claim marked as a sanity check, not counted as a test of the study."""
    verdict = directional(comparisons, what, want=want, level=level)
    return Verdict(verdict.status, f"sanity check: {verdict.reason}", verdict.numbers, verdict.cause)
