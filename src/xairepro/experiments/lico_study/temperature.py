"""Seed 000, Table 6: learnable vs fixed temperature tau of the manifold-matching loss.

Baseline, LICO with tau learnable (the accuracy table's ``lico`` models) and LICO with tau fixed to 1, on
CIFAR-10 (quick: the shapes-k4 stand-in): test accuracy, insertion/deletion/Overall of the three saliency
methods (scores shared with Tables 1 and 4), and the final tau and MM loss of training (the study's
Section 3.3 argues a learnable tau can grow until L_MM vanishes).  Claim checked: the study's finding that
fixing tau makes no difference (equivalence within stated margins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.lico_study.common import QUICK_COMMON, StudyConfig, StudyExperiment, set_label
from xairepro.experiments.lico_study.evaluation import METHOD_LABELS, SaliencySettings
from xairepro.experiments.lico_study.insdel import (
    QUICK_SALIENCY, insdel_metrics, insdel_records, insdel_tables, overall_figures,
)
from xairepro.experiments.lico_study.real_preset import DEVIATIONS, REAL_COMMON, REAL_SALIENCY
from xairepro.experiments.lico_study.references import Published, tau_published
from xairepro.experiments.lico_study.sets import VARIANT_LABELS, StudySet
from xairepro.experiments.lico_study.stats import difference, guarded
from xairepro.experiments.lico_study.trained_models import StudyModel
from xairepro.experiments.verdict_rules import equivalent
from xairepro.metrics import higher_is_better

__all__ = ["TauConfig", "LicoTemperatureExperiment", "tau_claim", "same_numbers", "training_records",
           "training_specs", "TRAINING_METRICS", "scored_model_records", "accuracy_figures"]


@dataclass
class TauConfig(StudyConfig):
    """Table 6: CIFAR-10 x baseline, LICO (tau learnable), LICO (tau fixed = 1)."""

    datasets: list[str] = field(default_factory=lambda: ["cifar10"])
    variants: list[str] = field(default_factory=lambda: ["baseline", "lico", "lico-tau-fixed"])
    saliency: SaliencySettings = field(default_factory=SaliencySettings)
    #: Equivalence margins of the claim: test accuracy (points) and Overall (AUC points).
    accuracy_margin: float = 1.0
    overall_margin: float = 2.0

    def validate(self) -> None:
        super().validate()
        self.saliency.validate()
        if not (self.accuracy_margin > 0 and self.overall_margin > 0):
            raise ConfigError(f"accuracy_margin and overall_margin must be > 0, got {self.accuracy_margin}, "
                              f"{self.overall_margin}")


#: Training metrics a cell records (engine history key -> record name) and their descriptions.
TRAINING_METRICS: dict[str, tuple[str, str]] = {
    "train/tau": ("final_tau", "tau at the end of training"),
    "train/mm": ("final_mm_loss", "L_MM at the end of training (train mean, last epoch)"),
    "train/ot": ("final_ot_loss", "L_OT at the end of training (train mean, last epoch)"),
}


def training_records(cell: Cell, model: StudyModel, keys: tuple[str, ...] = ("train/tau", "train/mm")) -> list[Record]:
    """The final training metrics ``keys`` of ``model`` that its history has, as records of ``cell``."""
    return [cell.record(TRAINING_METRICS[k][0], model.final[k]) for k in keys if k in model.final]


def training_specs(keys: tuple[str, ...] = ("train/tau", "train/mm")) -> dict[str, MetricSpec]:
    return {TRAINING_METRICS[k][0]: MetricSpec(TRAINING_METRICS[k][1]) for k in keys}


def scored_model_records(cell: Cell, ctx: Context, model: StudyModel,
                         keys: tuple[str, ...] = ("train/tau", "train/mm")) -> list[Record]:
    """A trained model's test accuracy, its final training metrics ``keys`` and its saliency scores."""
    records = [cell.record("accuracy", model.accuracy), *training_records(cell, model, keys)]
    return records + [r for r in insdel_records(cell, ctx, model) if r.metric != "explained_accuracy"]


def accuracy_figures(results: Results, out_dir: Path, caption: str) -> list[Figure]:
    """Test accuracy per variant (bars: mean ± std over seeds), one group per data set."""
    # lazy: matplotlib, only when drawing (listing experiments stays cheap)
    from xairepro.experiments.lico_study.figures import grouped_bars

    frame = results.frame
    variants = list(dict.fromkeys(frame["variant"]))
    groups = [(set_label(d), "accuracy", d) for d in dict.fromkeys(frame["dataset"])]
    path = grouped_bars(results, [("Test accuracy", groups)], variants, VARIANT_LABELS, "accuracy (%)",
                        Path(out_dir) / "accuracy.png")
    return [] if path is None else [Figure(path, caption)]


def same_numbers(results: Results, keys: list[str], methods: list[str], a: str, b: str, accuracy_margin: float,
                 overall_margin: float, what: str) -> Verdict:
    """Equivalence (TOST, the shared rule) of variants ``a`` and ``b``: test accuracy within ``accuracy_margin``
    points and every method's Overall within ``overall_margin`` AUC points, on every data set of ``keys``."""
    effects, margins = {}, {}
    for k in keys:
        effects[f"{k} accuracy"] = difference(results, "accuracy", k, a, b)
        margins[f"{k} accuracy"] = accuracy_margin
        for m in methods:
            label = f"{k} {METHOD_LABELS[m]} Overall"
            effects[label] = difference(results, f"{m}.overall", k, a, b)
            margins[label] = overall_margin
    return equivalent(effects, margins, what)


def tau_claim(keys: list[str], methods: list[str], classes: dict[str, int] | None = None,
              min_skill: float = 0.0, accuracy_margin: float = 1.0, overall_margin: float = 2.0) -> Claim:
    """Equivalence (TOST, shared rule) of tau learnable and tau fixed in accuracy (within ``accuracy_margin``
    points) and every method's Overall (within ``overall_margin`` AUC points); inconclusive (not-learned)
    when a set's baseline is not clearly above chance (see :func:`~.stats.guarded`)."""

    def check(results: Results) -> Verdict:
        verdict = same_numbers(results, keys, methods, "lico", "lico-tau-fixed", accuracy_margin, overall_margin,
                               "tau learnable - tau fixed")
        return guarded(verdict, results, classes or {}, ("lico", "lico-tau-fixed"), min_skill)

    return Claim("finding-tau-no-difference", "Study's finding: a fixed temperature (tau = 1) instead of a "
                 f"learnable one makes no difference to accuracy (within {accuracy_margin:g} point) or Overall "
                 f"(within {overall_margin:g} AUC points)", check, "seed 000, Section 4.4.2; Table 6",
                 study="holds", study_quote="The test accuracy is not significantly different from the test "
                 "accuracy with a learnable τ [...] it does not have a significant effect accross datasets.")


class LicoTemperatureExperiment(StudyExperiment):
    """Accuracy, saliency scores and the final tau / L_MM of each (variant, seed) model."""

    name = "lico-tau"
    title = "LICO: learnable vs fixed temperature tau"
    reproduces = "seed 000, Table 6"
    config_class = TauConfig
    presets = {
        "quick": {**QUICK_COMMON, "datasets": ["shapes-k4"], "saliency": QUICK_SALIENCY},
        "paper": {},
        "real": {**REAL_COMMON, "saliency": REAL_SALIENCY},
    }
    preset_deviations = {"real": DEVIATIONS}
    metrics = {
        "accuracy": MetricSpec("test accuracy (%)", higher_is_better("accuracy")),
        **insdel_metrics(),
        **training_specs(),
    }
    tables = (
        TableSpec("Test accuracy (%)", ("accuracy",), "seed 000, Table 6"),
        *insdel_tables(source="seed 000, Table 6"),
        TableSpec("Temperature and manifold-matching loss at the end of training", ("final_tau", "final_mm_loss")),
    )

    def published(self) -> list[Published]:
        return tau_published()

    def extra_params(self, cfg: TauConfig, spec: StudySet) -> dict[str, Any]:
        return {"saliency": config_to_dict(cfg.saliency)}

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        return scored_model_records(cell, ctx, self.trained(cell, ctx))

    def claims(self, cfg: TauConfig) -> list[Claim]:
        return [tau_claim(list(cfg.datasets), list(cfg.saliency.methods), {s.key: s.num_classes for s in cfg.sets()},
                          cfg.min_skill, cfg.accuracy_margin, cfg.overall_margin)]

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        return accuracy_figures(results, out_dir, "Test accuracy (%): baseline, tau learnable, tau fixed; mean ± std "
                                "over seeds (seed 000, Table 6)") + \
            overall_figures(results, out_dir, "Overall (AUC points)", "seed 000, Table 6")
