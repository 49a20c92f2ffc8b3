"""Seed 000, Tables 2 and 3: test accuracy of the baseline, LICO (MM + OT) and the loss ablation.

Claims checked (over seeds, by :mod:`~xairepro.experiments.verdict_rules`): the paper's claim 2
(LICO consistently improves accuracy) and claim 3 (more classes benefit more), the paper's assertion that
limited data benefits more (Section 4.2), and the study's findings that MM alone beats OT alone and that
MM + OT does not beat MM alone (Section 4.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.lico_study.common import QUICK_COMMON, StudyConfig, StudyExperiment, set_label
from xairepro.experiments.lico_study.real_preset import DEVIATIONS, REAL_COMMON
from xairepro.experiments.lico_study.references import Published, accuracy_published
from xairepro.experiments.lico_study.sets import VARIANT_LABELS, StudySet
from xairepro.experiments.lico_study.stats import advantage, average, gain_advantage, guarded
from xairepro.experiments.verdict_rules import contrast, directional
from xairepro.metrics import higher_is_better

__all__ = ["AccuracyConfig", "LicoAccuracyExperiment", "accuracy_claims"]


@dataclass
class AccuracyConfig(StudyConfig):
    """Tables 2 and 3: every data set of the study x baseline, MM only, OT only, LICO."""

    datasets: list[str] = field(default_factory=lambda: ["imagenette", "cifar10", "cifar100", "cifar100-2500"])
    variants: list[str] = field(default_factory=lambda: ["baseline", "mm", "ot", "lico"])


def accuracy_claims(sets: list[StudySet], min_skill: float = 0.0, ablation: list[str] | None = None) -> list[Claim]:
    """The claims of Tables 2 and 3 over ``sets`` (the data sets of the run), decided by the shared rule
    (:mod:`~xairepro.experiments.verdict_rules`); each is inconclusive (not-learned) when a set's baseline
    is not clearly above chance (``min_skill``, see :func:`~.stats.guarded`).  The MM / OT findings compare
    the sets in ``ablation`` (None: all), where those variants were trained."""
    keys = [s.key for s in sets]
    ablation_keys = keys if ablation is None else [k for k in keys if k in ablation]
    classes = {s.key: s.num_classes for s in sets}
    full = [s for s in sets if s.limited_of is None]
    limited = [s for s in sets if s.limited_of in keys]

    def across_sets(a: str, b: str, what: str, want: int, results: Results, on: list[str]) -> Verdict:
        comparisons = {k: advantage(results, "accuracy", k, a, b) for k in on}
        return directional(comparisons, what, want=want, overall=average(list(comparisons.values())))

    def improves(results: Results) -> Verdict:
        return guarded(across_sets("lico", "baseline", "LICO - baseline accuracy (points)", 1, results, keys),
                       results, classes, ("baseline", "lico"), min_skill)

    def more_classes(results: Results) -> Verdict:
        if not full:
            return Verdict.inconclusive("not-run", "no full-data set in this run")
        most = max(s.num_classes for s in full)
        many = [s for s in full if s.num_classes == most]
        few = [s for s in full if s.num_classes < most]
        if not few:
            return Verdict.inconclusive("not-run", "every data set of this run has the same number of classes")
        gain = {s.key: advantage(results, "accuracy", s.key, "lico", "baseline") for s in many + few}
        comparisons = {f"{m.key} ({m.num_classes}) vs {f.key} ({f.num_classes})":
                       contrast([(1.0, gain[m.key]), (-1.0, gain[f.key])]) for m in many for f in few}
        overall = contrast([(1.0 / len(many), gain[m.key]) for m in many] +
                           [(-1.0 / len(few), gain[f.key]) for f in few]) if len(comparisons) > 1 else None
        return guarded(directional(comparisons, "LICO gain with more classes - gain with fewer (points)",
                                   overall=overall),
                       results, {s.key: s.num_classes for s in many + few}, ("baseline", "lico"), min_skill)

    def limited_data(results: Results) -> Verdict:
        if not limited:
            return Verdict.inconclusive("not-run", "no limited-data set with its full-data counterpart in this run")
        gains = {f"{s.key} vs {s.limited_of}": gain_advantage(results, "accuracy", s.key, s.limited_of or "",
                                                               "lico", "baseline") for s in limited}
        used = {s.key for s in limited} | {s.limited_of for s in limited}
        return guarded(directional(gains, "LICO gain with limited data - gain with full data (points)"),
                       results, {k: n for k, n in classes.items() if k in used}, ("baseline", "lico"), min_skill)

    def mm_beats_ot(results: Results) -> Verdict:
        return guarded(across_sets("mm", "ot", "MM only - OT only accuracy (points)", 1, results, ablation_keys),
                       results, {k: classes[k] for k in ablation_keys}, ("mm", "ot"), min_skill)

    def both_not_above_mm(results: Results) -> Verdict:
        return guarded(across_sets("lico", "mm", "MM + OT - MM only accuracy (points)", -1, results,
                                   ablation_keys), results, {k: classes[k] for k in ablation_keys}, ("lico", "mm"),
                       min_skill)

    return [
        Claim("claim-2-accuracy", "Paper's claim 2: training with LICO consistently improves classification "
              "accuracy (the study finds it does not)", improves, "seed 000, Section 2 claim 2; Table 2",
              study="fails", study_quote="We find that LICO slightly decreases test accuracy on all three "
              "datasets (Table 2), as well as on the smaller subset of CIFAR-100."),
        Claim("claim-3-more-classes", "Paper's claim 3: tasks with more classes benefit more from LICO "
              "(the study finds they do not)", more_classes, "seed 000, Section 2 claim 3; Section 4.2",
              study="fails", study_quote="we find that LICO does not perform any better in the CIFAR-100 case "
              "with 100 classes than in the CIFAR-10 and Imagenette cases with 10 classes."),
        Claim("limited-data", "Paper's assertion: LICO helps more with limited data (the study finds the "
              "opposite)", limited_data, "seed 000, Section 4.2; Table 2", study="fails",
              study_quote="in the limited data case, the degradation in performance due to LICO is "
              "significantly worse than in the full data case."),
        Claim("finding-mm-beats-ot", "Study's finding: MM loss alone gives better accuracy than OT loss alone",
              mm_beats_ot, "seed 000, Section 4.3.1; Table 3", study="holds",
              study_quote="we found that using the manifold-matching loss alone leads to consistently better "
              "classification performance than using the OT loss alone."),
        Claim("finding-both-not-above-mm", "Study's finding: MM + OT together do not beat MM alone in accuracy "
              "(the study: they are worse)", both_not_above_mm, "seed 000, Section 4.3.1; Table 3",
              study="holds", study_quote="we find that using both losses is always worse than using the "
              "manifold loss alone."),
    ]


class LicoAccuracyExperiment(StudyExperiment):
    """Trains every (data set, variant, seed) model once (shared with the other tables); records accuracy."""

    name = "lico-accuracy"
    title = "LICO: test accuracy, baseline vs LICO and the loss ablation"
    reproduces = "seed 000, Tables 2 and 3"
    config_class = AccuracyConfig
    presets = {
        "quick": {**QUICK_COMMON, "datasets": ["shapes-k4", "shapes-k8", "shapes-k8-limited"]},
        "paper": {},
        "real": REAL_COMMON,
    }
    preset_deviations = {"real": DEVIATIONS}
    metrics = {"accuracy": MetricSpec("test accuracy (%)", higher_is_better("accuracy"))}
    tables = (TableSpec("Test accuracy (%), baseline vs LICO and the loss ablation", ("accuracy",),
                        "seed 000, Tables 2 and 3"),)

    def published(self) -> list[Published]:
        return accuracy_published()

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        model = self.trained(cell, ctx)
        return [cell.record("accuracy", model.accuracy)]

    def claims(self, cfg: AccuracyConfig) -> list[Claim]:
        return accuracy_claims(cfg.sets(), cfg.min_skill, cfg.ablation_keys())

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.lico_study.figures import grouped_bars

        datasets = list(dict.fromkeys(results.frame["dataset"]))
        variants = list(dict.fromkeys(results.frame["variant"]))
        groups = [(set_label(d), "accuracy", d) for d in datasets]
        path = grouped_bars(results, [("Test accuracy", groups)], variants, VARIANT_LABELS, "accuracy (%)",
                            Path(out_dir) / "accuracy.png")
        return [] if path is None else [Figure(path, "Test accuracy (%) per data set and variant: mean ± std "
                                               "over seeds, dots = seeds (seed 000, Tables 2 and 3)")]
