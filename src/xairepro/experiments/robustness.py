"""Verdict robustness: does a claim's verdict survive a change of faithfulness metric?

A claim such as "method A is more faithful than B" is decided under one metric (insertion/deletion,
a latent shift with black pixels, ...).  Re-deciding it, with the same statistical rule, on the same
explanations under other retrain-free metrics (ROAD MoRF / LeRF, pixel flipping, faithfulness
correlation, ROAD imputation of the removed features) tells whether the verdict is a property of the
explanations or of the metric.  :func:`metric_robustness` turns the per-metric verdicts (and,
optionally, the sign of every compared difference under every metric) into one verdict:

- holds (robust): the same decided verdict under every metric;
- fails (**metric-fragile**): the verdict differs between metrics;
- inconclusive: no metric decides (every verdict inconclusive: its cause, not-learned before within-noise),
  or nothing to compare (not-run).

The reason lists each metric's verdict and, per comparison, its sign under each metric
(``+`` in the claimed direction by a one-sided t-test at the shared rule's level, ``-`` against it, ``=``
within the noise, ``?`` untestable), the verdict-robustness table in text form.
"""

from __future__ import annotations

from collections.abc import Mapping

from xairepro.experiments.base import Verdict

__all__ = ["metric_robustness", "sign_symbol", "FRAGILE"]

#: The word the report uses for a claim whose verdict depends on the metric.
FRAGILE = "metric-fragile"


def sign_symbol(sign: int | None) -> str:
    """+1 -> '+', -1 -> '-', 0 -> '=', None -> '?'."""
    return {1: "+", -1: "-", 0: "="}.get(sign, "?")  # type: ignore[arg-type]


def metric_robustness(verdicts: Mapping[str, Verdict], what: str,
                      signs: Mapping[str, Mapping[str, int | None]] | None = None) -> Verdict:
    """One verdict on whether ``verdicts`` (metric label -> the claim's verdict under it) agree.

    ``signs``: comparison label -> {metric label: sign of its difference}, shown in the reason; a
    comparison whose decided signs disagree is counted in ``numbers["comparisons flipping"]``.
    """
    if not verdicts:
        return Verdict.inconclusive("not-run", f"{what}: no metric to compare")
    statuses = {metric: v.status for metric, v in verdicts.items()}
    listing = "; ".join(f"{metric}: {status}" for metric, status in statuses.items())
    table = ""
    numbers: dict[str, float] = {"metrics": float(len(verdicts))}
    if signs:
        flipping = [label for label, row in signs.items() if {s for s in row.values() if s in (1, -1)} == {1, -1}]
        numbers["comparisons"] = float(len(signs))
        numbers["comparisons flipping"] = float(len(flipping))
        metrics = list(verdicts)
        rows = [f"{label} " + " ".join(f"{m} {sign_symbol(row.get(m))}" for m in metrics) for label, row in signs.items()]
        table = " Signs per comparison (+ claimed direction, - against, = within the noise, ? untestable): " \
            + "; ".join(rows) + "."
    distinct = set(statuses.values())
    if len(distinct) > 1:
        return Verdict("fails", f"{FRAGILE}: {what} changes with the metric ({listing}).{table}", numbers)
    status = distinct.pop()
    if status == "inconclusive":
        causes = {v.cause for v in verdicts.values()}
        cause = next((c for c in ("not-learned", "not-run") if c in causes), "within-noise")
        return Verdict.inconclusive(cause, f"no metric decides {what} ({listing}).{table}", numbers)
    return Verdict("holds", f"robust: {what} {status} under every metric ({listing}).{table}", numbers)
