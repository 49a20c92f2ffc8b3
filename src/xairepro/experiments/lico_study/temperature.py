"""Seed 000, Table 6: learnable vs fixed temperature tau of the manifold-matching loss.

Baseline, LICO with tau learnable (the accuracy table's ``lico`` models) and LICO with tau fixed to 1, on
CIFAR-10 (quick: the shapes-k4 stand-in): test accuracy, insertion/deletion/Overall of the three saliency
methods (scores shared with Tables 1 and 4), and the final tau and MM loss of training (the study's
Section 3.3 argues a learnable tau can grow until L_MM vanishes).  Claim checked: the study's finding that
fixing tau makes no significant difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.config import config_to_dict
from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.lico_study.common import QUICK_COMMON, StudyConfig, StudyExperiment, set_label
from xairepro.experiments.lico_study.evaluation import METHOD_LABELS, SaliencySettings
from xairepro.experiments.lico_study.insdel import (
    QUICK_SALIENCY, insdel_metrics, insdel_records, insdel_tables, overall_figures,
)
from xairepro.experiments.lico_study.real_preset import DEVIATIONS, REAL_COMMON, REAL_SALIENCY
from xairepro.experiments.lico_study.references import Published, tau_published
from xairepro.experiments.lico_study.sets import VARIANT_LABELS, StudySet
from xairepro.experiments.lico_study.stats import difference, guarded, no_difference
from xairepro.metrics import higher_is_better

__all__ = ["TauConfig", "LicoTemperatureExperiment", "tau_claim"]


@dataclass
class TauConfig(StudyConfig):
    """Table 6: CIFAR-10 x baseline, LICO (tau learnable), LICO (tau fixed = 1)."""

    datasets: list[str] = field(default_factory=lambda: ["cifar10"])
    variants: list[str] = field(default_factory=lambda: ["baseline", "lico", "lico-tau-fixed"])
    saliency: SaliencySettings = field(default_factory=SaliencySettings)

    def validate(self) -> None:
        super().validate()
        self.saliency.validate()


def tau_claim(keys: list[str], methods: list[str], z: float, classes: dict[str, int] | None = None,
              min_skill: float = 0.0) -> Claim:
    """Inconclusive when a compared model is not clearly above chance (see :func:`~.stats.guarded`)."""

    def check(results: Results) -> Verdict:
        effects = {}
        for k in keys:
            effects[f"{k} accuracy"] = difference(results, "accuracy", k, "lico", "lico-tau-fixed")
            for m in methods:
                effects[f"{k} {METHOD_LABELS[m]} Overall"] = difference(results, f"{m}.overall", k, "lico",
                                                                        "lico-tau-fixed")
        return guarded(no_difference(effects, z, "tau learnable - tau fixed"), results, classes or {},
                       ("lico", "lico-tau-fixed"), min_skill)

    return Claim("finding-tau-no-difference", "Study's finding: a fixed temperature (tau = 1) instead of a "
                 "learnable one makes no significant difference to accuracy or Overall", check,
                 "seed 000, Section 4.4.2; Table 6")


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
        "final_tau": MetricSpec("tau at the end of training"),
        "final_mm_loss": MetricSpec("L_MM at the end of training (train mean, last epoch)"),
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
        model = self.trained(cell, ctx)
        records = [cell.record("accuracy", model.accuracy)]
        for name, key in (("final_tau", "train/tau"), ("final_mm_loss", "train/mm")):
            if key in model.final:
                records.append(cell.record(name, model.final[key]))
        scores = [r for r in insdel_records(cell, ctx, model) if r.metric != "explained_accuracy"]
        return records + scores

    def claims(self, cfg: TauConfig) -> list[Claim]:
        return [tau_claim(list(cfg.datasets), list(cfg.saliency.methods), cfg.significance,
                          {s.key: s.num_classes for s in cfg.sets()}, cfg.min_skill)]

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.lico_study.figures import grouped_bars

        frame = results.frame
        variants = list(dict.fromkeys(frame["variant"]))
        groups = [(set_label(d), "accuracy", d) for d in dict.fromkeys(frame["dataset"])]
        path = grouped_bars(results, [("Test accuracy", groups)], variants, VARIANT_LABELS, "accuracy (%)",
                            Path(out_dir) / "accuracy.png")
        out = [] if path is None else [Figure(path, "Test accuracy (%): baseline, tau learnable, tau fixed; "
                                              "mean ± std over seeds (seed 000, Table 6)")]
        return out + overall_figures(results, out_dir, "Overall (AUC points)", "seed 000, Table 6")
