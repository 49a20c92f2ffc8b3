"""The LICO study's comparisons over seeds, for the shared rule of :mod:`~xairepro.experiments.verdict_rules`.

Variants are different models, so a difference between two variants on a data set is Welch's
(:func:`difference`); a difference of LICO gains between two data sets is a contrast of four independent
groups (:func:`gain_difference`); a claim's average over data sets is :func:`average` (data sets are
trained separately, hence independent).  Several saliency methods explaining the *same* models are
averaged per model and seed first (:func:`method_average`), so their average is tested validly.  Claims
read them as "how much better" (:func:`advantage`, :func:`gain_advantage`), oriented by the metric's
direction in ``xairepro.metrics.HIGHER_IS_BETTER``.

Chance guard (:func:`chance_check`, :func:`guarded`): a comparison on a task the models could not learn
at this budget is noise, so a claim is ``inconclusive (not-learned)`` when, on a data set it uses, the
baseline (CE) model's mean test accuracy has a chance-corrected value (acc - chance) / (100 - chance),
chance = 100 / K, below ``min_skill`` (without a baseline record, the compared models are judged).  A
compared variant that falls to chance where the baseline learned is the variant's effect: the verdict
stands and names it.  The accuracies and chance levels join the deciding numbers either way.  Sets
without accuracy records are not guarded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from xairepro.experiments.base import Results, Verdict
from xairepro.experiments.verdict_rules import Estimate, contrast, directional, welch
from xairepro.metrics import higher_is_better

__all__ = ["difference", "advantage", "gain_difference", "gain_advantage", "average", "method_average",
           "improvement", "chance_check", "guarded"]


def difference(results: Results, metric: str, dataset: str, a: str, b: str) -> Estimate:
    """mean(a) - mean(b) of ``metric`` on ``dataset`` over seeds (NaNs dropped), Welch's t."""
    return welch(results.values(metric, dataset, a), results.values(metric, dataset, b))


def gain_difference(results: Results, metric: str, first: str, second: str, treated: str, control: str) -> Estimate:
    """(treated - control) on data set ``first`` minus (treated - control) on ``second``."""
    return contrast([(1.0, difference(results, metric, first, treated, control)),
                     (-1.0, difference(results, metric, second, treated, control))])


def _oriented(estimate: Estimate, metric: str) -> Estimate:
    """``estimate`` as "how much better": negated where ``metric`` is lower-is-better (``HIGHER_IS_BETTER``)."""
    direction = higher_is_better(metric)
    if direction is None:
        raise ValueError(f"metric {metric!r} has no direction in xairepro.metrics.HIGHER_IS_BETTER")
    return estimate if direction else Estimate(-estimate.diff, estimate.parts, estimate.n)


def advantage(results: Results, metric: str, dataset: str, a: str, b: str) -> Estimate:
    """How much better ``a`` is than ``b`` in ``metric``: :func:`difference` oriented by the metric's direction."""
    return _oriented(difference(results, metric, dataset, a, b), metric)


def gain_advantage(results: Results, metric: str, first: str, second: str, treated: str, control: str) -> Estimate:
    """How much more ``treated`` improves on ``control`` on ``first`` than on ``second``: :func:`gain_difference`
    oriented by the metric's direction."""
    return _oriented(gain_difference(results, metric, first, second, treated, control), metric)


def average(estimates: Sequence[Estimate]) -> Estimate | None:
    """The mean of independent estimates (different data sets); None when there is at most one."""
    if len(estimates) < 2:
        return None
    return contrast([(1.0 / len(estimates), e) for e in estimates])


def _per_seed_mean(results: Results, metrics: Sequence[str], dataset: str, variant: str) -> list[float]:
    """For each seed with every metric recorded (not NaN), the mean of ``metrics``."""
    rows: dict[int, list[float]] = {}
    for metric in metrics:
        frame = results.select(metric, dataset, variant)
        for seed, value in zip(frame["seed"], frame["value"]):
            if not math.isnan(float(value)):
                rows.setdefault(int(seed), []).append(float(value))
    return [float(np.mean(v)) for _, v in sorted(rows.items()) if len(v) == len(metrics)]


def method_average(results: Results, metrics: Sequence[str], dataset: str, a: str, b: str) -> Estimate:
    """How much better ``a`` is than ``b`` on the per-seed means of ``metrics`` (e.g. every method's Overall
    of one model), Welch's t; the metrics must share one direction."""
    directions = {higher_is_better(m) for m in metrics}
    if len(directions) != 1 or None in directions:
        raise ValueError(f"metrics {list(metrics)} do not share one direction in HIGHER_IS_BETTER")
    return _oriented(welch(_per_seed_mean(results, metrics, dataset, a), _per_seed_mean(results, metrics, dataset, b)),
                     metrics[0])


def improvement(results: Results, keys: Sequence[str], methods: Sequence[str], suffix: str, what: str,
                labels: Mapping[str, str] | None = None) -> Verdict:
    """"LICO consistently better than the baseline" in ``{method}.{suffix}`` over every data set x method, by the
    shared rule; the claim's average: each model's score averaged over the methods (they explain the same
    models), then over the independent data sets.  ``labels``: display names of the methods."""
    labels = labels or {}
    effects = {f"{k} {labels.get(m, m)}": advantage(results, f"{m}.{suffix}", k, "lico", "baseline")
               for k in keys for m in methods}
    per_set = [method_average(results, [f"{m}.{suffix}" for m in methods], k, "lico", "baseline") for k in keys]
    overall = average(per_set) if len(per_set) > 1 else per_set[0] if len(effects) > 1 else None
    return directional(effects, what, overall=overall)


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
    """``verdict`` with the models' accuracies added, or ``inconclusive (not-learned)`` when a set's
    baseline is near chance.

    Compared variants near chance where the baseline learned leave the verdict as it is and are named in
    its reason (their failure to learn is part of what the comparison measures).
    """
    below, collapsed, numbers = _near_chance(results, classes, variants, min_skill, "baseline")
    merged = {**numbers, **verdict.numbers}
    if below:
        alone = f"the comparison alone would say {verdict.label}: " if verdict.status != "inconclusive" else ""
        return Verdict.inconclusive("not-learned", f"models not clearly above chance ((acc - chance) / (100 - "
                                    f"chance) < {min_skill:g}): {', '.join(below)}; {alone}{verdict.reason}",
                                    merged)
    if collapsed:
        return Verdict(verdict.status, f"compared models near chance where the baseline learned (an effect "
                       f"of the variant): {', '.join(collapsed)}. {verdict.reason}", merged, verdict.cause)
    return Verdict(verdict.status, verdict.reason, merged, verdict.cause)
