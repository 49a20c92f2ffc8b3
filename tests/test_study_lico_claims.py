"""LICO study: the statistics behind the claims, every claim on synthetic results (holds / fails /
inconclusive), and the published numbers against the seed's tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from xairepro.experiments import Results
from xairepro.experiments.lico_study import (
    LicoAccuracyExperiment, LicoInsDelExperiment, LicoIouExperiment, LicoTemperatureExperiment,
)
from xairepro.experiments.lico_study.references import (
    PUBLISHED_NOTES, TABLE2_ACCURACY, TABLE3_ACCURACY, TABLE4_INSDEL, TABLE5_IOU, TABLE6, accuracy_published,
    insdel_published,
)
from xairepro.experiments.lico_study.stats import (
    Effect, consistently, difference, gain_difference, never_above, no_difference,
)


def frame(rows: dict[tuple[str, str, str], list[float]], experiment: str = "x") -> Results:
    """Results from {(dataset, variant, metric): values over seeds 0, 1, ...}."""
    out = []
    for (dataset, variant, metric), values in rows.items():
        for seed, value in enumerate(values):
            out.append({"experiment": experiment, "dataset": dataset, "variant": variant, "seed": seed,
                        "metric": metric, "value": float(value), "config_hash": f"h{seed}"})
    return Results(pd.DataFrame(out))


def verdicts(experiment, cfg, results) -> dict[str, str]:
    return {c.id: c.check(results).status for c in experiment.claims(cfg)}


# ---------------------------------------------------------------------------------------- statistics
def test_difference_is_welch_numerator_and_standard_error():
    a, b = [70.0, 72.5, 71.0], [68.0, 69.5]
    r = frame({("d", "a", "m"): a, ("d", "b", "m"): b})
    e = difference(r, "m", "d", "a", "b")
    t = scipy_stats.ttest_ind(a, b, equal_var=False).statistic
    assert e.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert e.diff / e.se == pytest.approx(t)          # Welch's t = d / sqrt(s_a^2/n_a + s_b^2/n_b)


def test_difference_one_seed_or_missing_is_undecided():
    r = frame({("d", "a", "m"): [1.0], ("d", "b", "m"): [0.0, 0.5]})
    one = difference(r, "m", "d", "a", "b")
    assert one.diff == pytest.approx(0.75) and math.isnan(one.se) and one.direction(1.0) is None
    missing = difference(r, "m", "d", "a", "zzz")
    assert math.isnan(missing.diff) and missing.direction(1.0) is None


def test_gain_difference_adds_errors_in_quadrature():
    r = frame({("p", "t", "m"): [10.0, 12.0], ("p", "c", "m"): [9.0, 9.0],
               ("q", "t", "m"): [5.0, 5.0], ("q", "c", "m"): [5.0, 7.0]})
    g = gain_difference(r, "m", "p", "q", "t", "c")
    assert g.diff == pytest.approx((11 - 9) - (5 - 6))
    assert g.se == pytest.approx(math.hypot(math.sqrt(2 / 2), math.sqrt(2 / 2)))


@pytest.mark.parametrize("effects, expected", [
    ({"a": Effect(3.0, 1.0), "b": Effect(2.0, 0.5)}, "holds"),
    ({"a": Effect(3.0, 1.0), "b": Effect(-2.0, 0.5)}, "fails"),
    ({"a": Effect(3.0, 1.0), "b": Effect(0.4, 0.5)}, "inconclusive"),
    ({"a": Effect(3.0, 1.0), "b": Effect(-2.0, math.nan)}, "inconclusive"),
    ({}, "inconclusive"),
])
def test_consistently(effects, expected):
    assert consistently(effects, 1.0, "x").status == expected


def test_significance_factor_is_used():
    e = {"a": Effect(1.5, 1.0)}
    assert consistently(e, 1.0, "x").status == "holds"
    assert consistently(e, 2.0, "x").status == "inconclusive"


@pytest.mark.parametrize("effects, never, none", [
    ({"a": Effect(-3.0, 1.0), "b": Effect(0.2, 1.0)}, "holds", "fails"),
    ({"a": Effect(0.1, 1.0), "b": Effect(0.2, 1.0)}, "holds", "holds"),
    ({"a": Effect(3.0, 1.0), "b": Effect(0.2, 1.0)}, "fails", "fails"),
    ({"a": Effect(0.1, 1.0), "b": Effect(0.2, math.nan)}, "inconclusive", "inconclusive"),
])
def test_never_above_and_no_difference(effects, never, none):
    assert never_above(effects, 1.0, "x").status == never
    assert no_difference(effects, 1.0, "x").status == none


def test_verdict_numbers_are_finite_and_name_the_comparison():
    v = consistently({"cifar10": Effect(1.0, math.nan)}, 1.0, "LICO - baseline")
    assert v.numbers == {"cifar10 diff": 1.0}
    assert "cifar10" in v.reason and "one seed" in v.reason


# ---------------------------------------------------------------------------------------- claims
def _acc(values: dict[tuple[str, str], list[float]]) -> Results:
    return frame({(d, v, "accuracy"): x for (d, v), x in values.items()})


def test_accuracy_claims_follow_the_study_on_its_own_numbers():
    """Per-seed values built from Table 3's means ± std (three seeds each): the study's verdicts come out."""
    exp = LicoAccuracyExperiment()
    cfg = exp.make_config("paper")
    rows = {}
    for (d, v), (m, s) in TABLE3_ACCURACY.items():
        rows[(d, v)] = [m - s, m, m + s]           # mean m, sample std s
    got = verdicts(exp, cfg, _acc(rows))
    assert got["claim-2-accuracy"] == "fails"              # LICO below the baseline (CIFAR-100 limited, ...)
    assert got["limited-data"] == "fails"                   # the drop is larger with limited data
    assert got["finding-mm-beats-ot"] == "holds"            # MM > OT beyond the uncertainty on all four
    assert got["finding-both-not-above-mm"] == "holds"      # LICO never above MM
    assert got["claim-3-more-classes"] == "inconclusive"    # CIFAR-100 gain vs 10-class gains within noise


def test_accuracy_claims_hold_and_fail_on_synthetic_results():
    exp = LicoAccuracyExperiment()
    cfg = exp.make_config("quick")
    base = {"shapes-k4": 80.0, "shapes-k12": 40.0, "shapes-k12-limited": 20.0}
    gains = {"shapes-k4": 1.0, "shapes-k12": 5.0, "shapes-k12-limited": 9.0}
    rows = {}
    for d, b in base.items():
        rows[(d, "baseline")] = [b, b + 0.2]
        rows[(d, "lico")] = [b + gains[d], b + gains[d] + 0.2]
        rows[(d, "mm")] = [b + 2, b + 2.2]
        rows[(d, "ot")] = [b - 2, b - 1.8]
    got = verdicts(exp, cfg, _acc(rows))
    assert got == {"claim-2-accuracy": "holds", "claim-3-more-classes": "holds", "limited-data": "holds",
                   "finding-mm-beats-ot": "holds", "finding-both-not-above-mm": "fails"}
    # reversed: LICO hurts, more with more classes and with limited data; OT beats MM
    for d, b in base.items():
        rows[(d, "lico")] = [b - gains[d] - 2, b - gains[d] - 1.8]
        rows[(d, "mm")], rows[(d, "ot")] = rows[(d, "ot")], rows[(d, "mm")]
    got = verdicts(exp, cfg, _acc(rows))
    assert got == {"claim-2-accuracy": "fails", "claim-3-more-classes": "fails", "limited-data": "fails",
                   "finding-mm-beats-ot": "fails", "finding-both-not-above-mm": "holds"}
    # one seed only: nothing can be decided
    single = _acc({k: v[:1] for k, v in rows.items()})
    assert set(verdicts(exp, cfg, single).values()) == {"inconclusive"}


def test_interpretability_claim():
    exp = LicoInsDelExperiment()
    cfg = exp.make_config("quick")
    rows = {}
    for d in cfg.datasets:
        for m in cfg.saliency.methods:
            rows[(d, "baseline", f"{m}.overall")] = [10.0, 11.0]
            rows[(d, "lico", f"{m}.overall")] = [14.0, 15.0]
    assert verdicts(exp, cfg, frame(rows)) == {"claim-1-interpretability": "holds"}
    rows[("shapes-k12", "lico", "rise.overall")] = [5.0, 6.0]           # one counter-example
    assert verdicts(exp, cfg, frame(rows)) == {"claim-1-interpretability": "fails"}
    rows[("shapes-k12", "lico", "rise.overall")] = [9.0, 12.0]          # within the noise
    assert verdicts(exp, cfg, frame(rows)) == {"claim-1-interpretability": "inconclusive"}


def test_iou_claim():
    exp = LicoIouExperiment()
    cfg = exp.make_config("paper")
    # Table 5's means ± std as three seeds: the study's finding holds on its own numbers
    rows = {("partimagenet", v, "soft_iou_batch"): [m - s, m, m + s] for v, (m, s) in TABLE5_IOU.items()}
    assert verdicts(exp, cfg, frame(rows)) == {"finding-baseline-iou-above-lico": "holds"}
    rows[("partimagenet", "lico", "soft_iou_batch")] = [0.30, 0.31, 0.32]
    assert verdicts(exp, cfg, frame(rows)) == {"finding-baseline-iou-above-lico": "fails"}
    rows[("partimagenet", "lico", "soft_iou_batch")] = [0.15, 0.19, 0.23]
    assert verdicts(exp, cfg, frame(rows)) == {"finding-baseline-iou-above-lico": "inconclusive"}


def test_tau_claim():
    exp = LicoTemperatureExperiment()
    cfg = exp.make_config("paper")
    rows = {}
    for v, shift in (("baseline", 5.0), ("lico", 0.0), ("lico-tau-fixed", 0.1)):
        rows[("cifar10", v, "accuracy")] = [93.0 + shift, 93.5 + shift, 93.2 + shift]
        for m in cfg.saliency.methods:
            rows[("cifar10", v, f"{m}.overall")] = [20.0 + shift, 22.0 + shift, 21.0 + shift]
    assert verdicts(exp, cfg, frame(rows)) == {"finding-tau-no-difference": "holds"}
    rows[("cifar10", "lico-tau-fixed", "gradcampp.overall")] = [10.0, 11.0, 10.5]
    assert verdicts(exp, cfg, frame(rows)) == {"finding-tau-no-difference": "fails"}
    del rows[("cifar10", "lico-tau-fixed", "gradcampp.overall")]
    assert verdicts(exp, cfg, frame(rows)) == {"finding-tau-no-difference": "inconclusive"}


# ---------------------------------------------------------------------------------------- references
def test_published_numbers_spot_checks():
    assert TABLE2_ACCURACY[("cifar10", "baseline")] == (93.9, 0.13)
    assert TABLE2_ACCURACY[("cifar100-2500", "lico")] == (18.6, 1.64)
    assert TABLE2_ACCURACY[("cifar100", "baseline")] == (78.1, 0.66)
    assert TABLE3_ACCURACY[("cifar100", "baseline")] == (77.7, 0.08)
    assert TABLE3_ACCURACY[("imagenette", "ot")] == (83.8, 1.58)
    assert TABLE3_ACCURACY[("cifar100-2500", "mm")] == (26.1, 1.10)
    assert TABLE4_INSDEL[("cifar10", "lico", "gradcampp.overall")] == 1.7
    assert TABLE4_INSDEL[("imagenette", "ot", "rise.overall")] == 26.9
    assert TABLE4_INSDEL[("cifar100", "mm", "gradcam.deletion")] == 21.2
    assert TABLE4_INSDEL[("imagenette", "baseline", "gradcam.insertion")] == 77.1
    assert TABLE5_IOU == {"baseline": (0.185, 0.005), "lico": (0.141, 0.008)}
    assert TABLE6["lico-tau-fixed"][0] == (93.4, 0.08)
    assert TABLE6["lico-tau-fixed"][1][3:6] == (49.2, 49.2, 0.0)    # Grad-CAM++ ins, del, ovr
    assert TABLE6["lico"][1][0:3] == (66.8, 36.6, 30.1)              # Grad-CAM


def test_published_overall_is_insertion_minus_deletion():
    """Each published Overall equals insertion - deletion up to rounding, except the two the seed itself
    prints inconsistently (kept as printed, and noted)."""
    off = set()
    for (d, v, metric), value in TABLE4_INSDEL.items():
        if metric.endswith(".overall"):
            method = metric.split(".")[0]
            ins, dele = TABLE4_INSDEL[(d, v, f"{method}.insertion")], TABLE4_INSDEL[(d, v, f"{method}.deletion")]
            if abs(ins - dele - value) > 0.15:
                off.add((d, v, metric))
    assert off == {("cifar10", "mm", "gradcampp.overall"), ("cifar100", "baseline", "gradcam.overall")}
    assert off <= set(PUBLISHED_NOTES)
    for variant, (_, row) in TABLE6.items():
        for i in range(3):
            assert abs(row[3 * i] - row[3 * i + 1] - row[3 * i + 2]) <= 0.15, variant


def test_references_are_keyed_by_the_run_data_sets():
    acc = LicoAccuracyExperiment()
    quick = acc.references(acc.make_config("quick"))
    assert {r.dataset for r in quick} == {"shapes-k4", "shapes-k12", "shapes-k12-limited"}
    ref = {(r.dataset, r.variant): r for r in quick}
    assert (ref[("shapes-k4", "baseline")].value, ref[("shapes-k4", "baseline")].std) == (93.9, 0.13)
    assert ref[("shapes-k12-limited", "ot")].value == 23.6
    assert all("quick preset" in r.note and "stand-in" in r.note for r in quick)
    assert ref[("shapes-k4", "lico")].source == "seed 000, Table 2"
    assert ref[("shapes-k4", "mm")].source == "seed 000, Table 3"
    paper = acc.references(acc.make_config("paper"))
    assert len(paper) == 16 and {r.dataset for r in paper} == {"imagenette", "cifar10", "cifar100", "cifar100-2500"}
    assert not any("quick preset" in r.note for r in paper)
    assert "77.7" in {(r.dataset, r.variant): r for r in paper}[("cifar100", "baseline")].note
    ins = LicoInsDelExperiment()
    assert len(ins.references(ins.make_config("paper"))) == len(insdel_published()) == 3 * 4 * 9
    assert len(accuracy_published()) == 16
    iou = LicoIouExperiment()
    assert [(r.dataset, r.variant, r.value) for r in iou.references(iou.make_config("quick"))] == [
        ("shapes-k4", "baseline", 0.185), ("shapes-k4", "lico", 0.141)]
    tau = LicoTemperatureExperiment()
    tau_refs = {(r.variant, r.metric): r.value for r in tau.references(tau.make_config("paper"))}
    assert tau_refs[("lico", "accuracy")] == 93.5 and tau_refs[("baseline", "rise.overall")] == 35.7
