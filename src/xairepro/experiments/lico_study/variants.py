"""The authors' code vs the paper, as an experiment (seed 000, Section 5.2; not a table of the study).

The study found the authors' code departing from the paper; each departure is a switch of
:class:`~xairepro.lico.config.LicoConfig`, trained here as a variant beside LICO as the paper describes it
(``lico``) on the study's CIFAR-10 row (quick: the shapes-k4 stand-in):

- ``lico-prompt-official``: per-class learned contexts and only the end-of-text vector of each prompt
  (M = 1), instead of one shared context and every token output (the study: this "renders the OT loss
  meaningless");
- ``lico-mm-official``: the code's sign in manifold matching, softmax(+D / tau) instead of softmax(-D / tau);
- ``lico-ot-nograd``: the OT term without any gradient (the plan and the cost detached);
- ``lico-tau-clamped``: the learnable temperature clamped to [tau_min, tau_max] in the forward pass.

Each choice is judged with the claims' rule (:mod:`~xairepro.experiments.verdict_rules`): "this choice
does not move the numbers" is an equivalence claim (TOST) of the variant against ``lico`` in test
accuracy and every saliency method's Overall, within the margins of Table 6's tau claim; ``fails``
means the choice moves a number beyond its margin.  The models of ``baseline`` and ``lico`` are the
accuracy table's (same run configs, same cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.lico_study.common import QUICK_COMMON, StudyExperiment
from xairepro.experiments.lico_study.insdel import (
    QUICK_SALIENCY, examples_figure, insdel_metrics, insdel_tables, overall_figures,
)
from xairepro.experiments.lico_study.sets import VARIANT_LABELS, VARIANTS, StudySet
from xairepro.experiments.lico_study.stats import guarded
from xairepro.experiments.lico_study.temperature import (
    TauConfig, accuracy_figures, same_numbers, scored_model_records, training_specs,
)
from xairepro.metrics import higher_is_better

__all__ = ["CODE_VARIANTS", "VariantsConfig", "LicoVariantsExperiment", "code_choice_claim"]

#: The authors' code's departures from the paper, each compared with ``lico`` (the paper's LICO).
CODE_VARIANTS: tuple[str, ...] = ("lico-prompt-official", "lico-mm-official", "lico-ot-nograd", "lico-tau-clamped")
#: What each departure changes, for the claims' text.
CHOICES: dict[str, str] = {
    "lico-prompt-official": "the code's prompts (per-class contexts, end-of-text vector only)",
    "lico-mm-official": "the code's manifold-matching sign (softmax of +D/tau)",
    "lico-ot-nograd": "an OT term without gradient",
    "lico-tau-clamped": "a learnable temperature clamped to [tau_min, tau_max]",
}
#: Training metrics kept per model (the engine's history keys).
TRAINING_KEYS = ("train/tau", "train/mm", "train/ot")


@dataclass
class VariantsConfig(TauConfig):
    """CIFAR-10 x baseline, LICO (paper) and the code's four departures; the tau claim's margins and checks."""

    datasets: list[str] = field(default_factory=lambda: ["cifar10"])
    variants: list[str] = field(default_factory=lambda: ["baseline", "lico", *CODE_VARIANTS])

    def validate(self) -> None:
        super().validate()
        if "lico" not in self.variants:
            raise ConfigError("lico-variants compares every variant with 'lico' (the paper's LICO): "
                              f"add it to variants (got {self.variants})")


def code_choice_claim(variant: str, keys: list[str], methods: list[str], classes: dict[str, int] | None = None,
                      min_skill: float = 0.0, accuracy_margin: float = 1.0, overall_margin: float = 2.0) -> Claim:
    """Equivalence (TOST, the shared rule) of ``variant`` and ``lico`` in accuracy and every method's Overall;
    inconclusive (not-learned) when a set's baseline is not clearly above chance (:func:`~.stats.guarded`)."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown LICO-study variant {variant!r}")

    def check(results: Results) -> Verdict:
        verdict = same_numbers(results, keys, methods, variant, "lico", accuracy_margin, overall_margin,
                               f"{VARIANT_LABELS.get(variant, variant)} - LICO (paper)")
        return guarded(verdict, results, classes or {}, ("lico", variant), min_skill)

    choice = CHOICES.get(variant, VARIANT_LABELS.get(variant, variant))
    return Claim(f"code-{variant.removeprefix('lico-')}-no-effect",
                 f"Code vs paper: {choice} instead of the paper's LICO changes neither accuracy (within "
                 f"{accuracy_margin:g} point) nor Overall (within {overall_margin:g} AUC points)", check,
                 "not a table of the study: seed 000, Section 5.2 (the authors' code departs from the paper)")


class LicoVariantsExperiment(StudyExperiment):
    """Accuracy, saliency scores and final training terms of LICO as the paper and as the code has it."""

    name = "lico-variants"
    title = "LICO: the authors' code vs the paper (prompts, MM sign, OT gradient, clamped tau)"
    reproduces = "seed 000, Section 5.2 (an experiment of ours; no published table)"
    config_class = VariantsConfig
    presets = {
        "quick": {**QUICK_COMMON, "datasets": ["shapes-k4"], "saliency": QUICK_SALIENCY},
        "paper": {},
    }
    metrics = {
        "accuracy": MetricSpec("test accuracy (%)", higher_is_better("accuracy")),
        **insdel_metrics(),
        **training_specs(TRAINING_KEYS),
    }
    tables = (
        TableSpec("Test accuracy (%) per implementation choice", ("accuracy",),
                  "no published table (seed 000, Section 5.2)"),
        *insdel_tables(source="no published table (seed 000, Section 5.2)"),
        TableSpec("Temperature, manifold-matching and OT losses at the end of training",
                  ("final_tau", "final_mm_loss", "final_ot_loss")),
    )

    def extra_params(self, cfg: VariantsConfig, spec: StudySet) -> dict[str, Any]:
        return {"saliency": config_to_dict(cfg.saliency)}

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        return scored_model_records(cell, ctx, self.trained(cell, ctx), TRAINING_KEYS)

    def claims(self, cfg: VariantsConfig) -> list[Claim]:
        classes = {s.key: s.num_classes for s in cfg.sets()}
        return [code_choice_claim(v, list(cfg.datasets), list(cfg.saliency.methods), classes, cfg.min_skill,
                                  cfg.accuracy_margin, cfg.overall_margin)
                for v in cfg.variants if v not in ("baseline", "lico")]

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        variants = list(dict.fromkeys(results.frame["variant"]))
        return accuracy_figures(results, out_dir, "Test accuracy (%) of LICO as the paper describes it and with each "
                                "departure of the authors' code; mean ± std over seeds") + \
            overall_figures(results, out_dir, "Overall (AUC points)", "no published table") + \
            examples_figure(results, out_dir, self.name, variants)
