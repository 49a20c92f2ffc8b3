"""Differences between variants over seeds, and the three kinds of verdict the study's claims need.

A difference of means d = mean(a) - mean(b) over seeds has the standard error
se = sqrt(s_a^2 / n_a + s_b^2 / n_b) (sample variances, ddof = 1); a difference of gains adds the
squared errors.  A difference *counts* only when |d| > z * se (``z`` = the experiments'
``significance``, 1 by default): with fewer than two seeds on a side there is no uncertainty and the
difference is *undecided*.

- :func:`consistently` ("X consistently improves Y"): holds when every comparison counts in the claimed
  direction, fails when at least one counts against it, inconclusive otherwise;
- :func:`never_above` ("X does not beat Y"): fails when X counts above Y somewhere, holds when every
  comparison is decided and none does;
- :func:`no_difference` ("no significant difference"): fails when any difference counts, holds when
  all are decided and none does.

Chance guard (:func:`chance_check`, :func:`guarded`): a comparison on a task the models could not learn
at this budget is noise, so a claim says ``inconclusive`` when, on a data set it uses, the baseline (CE)
model's mean test accuracy has a chance-corrected value (acc - chance) / (100 - chance), chance = 100 / K,
below ``min_skill`` (without a baseline record, the compared models are judged).  A compared variant that
falls to chance where the baseline learned is the variant's effect: the verdict stands and names it.  The
accuracies and chance levels join the deciding numbers either way.  Sets without accuracy records are not
guarded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xairepro.experiments.base import Results, Verdict
from xairepro.metrics import higher_is_better

__all__ = [
    "Effect", "difference", "advantage", "gain_difference", "gain_advantage", "consistently", "never_above", "no_difference", "chance_check",
    "guarded",
]


@dataclass(frozen=True)
class Effect:
    """A difference ``diff`` with its standard error ``se`` (NaN when undecidable)."""

    diff: float
    se: float

    def direction(self, z: float) -> int | None:
        """+1 / -1 when |diff| > z * se, 0 when within the uncertainty, None when undecidable."""
        if math.isnan(self.diff) or math.isnan(self.se):
            return None
        if abs(self.diff) > z * self.se:
            return 1 if self.diff > 0 else -1
        return 0

    def describe(self, z: float) -> str:
        if math.isnan(self.diff):
            return "missing"
        if math.isnan(self.se):
            return f"{self.diff:+.3g} (one seed: no uncertainty)"
        word = {1: "above", -1: "below", 0: "within uncertainty"}[self.direction(z)]  # type: ignore[index]
        return f"{self.diff:+.3g} ± {self.se:.2g} ({word})"


def difference(results: Results, metric: str, dataset: str, a: str, b: str) -> Effect:
    """mean(a) - mean(b) of ``metric`` on ``dataset`` over seeds (NaNs dropped), with its standard error."""
    va, vb = results.values(metric, dataset, a), results.values(metric, dataset, b)
    va, vb = va[~np.isnan(va)], vb[~np.isnan(vb)]
    if not va.size or not vb.size:
        return Effect(math.nan, math.nan)
    diff = float(va.mean() - vb.mean())
    if va.size < 2 or vb.size < 2:
        return Effect(diff, math.nan)
    return Effect(diff, math.sqrt(float(va.var(ddof=1)) / va.size + float(vb.var(ddof=1)) / vb.size))


def gain_difference(results: Results, metric: str, first: str, second: str, treated: str, control: str) -> Effect:
    """(treated - control) on dataset ``first`` minus (treated - control) on ``second``."""
    g1 = difference(results, metric, first, treated, control)
    g2 = difference(results, metric, second, treated, control)
    return Effect(g1.diff - g2.diff, math.hypot(g1.se, g2.se))


def _oriented(effect: Effect, metric: str) -> Effect:
    """``effect`` as "how much better": negated where ``metric`` is lower-is-better (``HIGHER_IS_BETTER``)."""
    direction = higher_is_better(metric)
    if direction is None:
        raise ValueError(f"metric {metric!r} has no direction in xairepro.metrics.HIGHER_IS_BETTER")
    return effect if direction else Effect(-effect.diff, effect.se)


def advantage(results: Results, metric: str, dataset: str, a: str, b: str) -> Effect:
    """How much better ``a`` is than ``b`` in ``metric``: :func:`difference` oriented by the metric's direction."""
    return _oriented(difference(results, metric, dataset, a, b), metric)


def gain_advantage(results: Results, metric: str, first: str, second: str, treated: str, control: str) -> Effect:
    """How much more ``treated`` improves on ``control`` on ``first`` than on ``second``: :func:`gain_difference`
    oriented by the metric's direction."""
    return _oriented(gain_difference(results, metric, first, second, treated, control), metric)


def _numbers(effects: Mapping[str, Effect]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, e in effects.items():
        if not math.isnan(e.diff):
            out[f"{label} diff"] = e.diff
        if not math.isnan(e.se):
            out[f"{label} se"] = e.se
    return out


def _listing(effects: Mapping[str, Effect], z: float) -> str:
    return "; ".join(f"{label}: {e.describe(z)}" for label, e in effects.items())


def _rule(z: float) -> str:
    return f"a difference counts when |d| > {z:g} x its standard error over seeds"


def consistently(effects: Mapping[str, Effect], z: float, what: str) -> Verdict:
    """Holds when every effect is positive beyond its uncertainty; fails when one is negative beyond it."""
    dirs = {label: e.direction(z) for label, e in effects.items()}
    detail = f"{what}: {_listing(effects, z)} ({_rule(z)})"
    if not effects:
        return Verdict("inconclusive", f"{what}: nothing to compare")
    against = [label for label, d in dirs.items() if d == -1]
    if against:
        return Verdict("fails", f"counter-example in {', '.join(against)}. {detail}", _numbers(effects))
    if all(d == 1 for d in dirs.values()):
        return Verdict("holds", f"better in every comparison. {detail}", _numbers(effects))
    return Verdict("inconclusive", f"not better beyond the uncertainty everywhere. {detail}", _numbers(effects))


def never_above(effects: Mapping[str, Effect], z: float, what: str) -> Verdict:
    """Fails when an effect is positive beyond its uncertainty; holds when all are decided and none is."""
    dirs = {label: e.direction(z) for label, e in effects.items()}
    detail = f"{what}: {_listing(effects, z)} ({_rule(z)})"
    if not effects:
        return Verdict("inconclusive", f"{what}: nothing to compare")
    above = [label for label, d in dirs.items() if d == 1]
    if above:
        return Verdict("fails", f"above in {', '.join(above)}. {detail}", _numbers(effects))
    if any(d is None for d in dirs.values()):
        return Verdict("inconclusive", f"some comparisons cannot be decided. {detail}", _numbers(effects))
    return Verdict("holds", f"never above beyond the uncertainty. {detail}", _numbers(effects))


def no_difference(effects: Mapping[str, Effect], z: float, what: str) -> Verdict:
    """Fails when any effect counts (either sign); holds when all are decided and none counts."""
    dirs = {label: e.direction(z) for label, e in effects.items()}
    detail = f"{what}: {_listing(effects, z)} ({_rule(z)})"
    if not effects:
        return Verdict("inconclusive", f"{what}: nothing to compare")
    differ = [label for label, d in dirs.items() if d in (1, -1)]
    if differ:
        return Verdict("fails", f"significant difference in {', '.join(differ)}. {detail}", _numbers(effects))
    if any(d is None for d in dirs.values()):
        return Verdict("inconclusive", f"some comparisons cannot be decided. {detail}", _numbers(effects))
    return Verdict("holds", f"no difference beyond the uncertainty. {detail}", _numbers(effects))


def chance_check(results: Results, classes: Mapping[str, int], variants: Sequence[str],
                 min_skill: float, reference: str = "baseline") -> tuple[list[str], dict[str, float]]:
    """Data sets of ``classes`` whose models are not clearly above chance, and the numbers.

    ``classes`` maps each data set to its number of classes K.  A model is clearly above chance when its
    mean test accuracy (%, over seeds) has (acc - chance) / (100 - chance) >= ``min_skill``.  A set is
    judged by its ``reference`` (baseline, CE) model when that has an accuracy record: whether the task is
    learnable at this budget; a compared variant that falls to chance where the baseline learned is the
    variant's own effect, not noise.  Without a reference record the compared ``variants`` are judged.
    The accuracies of the reference and of every compared variant are returned either way.
    """
    below, _, numbers = _near_chance(results, classes, variants, min_skill, reference)
    return below, numbers


def _near_chance(results: Results, classes: Mapping[str, int], variants: Sequence[str], min_skill: float,
                 reference: str) -> tuple[list[str], list[str], dict[str, float]]:
    """(judged models near chance, compared variants near chance where the reference learned, numbers)."""
    below: list[str] = []
    collapsed: list[str] = []
    numbers: dict[str, float] = {}
    for key, k in classes.items():
        chance = 100.0 / k
        has_reference = not math.isnan(results.mean("accuracy", key, reference))
        judged = [reference] if has_reference else list(variants)
        for variant in dict.fromkeys([*judged, *variants]):
            acc = results.mean("accuracy", key, variant)
            if math.isnan(acc):
                continue
            numbers[f"{key} chance"] = chance
            numbers[f"{key} {variant} accuracy"] = acc
            if (acc - chance) / (100.0 - chance) >= min_skill:
                continue
            label = f"{key} {variant} {acc:.1f}% (chance {chance:.1f}%)"
            if variant in judged:
                below.append(label)
            else:  # only reachable with a reference record: a variant that collapsed where it learned
                collapsed.append(label)
    return below, collapsed, numbers


def guarded(verdict: Verdict, results: Results, classes: Mapping[str, int], variants: Sequence[str],
            min_skill: float) -> Verdict:
    """``verdict`` with the models' accuracies added, or ``inconclusive`` when a set's baseline is near chance.

    Compared variants near chance where the baseline learned leave the verdict as it is and are named in
    its reason (their failure to learn is part of what the comparison measures).
    """
    below, collapsed, numbers = _near_chance(results, classes, variants, min_skill, "baseline")
    merged = {**numbers, **verdict.numbers}
    if below and verdict.status != "inconclusive":
        return Verdict("inconclusive", f"models not clearly above chance ((acc - chance) / (100 - chance) < "
                       f"{min_skill:g}): {', '.join(below)}; the comparison alone would say {verdict.status}: "
                       f"{verdict.reason}", merged)
    if below:
        return Verdict(verdict.status, f"models not clearly above chance: {', '.join(below)}. {verdict.reason}",
                       merged)
    if collapsed:
        return Verdict(verdict.status, f"compared models near chance where the baseline learned (an effect "
                       f"of the variant): {', '.join(collapsed)}. {verdict.reason}", merged)
    return Verdict(verdict.status, verdict.reason, merged)
