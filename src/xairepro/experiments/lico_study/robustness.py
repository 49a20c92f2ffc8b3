"""Verdict robustness of the LICO study's interpretability claim (issue 15; not in the study).

Claim 1 ("LICO consistently improves interpretability") is decided on insertion - deletion (Overall,
lico-fact).  The same maps scored by retrain-free metrics -- ROAD MoRF and LeRF, pixel flipping (MoRF
AUC), faithfulness correlation -- re-decide it with the same rule (``stats.improvement``: the shared rule of
:mod:`~xairepro.experiments.verdict_rules` over every data set x saliency method, the chance guard), each
difference oriented by the metric's direction (``stats.advantage``), so "+" is always "LICO more faithful".  Each comparison's row
also shows the sign the study published for it (Tables 1 and 4: LICO - baseline Overall).  Metrics
without any record are left out, so the claim only compares what was scored.

Records it reads: ``{method}.overall`` and ``{method}.{road_morf, road_lerf, pixel_flipping,
faithfulness_correlation}`` of the variants ``baseline`` and ``lico``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xairepro.errors import UsageError
from xairepro.experiments.base import Claim, Results, Verdict
from xairepro.experiments.lico_study.evaluation import METHOD_LABELS, insdel_metric
from xairepro.experiments.lico_study.references import TABLE4_INSDEL
from xairepro.experiments.lico_study.sets import get_study_set
from xairepro.experiments.lico_study.stats import advantage, guarded, improvement
from xairepro.experiments.robustness import FRAGILE, metric_robustness, sign_symbol
from xairepro.experiments.verdict_rules import LEVEL, Estimate, holm

__all__ = ["ROBUSTNESS_METRICS", "interpretability_robustness_claim", "published_sign", "protocol_sensitivity",
           "protocol_sensitivity_claim"]

#: (record suffix, label) of every metric the claim is re-decided under, the study's first; their directions
#: are ``metrics.HIGHER_IS_BETTER``'s.
ROBUSTNESS_METRICS: tuple[tuple[str, str], ...] = (
    ("overall", "insertion-deletion"),
    ("road_morf", "ROAD MoRF"),
    ("road_lerf", "ROAD LeRF"),
    ("pixel_flipping", "pixel flipping"),
    ("faithfulness_correlation", "faithfulness correlation"),
)


def published_sign(dataset: str, method: str) -> int | None:
    """Sign of the published LICO - baseline Overall for the data set (or the one it stands in for)."""
    try:
        published = get_study_set(dataset).published
    except UsageError:            # not a study set: look the key up as it is
        published = dataset
    lico = TABLE4_INSDEL.get((published, "lico", f"{method}.overall"))
    base = TABLE4_INSDEL.get((published, "baseline", f"{method}.overall"))
    if lico is None or base is None:
        return None
    return (lico > base) - (lico < base)


def interpretability_robustness_claim(keys: Sequence[str], methods: Sequence[str],
                                      classes: Mapping[str, int] | None = None, min_skill: float = 0.0,
                                      metrics: Sequence[tuple[str, str]] = ROBUSTNESS_METRICS) -> Claim:
    """The claim: claim 1's verdict is the same under every recorded faithfulness metric."""

    def check(results: Results) -> Verdict:
        recorded = set(results.frame["metric"]) if len(results) else set()
        verdicts: dict[str, Verdict] = {}
        signs: dict[str, dict[str, int | None]] = {}
        for suffix, label in metrics:
            if not any(f"{m}.{suffix}" in recorded for m in methods):
                continue
            for key in keys:
                for method in methods:
                    e = advantage(results, f"{method}.{suffix}", key, "lico", "baseline")
                    name = f"{key} {METHOD_LABELS.get(method, method)}"
                    row = f"{name} (published {sign_symbol(published_sign(key, method))})"
                    signs.setdefault(row, {})[label] = e.direction()
            verdicts[label] = guarded(improvement(results, keys, methods, suffix, f"LICO - baseline, {label}"),
                                      results, classes or {}, ("baseline", "lico"), min_skill)
        if len(verdicts) < 2:
            return Verdict.inconclusive("not-run", f"fewer than two faithfulness metrics recorded "
                                        f"({', '.join(verdicts) or 'none'}): nothing to compare")
        return metric_robustness(verdicts, "claim 1 (LICO - baseline, + = LICO more faithful)", signs)

    return Claim("claim-1-interpretability-metric-robustness",
                 "Verdict robustness of the paper's claim 1: LICO vs baseline decided under insertion/deletion, "
                 f"ROAD (MoRF, LeRF), pixel flipping and faithfulness correlation on the same maps; a verdict that "
                 f"changes with the metric is {FRAGILE}", check, "not in the study (xairepro issue 15)")


def protocol_sensitivity(comparisons: Mapping[str, tuple[Estimate, Estimate]], protocols: tuple[str, str],
                         level: float = LEVEL) -> Verdict:
    """Does each LICO - baseline difference keep its sign under the other protocol?

    ``comparisons``: label -> (estimate under ``protocols[0]``, under ``protocols[1]``), both oriented so
    + is "LICO more faithful".  A comparison *flips* when it is significantly positive under one protocol
    and significantly negative under the other: the p-value of that joint statement is the larger of the
    two one-sided p-values (intersection-union), taken in the likelier orientation (x 2, Bonferroni over
    the two), and Holm's procedure over the comparisons keeps the family-wise level.  It *keeps its sign*
    when the difference is significant in the same direction under both protocols (the larger p <= level).

    **fails** (protocol-sensitive): some comparison flips.  **holds**: every comparison keeps its sign.
    **inconclusive (within-noise)** otherwise (a sign decided under one protocol only, or under none).
    """
    first, second = protocols
    flips, kept, rows = {}, [], []
    for label, (a, b) in comparisons.items():
        rows.append(f"{label}: {first} {sign_symbol(a.direction(level))} {second} {sign_symbol(b.direction(level))}")
        if not (a.testable and b.testable):
            continue
        up_down = max(a.p_above(), b.p_below())
        down_up = max(a.p_below(), b.p_above())
        flips[label] = min(1.0, 2 * min(up_down, down_up))
        if max(a.p_above(), b.p_above()) <= level or max(a.p_below(), b.p_below()) <= level:
            kept.append(label)
    numbers = {"comparisons": float(len(comparisons)), "testable": float(len(flips)),
               "keep their sign": float(len(kept))}
    table = ("Signs per comparison (+ LICO more faithful, - baseline more faithful, = within the noise, "
             "? untestable; one-sided t at alpha " f"{level:g}): " + "; ".join(rows) + ".")
    flipped = holm(flips, level)
    numbers["flip"] = float(len(flipped))
    if flipped:
        return Verdict("fails", f"protocol-sensitive: significantly opposite signs under {first} and {second} "
                       f"(Holm over {len(flips)} comparisons at alpha {level:g}) in {', '.join(flipped)}. {table}",
                       numbers)
    if not flips:
        return Verdict.inconclusive("within-noise", f"no comparison testable under both protocols. {table}", numbers)
    if len(kept) == len(comparisons):
        return Verdict("holds", f"every difference keeps its sign under both protocols. {table}", numbers)
    return Verdict.inconclusive("within-noise", f"{len(kept)} of {len(comparisons)} differences shown to keep "
                                f"their sign, none shown to flip. {table}", numbers)


def protocol_sensitivity_claim(keys: Sequence[str], methods: Sequence[str], protocols: Sequence[str],
                               classes: Mapping[str, int] | None = None, min_skill: float = 0.0) -> Claim:
    """Issue 14: each published difference (LICO - baseline Overall, per data set and method) judged under
    the study's protocol (the first) and the other (the second) on the same maps; chance-guarded."""
    if len(protocols) < 2:
        raise ValueError(f"protocol sensitivity needs two protocols, got {list(protocols)}")
    pair = (protocols[0], protocols[1])

    def check(results: Results) -> Verdict:
        comparisons = {}
        for key in keys:
            for method in methods:
                name = f"{key} {METHOD_LABELS.get(method, method)} (published {sign_symbol(published_sign(key, method))})"
                comparisons[name] = tuple(
                    advantage(results, insdel_metric(method, "overall", p, pair[0]), key, "lico", "baseline")
                    for p in pair)
        return guarded(protocol_sensitivity(comparisons, pair), results, classes or {}, ("baseline", "lico"),
                       min_skill)

    return Claim("claim-1-protocol-sensitivity",
                 f"Protocol sensitivity of the study's Tables 1 and 4: each LICO - baseline Overall difference "
                 f"(data set x saliency method) keeps its sign when the same maps are scored under {pair[1]} "
                 f"instead of {pair[0]}", check, "not in the study (xairepro issue 14); seed 000, Tables 1 and 4")
