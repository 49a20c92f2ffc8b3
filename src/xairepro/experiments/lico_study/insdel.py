"""Seed 000, Tables 1 and 4: insertion, deletion and Overall of Grad-CAM, Grad-CAM++ and RISE.

The models are the accuracy table's (same run configs, same cache).  The study scored them with its
``lico-fact`` code (label probability, 9 x 9 sigma-5 blur, 10 px steps, fully replaced image never
scored): that protocol is the primary one and decides the claim; ``petsiuk`` is reported beside it as
a second protocol variant.  Claim checked: the paper's claim 1, LICO consistently improves
interpretability (Overall = insertion - deletion, every data set and saliency method).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xairepro.config import config_to_dict, resolve_config
from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.lico_study.common import (
    QUICK_COMMON, StudyConfig, StudyExperiment, cell_dir, set_label,
)
from xairepro.experiments.lico_study.evaluation import (
    EXAMPLES_FILE, METHOD_LABELS, SCORES, STUDY_PROTOCOLS, SaliencySettings, insdel_metric, saliency_scores,
    study_protocol,
)
from xairepro.experiments.lico_study.real_preset import DEVIATIONS, REAL_COMMON, REAL_SALIENCY
from xairepro.experiments.lico_study.references import Published, insdel_published
from xairepro.experiments.lico_study.robustness import interpretability_robustness_claim, protocol_sensitivity_claim
from xairepro.experiments.lico_study.sets import VARIANT_LABELS, StudySet, get_study_set
from xairepro.experiments.lico_study.trained_models import StudyModel
from xairepro.experiments.lico_study.stats import guarded, improvement
from xairepro.metrics import HIGHER_IS_BETTER, higher_is_better
from xairepro.metrics.faithfulness import OUTPUTS

__all__ = ["InsDelConfig", "LicoInsDelExperiment", "QUICK_SALIENCY", "insdel_metrics", "insdel_tables",
           "interpretability_claim", "examples_figure"]

#: The quick preset's explanations: 16 test images per model, 200 RISE masks.
QUICK_SALIENCY: dict[str, Any] = {"n_images": 16, "rise_masks": 200}
#: Retrain-free metrics re-scoring the same maps for the verdict-robustness claim (not in the study).
ROBUSTNESS_FAITHFULNESS: list[str] = ["road", "pixel-flipping", "faithfulness-correlation"]


@dataclass
class InsDelConfig(StudyConfig):
    """Tables 1 and 4: CIFAR-10, CIFAR-100, Imagenette x the four variants, three saliency methods."""

    datasets: list[str] = field(default_factory=lambda: ["cifar10", "cifar100", "imagenette"])
    variants: list[str] = field(default_factory=lambda: ["baseline", "mm", "ot", "lico"])
    saliency: SaliencySettings = field(default_factory=SaliencySettings)

    def validate(self) -> None:
        super().validate()
        self.saliency.validate()


def insdel_metrics(methods: tuple[str, ...] = tuple(METHOD_LABELS),
                   protocols: tuple[str, ...] = STUDY_PROTOCOLS) -> dict[str, MetricSpec]:
    """Metric specs of every (protocol, method, score), the first protocol unprefixed."""
    out = {}
    for proto in protocols:
        for method in methods:
            for score in SCORES:
                out[insdel_metric(method, score, proto, protocols[0])] = MetricSpec(
                    f"{METHOD_LABELS[method]} {score} (AUC %, {proto})", higher_is_better=HIGHER_IS_BETTER[score])
    return out


def faithfulness_metrics(methods: tuple[str, ...] = tuple(METHOD_LABELS),
                         names: tuple[str, ...] = tuple(ROBUSTNESS_FAITHFULNESS)) -> dict[str, MetricSpec]:
    """Metric specs of the retrain-free scores of the primary protocol's maps: ``gradcam.road_morf`` ..."""
    return {f"{m}.{score}": MetricSpec(f"{METHOD_LABELS[m]} {score.replace('_', ' ')} (same maps; not in the study)",
                                       higher_is_better(score))
            for m in methods for name in names for score in OUTPUTS[name]}


def insdel_tables(methods: tuple[str, ...] = tuple(METHOD_LABELS), protocols: tuple[str, ...] = STUDY_PROTOCOLS,
                  source: str = "") -> tuple[TableSpec, ...]:
    return tuple(TableSpec(f"{METHOD_LABELS[m]}: insertion / deletion / Overall (AUC x 100), protocol {p}",
                           tuple(insdel_metric(m, s, p, protocols[0]) for s in SCORES),
                           source if p == protocols[0] else "protocol variant (not in the study)")
                 for p in protocols for m in methods)


def interpretability_claim(keys: list[str], methods: list[str], classes: dict[str, int] | None = None,
                           min_skill: float = 0.0) -> Claim:
    """The paper's claim 1 on the primary protocol's Overall, every data set x method, by the shared rule
    (the claim's average: each model's Overall averaged over the methods, then over the independent data
    sets); inconclusive (not-learned) when a set's baseline is not clearly above chance (``classes``: K of
    each data set, see :func:`~.stats.guarded`)."""

    def check(results: Results) -> Verdict:
        verdict = improvement(results, keys, methods, "overall", "LICO - baseline Overall (AUC points)", METHOD_LABELS)
        return guarded(verdict, results, classes or {}, ("baseline", "lico"), min_skill)

    return Claim("claim-1-interpretability", "Paper's claim 1: training with LICO consistently improves "
                 "interpretability, here insertion - deletion (Overall) of every saliency method and data set "
                 "(the study finds it does not)", check, "seed 000, Section 2 claim 1; Tables 1 and 4",
                 study="fails", study_quote="we did not replicate the authors’ findings that LICO improves the "
                 "interpretability of saliency maps. With the exception of CIFAR-10 using Grad-CAM/RISE, LICO "
                 "reduced our quantitative measure of interpretability (Insertion/Deletion scores) for every "
                 "saliency map method and dataset tested.")


def _class_name(dataset: str, label: int) -> str:
    from xairepro.data import dataset_info  # lazy: the registry, only when drawing

    names = dataset_info(get_study_set(dataset).data).class_names
    return names[label] if 0 <= label < len(names) else str(label)


def examples_figure(results: Results, out_dir: Path, experiment: str, variants: list[str]) -> list[Figure]:
    """Figure 2 of the study: Grad-CAM maps (label class) of one test image per class, one column per
    variant, side by side on the same images (first seed); a row is titled with its class."""
    # lazy: matplotlib, only when drawing (listing experiments stays cheap)
    from xairepro.experiments.lico_study.figures import saliency_examples

    figures = []
    frame = results.frame
    if not len(frame):
        return figures
    seed = int(frame["seed"].min())
    for dataset in dict.fromkeys(frame["dataset"]):
        columns, images, labels = [], None, None
        for variant in variants:
            keys = frame[(frame["dataset"] == dataset) & (frame["variant"] == variant) & (frame["seed"] == seed)]
            path = cell_dir(out_dir, experiment, str(keys["config_hash"].iloc[0])) / EXAMPLES_FILE if len(keys) else None
            if path is None or not path.is_file():
                continue
            ex = torch.load(path, weights_only=True)
            images, labels = ex["images"], ex["labels"]
            method = "gradcam" if "gradcam" in ex["maps"] else next(iter(ex["maps"]), None)
            if method is not None:
                columns.append((f"{VARIANT_LABELS.get(variant, variant)}\n{METHOD_LABELS[method]}",
                                ex["maps"][method]))
        if images is None or not len(images) or not columns:
            continue
        target = Path(out_dir) / f"saliency-examples-{dataset}.png"
        rows = [_class_name(dataset, int(c)) for c in labels]
        saliency_examples(images, columns, target, row_titles=rows)
        figures.append(Figure(target, f"{set_label(dataset)}: Grad-CAM maps (label class) of one test image per "
                                      f"class, each variant's model side by side, seed {seed} (seed 000, Figure 2)"))
    return figures


class LicoInsDelExperiment(StudyExperiment):
    """Explains the first test images of each trained model with every method; scores both protocols."""

    name = "lico-insdel"
    title = "LICO: insertion / deletion / Overall of Grad-CAM, Grad-CAM++ and RISE, baseline vs LICO and ablation"
    reproduces = "seed 000, Tables 1 and 4"
    config_class = InsDelConfig
    presets = {
        "quick": {**QUICK_COMMON, "datasets": ["shapes-k4", "shapes-k8"],
                  "saliency": {**QUICK_SALIENCY, "faithfulness": ROBUSTNESS_FAITHFULNESS}},
        "paper": {"saliency": {"faithfulness": ROBUSTNESS_FAITHFULNESS}},
        "real": {**REAL_COMMON, "saliency": REAL_SALIENCY},
    }
    preset_deviations = {"real": DEVIATIONS}
    metrics = {**insdel_metrics(), **faithfulness_metrics(),
               "explained_accuracy": MetricSpec("accuracy on the explained images (%)", HIGHER_IS_BETTER["accuracy"]),
               "accuracy": MetricSpec("test accuracy of the explained model (%, full test split)",
                                      higher_is_better("accuracy"))}
    tables = (*insdel_tables(source="seed 000, Tables 1 and 4"),
              TableSpec("Retrain-free faithfulness of the same maps (lico-fact's maps of the label class): ROAD "
                        "MoRF / LeRF, pixel flipping, faithfulness correlation", tuple(faithfulness_metrics()),
                        "not in the study (xairepro issue 15: verdict robustness)"),
              TableSpec("Test accuracy (%) of the explained models (full test split)", ("accuracy",)))

    def published(self) -> list[Published]:
        return insdel_published()

    def extra_params(self, cfg: InsDelConfig, spec: StudySet) -> dict[str, Any]:
        return {"saliency": config_to_dict(cfg.saliency)}

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        model = self.trained(cell, ctx)
        return [cell.record("accuracy", model.accuracy)] + insdel_records(cell, ctx, model)

    def claims(self, cfg: InsDelConfig) -> list[Claim]:
        args = (list(cfg.datasets), list(cfg.saliency.methods), {s.key: s.num_classes for s in cfg.sets()},
                cfg.min_skill)
        out = [interpretability_claim(*args)]
        if cfg.saliency.faithfulness:
            out.append(interpretability_robustness_claim(*args))
        if len(cfg.saliency.protocols) > 1:
            out.append(protocol_sensitivity_claim(args[0], args[1], cfg.saliency.protocols[:2], *args[2:]))
        return out

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        return overall_figures(results, out_dir, "Overall (AUC points)", "seed 000, Tables 1 and 4") + \
            examples_figure(results, out_dir, self.name, list(dict.fromkeys(results.frame["variant"])))

    def describe(self, cfg: InsDelConfig) -> dict[str, Any]:
        out = super().describe(cfg)
        out["protocols"] = {p: study_protocol(p, 32, 32, cfg.saliency.pixels_per_step).to_dict()
                            for p in cfg.saliency.protocols}
        out["protocol_note"] = ("the study scored with lico-fact (first protocol, decides the claims); "
                                "lico-fact's step scales with the image area above 32 x 32 px")
        out["saliency"] = config_to_dict(cfg.saliency)
        return out


def insdel_records(cell: Cell, ctx: Context, model: StudyModel) -> list[Record]:
    """Score the saliency maps of the cell's trained ``model``, keep the example maps in the cell folder."""
    saliency = resolve_config(SaliencySettings, values=dict(cell.params["saliency"]))
    scores, folder = saliency_scores(ctx, model, get_study_set(cell.dataset), cell.seed, saliency)
    if (folder / EXAMPLES_FILE).is_file():
        Path(ctx.cache_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / EXAMPLES_FILE, Path(ctx.cache_dir) / EXAMPLES_FILE)
    return [cell.record(k, v) for k, v in sorted(scores.items()) if k != "n_images"]


def overall_figures(results: Results, out_dir: Path, ylabel: str, source: str) -> list[Figure]:
    """Overall per method and variant, one panel per data set (primary protocol)."""
    # lazy: matplotlib, only when drawing (listing experiments stays cheap)
    from xairepro.experiments.lico_study.figures import grouped_bars

    frame = results.frame
    datasets = list(dict.fromkeys(frame["dataset"]))
    variants = list(dict.fromkeys(frame["variant"]))
    methods = [m for m in METHOD_LABELS if f"{m}.overall" in set(frame["metric"])]
    panels = [(set_label(d), [(METHOD_LABELS[m], f"{m}.overall", d) for m in methods]) for d in datasets]
    path = grouped_bars(results, panels, variants, VARIANT_LABELS, ylabel, Path(out_dir) / "overall.png")
    return [] if path is None else [Figure(path, f"Overall = insertion - deletion (AUC x 100, lico-fact) per "
                                                 f"saliency method and variant: mean ± std over seeds ({source})")]
