"""Label-free feature importance consistency check (seed 003, Figure 1; claim 1).

For each data set's encoder f and each attribution method, the top-p% features of every test example
(by |label-free attribution| summed over channels) are replaced, and the latent shift
mean ||f(x) - f(x_p)||² is recorded at p = 5, 10, 20, 50, 80, 100%.  Random attributions are the
control.  Claim 1 (per data set and masking): at the small fractions, perturbing the most important
features shifts the latent more than perturbing random ones, for each method; decided across runs by
the shared rule (paired by seed, per method, then holds / partly / fails over the methods).

Replacement (the original code): MNIST black pixels (baseline zeros), ECG5000 the mean training beat
(also the attribution baseline), CIFAR-10 a Gaussian blur (21, sigma 5) of the image (also the
baseline); ``zeros`` on CIFAR-10 is the study's black-pixel variant (its Figure 5b).  ``road`` (not in
the study) imputes the removed features from the kept ones as ROAD does (noisy linear imputation;
linear interpolation in time for series), at the fractions below 100%: claim 1 is decided under it too,
and a verdict-robustness claim says whether claim 1's verdict depends on the removal (metric-fragile).

Cells: one per set, run and attribution baseline (``sets.cell_sets``): the first replacement is scored with
the set's baseline (road too, with those attributions); a further replacement that can be a baseline is its
own cell attributed with it (the reproduction's black-pixel variant of CIFAR-10, Figures 5b and 13; the
quick preset shows the axis as blur on the digits stand-in).  ``cifar10_densenet`` is CIFAR-10 with the
reproduction's DenseNet-121 SimCLR encoder (Figure 5c; paper preset only: one SimCLR epoch on 300 images
costs ~90 s of CPU).  Each cell keeps its first test images masked at every fraction (``masked_examples.pt``,
not for road) for the masked-image figures (Figures 6, 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.base import Cell, Claim, Context, Figure, MetricSpec, Record, Results, TableSpec, Verdict
from xairepro.experiments.labelfree_study.common import (
    PAPER_CIFAR_DENSENET, PAPER_CIFAR_SIMCLR, PAPER_ECG_AE, PAPER_MNIST_DAE, QUICK_ECG_AE, QUICK_MNIST_DAE,
    SIMCLR_DEVIATION, SOURCE, LabelFreeExperiment, ModelSetup, check_choices, check_claim_fractions, check_fractions,
    check_seeds, frac_metric, pct, set_dataset, set_name,
)
from xairepro.experiments.labelfree_study.real_preset import DEVIATIONS, REAL_FASHION_DAE, REAL_FEATURE
from xairepro.experiments.labelfree_study.sets import (
    BASELINES, MASKED_EXAMPLES, PREFIX, REPLACEMENTS, FeatureSet, cell_sets, variant_name,
)
from xairepro.experiments.labelfree_study.stats import Pair, per_method, per_seed
from xairepro.experiments.robustness import FRAGILE, metric_robustness
from xairepro.experiments.verdict_rules import paired
from xairepro.metrics import higher_is_better
from xairepro.utils import save_figure

__all__ = ["FeatureSet", "FeatureConsistencyConfig", "FeatureConsistencyExperiment", "FEATURE_METHODS",
           "REPLACEMENTS", "BASELINES", "variant_name"]

FEATURE_METHODS = ("integrated_gradients", "gradient_shap", "saliency", "random")
METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "gradient_shap": "Gradient Shap",
                 "saliency": "Saliency", "random": "Random"}
#: The study's verdict on claim 1 per (data set, replacement) and its words (seed 003, Sections 4.1, 4.2); a
#: replacement the study did not use on that set (e.g. blur on MNIST, road) carries none.
STUDY_VERDICTS: dict[tuple[str, str], tuple[str, str]] = {
    ("mnist", "zeros"): ("holds", "perturbing pixels based on the importance score yields a bigger change in latent "
                                  "space than perturbing random pixels. Again for MNIST and ECG5000, we have been "
                                  "able to confirm that."),
    ("ecg5000", "mean"): ("holds", "perturbing pixels based on the importance score yields a bigger change in "
                                   "latent space than perturbing random pixels. Again for MNIST and ECG5000, we have "
                                   "been able to confirm that."),
    ("cifar10", "blur"): ("partly", "For CIFAR‐10 this is true only for the Integrated Gradients method."),
    ("cifar10", "zeros"): ("partly", "Integrated Gradients and Gradient Shap methods performed better in this setup, "
                                     "however the relative difference from the Random baseline method is smaller "
                                     "than previously."),
    ("cifar10_densenet", "blur"): ("partly", "By running the same experiments we obtained identical results as can "
                                             "be seen in Figure 5c. [...] The trends are the same as the ones using "
                                             "the ResNet encoder, designating that the conclusion does not depend on "
                                             "the encoder."),
}
FRACTIONS = [0.05, 0.1, 0.2, 0.5, 0.8, 1.0]
SET_KEYS = ("mnist", "ecg5000", "cifar10", "cifar10_densenet", "fashion_mnist")


def _set(model: dict[str, Any], replacements: list[str], baseline: str, n_test: int | None) -> dict[str, Any]:
    return {"model": model, "replacements": replacements, "baseline": baseline, "n_test": n_test}


@dataclass
class FeatureConsistencyConfig:
    """Data sets (keys ``mnist``, ``ecg5000``, ``cifar10``), methods, fractions, attribution settings."""

    datasets: list[str] = field(default_factory=lambda: ["mnist", "ecg5000"])
    mnist: FeatureSet = field(default_factory=lambda: FeatureSet(ModelSetup(**PAPER_MNIST_DAE)))
    ecg5000: FeatureSet = field(default_factory=lambda: FeatureSet(ModelSetup(**PAPER_ECG_AE), ["mean"], "mean"))
    cifar10: FeatureSet = field(default_factory=lambda: FeatureSet(ModelSetup(**PAPER_CIFAR_SIMCLR), ["blur"],
                                                                   "blur"))
    cifar10_densenet: FeatureSet = field(default_factory=lambda: FeatureSet(ModelSetup(**PAPER_CIFAR_DENSENET),
                                                                            ["blur"], "blur"))
    fashion_mnist: FeatureSet = field(default_factory=lambda: FeatureSet(ModelSetup(**REAL_FASHION_DAE)))  # Fig 5a
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(FEATURE_METHODS))
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    ig_steps: int = 50
    gradient_shap_samples: int = 5
    batch_size: int = 500
    claim_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    use_gpu: bool = False

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_choices(self.datasets, SET_KEYS, "datasets", "keys")
        for key in self.datasets:
            getattr(self, key).validate(key)
        check_choices(self.methods, FEATURE_METHODS, "methods")
        check_fractions(self.fractions, "fractions")
        check_claim_fractions(self.claim_fractions, self.fractions)
        if self.ig_steps < 1 or self.gradient_shap_samples < 1 or self.batch_size < 1:
            raise ConfigError("ig_steps, gradient_shap_samples and batch_size must be >= 1")


class FeatureConsistencyExperiment(LabelFreeExperiment):
    name = "labelfree-feature-consistency"
    title = "Label-free feature importance: consistency check (latent shift vs % of features perturbed)"
    reproduces = ("seed 003, Figure 1 (and Figures 5b, 13: CIFAR-10 black-pixel masks; 5c: DenseNet-121; 6: "
                  "masked images)")
    version = "1"
    config_class = FeatureConsistencyConfig
    presets = {
        "quick": {"datasets": ["mnist", "ecg5000"], "seeds": [0, 1, 2, 3], "ig_steps": 16,
                  "mnist": _set(QUICK_MNIST_DAE, ["zeros", "road", "blur"], "zeros", None),
                  "ecg5000": _set(QUICK_ECG_AE, ["mean", "road"], "mean", 200)},
        "paper": {"datasets": ["mnist", "ecg5000", "cifar10", "cifar10_densenet"], "seeds": [0, 1, 2], "ig_steps": 50,
                  "use_gpu": True,
                  "mnist": _set(PAPER_MNIST_DAE, ["zeros", "road"], "zeros", None),
                  "ecg5000": _set(PAPER_ECG_AE, ["mean", "road"], "mean", None),
                  "cifar10": _set(PAPER_CIFAR_SIMCLR, ["blur", "zeros", "road"], "blur", None),
                  "cifar10_densenet": _set(PAPER_CIFAR_DENSENET, ["blur"], "blur", None)},
        "real": REAL_FEATURE,
    }
    preset_deviations = {"real": DEVIATIONS[name]}
    metrics = {frac_metric(PREFIX, f): MetricSpec(f"latent shift, {pct(f)} perturbed", higher_is_better(PREFIX))
               for f in FRACTIONS}
    tables = (TableSpec("Latent shift ||f(x) - f(x_p)||² after perturbing the top features",
                        tuple(frac_metric(PREFIX, f) for f in FRACTIONS), "seed 003, Figure 1 (no numbers published)"),)

    def cells(self, cfg: FeatureConsistencyConfig) -> list[Cell]:
        out = []
        for key in cfg.datasets:
            fs: FeatureSet = getattr(cfg, key)
            for i, part in enumerate(cell_sets(fs)):
                params = {"set": key, "feature_set": config_to_dict(part), "methods": list(cfg.methods),
                          "fractions": list(cfg.fractions), "ig_steps": cfg.ig_steps,
                          "gradient_shap_samples": cfg.gradient_shap_samples, "batch_size": cfg.batch_size}
                variant = "methods"
                if i:   # a further attribution baseline: the first cell keeps the parameters it always had
                    params["primary"] = fs.replacements[0]
                    variant = f"methods ({'/'.join(part.replacements)})"
                out += [self.study_cell(cfg, set_dataset(key, fs.model), variant, seed, params) for seed in cfg.seeds]
        return out

    def datasets(self, cfg: FeatureConsistencyConfig) -> list[str]:
        return sorted({getattr(cfg, key).model.data for key in cfg.datasets})

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        # lazy: the computation imports torch and the explainers (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.feature_cells import feature_consistency_records

        return feature_consistency_records(cell, ctx)

    def claims(self, cfg: FeatureConsistencyConfig) -> list[Claim]:
        out = []
        for key in cfg.datasets:
            fs: FeatureSet = getattr(cfg, key)
            for replacement in fs.replacements:
                suffix = "" if replacement == fs.replacements[0] else f", {replacement} replacement"
                name = set_name(key, fs.model.data) + suffix
                study, quote = STUDY_VERDICTS.get((key, replacement), ("", ""))
                out.append(Claim(
                    f"claim1-{key}" + ("" if not suffix else f"-{replacement}"),
                    f"Claim 1 on {name}: perturbing the most important features shifts the latent more than "
                    f"perturbing random ones, for each method, at {', '.join(pct(f) for f in cfg.claim_fractions)}",
                    _claim1_check(cfg, key, fs, replacement), SOURCE + ", Section 4.1 (Figure 1)", study=study,
                    study_quote=quote))
            if len(fs.replacements) > 1:
                name = set_name(key, fs.model.data)
                out.append(Claim(
                    f"claim1-{key}-metric-robustness",
                    f"Verdict robustness of claim 1 on {name}: the verdict is the same whichever way the top "
                    f"features are removed ({', '.join(fs.replacements)}; road = ROAD's noisy linear imputation); "
                    f"a verdict that changes is {FRAGILE}",
                    _robustness_check(cfg, key, fs), "not in the study (xairepro issue 15)"))
        return out

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import consistency_figure, fraction_curves

        out = []
        frame = results.frame
        for dataset in dict.fromkeys(frame["dataset"]):
            variants = list(dict.fromkeys(frame[frame["dataset"] == dataset]["variant"]))
            groups: dict[str, list[str]] = {}
            for v in variants:
                groups.setdefault(v.partition(" (")[2].rstrip(")"), []).append(v)
            for replacement, members in groups.items():
                fractions, curves = fraction_curves(results, dataset, PREFIX, members)
                # fractions this group never measured (road skips 100%) are left out of its figure
                measured = np.zeros(len(fractions), dtype=bool)
                for a in curves.values():
                    measured |= np.isfinite(a).any(axis=1)
                fractions = [f for f, keep in zip(fractions, measured) if keep]
                curves = {v: a[measured] for v, a in curves.items()}
                if not curves or not fractions:
                    continue
                labels = {v: METHOD_LABELS.get(v.partition(" (")[0], v) for v in curves}
                tag = f", {replacement} masks" if replacement else ""
                # a band over 2 runs (t = 12.7) says nothing: bands from 3 runs on
                fig = consistency_figure({labels[v]: a if a.shape[1] >= 3 else np.nanmean(a, 1)
                                          for v, a in curves.items()}, fractions, title=f"{dataset}{tag}")
                path = save_figure(fig, Path(out_dir) / f"consistency_{dataset}{'_' + replacement if replacement else ''}.png")
                out.append(Figure(path, f"Feature consistency on {dataset}{tag}: latent shift vs % of features "
                                        "perturbed, mean over runs (95% band from 3 runs on) (seed 003, Figure 1)"))
                out += self._masked_figure(results, dataset, replacement, labels, members, out_dir)
        return out

    def _masked_figure(self, results: Results, dataset: str, replacement: str, labels: dict[str, str],
                       members: list[str], out_dir: Path) -> list[Figure]:
        """The first run's test images masked as the cell measured them (Figures 6, 13), when it kept them."""
        # lazy: torch and matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import load_cell_file, masked_grid

        seed = int(results.frame["seed"].min())
        kept = load_cell_file(results, out_dir, self.name, dataset, members[0], seed, MASKED_EXAMPLES)
        if kept is None or not any(v in kept["masked"] for v in members):
            return []
        kind = replacement or str(kept.get("primary", ""))
        path = masked_grid(kept, {v: labels[v] for v in members if v in labels},
                           Path(out_dir) / f"masked_{dataset}{'_' + replacement if replacement else ''}.png",
                           title=f"{dataset}: top features replaced ({kind})")
        return [Figure(path, f"Feature consistency on {dataset}: test images with their most important features "
                             f"replaced ({kind}), per method and fraction, run {seed} (seed 003, Figures 6 and 13)")]

    def describe(self, cfg: FeatureConsistencyConfig) -> dict[str, Any]:
        sets = {key: f"{getattr(cfg, key).model.data} ({getattr(cfg, key).model.model}), masks "
                     f"{'/'.join(getattr(cfg, key).replacements)}, baseline {getattr(cfg, key).baseline}, "
                     f"{getattr(cfg, key).n_test or 'all'} test examples" for key in cfg.datasets}
        deviations = [SIMCLR_DEVIATION] if any(getattr(cfg, k).model.model == "simclr" for k in cfg.datasets) else []
        out = {"data_sets": sets, "attribution": f"IG {cfg.ig_steps} steps (captum default 50), GradientShap "
               f"{cfg.gradient_shap_samples} samples, Saliency abs",
               "claim_rule": "the shared rule (report: How verdicts are decided); per method, paired by run",
               "cells": "one per set, run and attribution baseline: a further replacement that can be a baseline "
                        "(zeros, mean, blur) is attributed with itself, road with the set's",
               "masked_images": "the first 4 test images of the first run, every fraction (Figures 6, 13)",
               "deviations": deviations}
        if "cifar10" not in cfg.datasets and any(len(getattr(cfg, k).replacements) > 1 for k in cfg.datasets):
            out["replacement_axis"] = ("the study's black-pixel vs blur masks of CIFAR-10 (Figures 5b, 13) shown on "
                                       "the configured sets: no CIFAR-10 or DenseNet-121 SimCLR here (one SimCLR "
                                       "epoch on 300 images: ~33 s CPU with ResNet-18, ~90 s with DenseNet-121)")
        return out


def _claim1_pairs(results: Results, cfg: FeatureConsistencyConfig, key: str, fs: FeatureSet, replacement: str
                  ) -> dict[str, list[Pair]]:
    """Per method, (label, method's latent shift by seed, Random's by seed) at every claim fraction, under
    ``replacement``."""
    primary = fs.replacements[0]
    dataset = set_dataset(key, fs.model)
    control = variant_name("random", replacement, primary)
    pairs = {}
    for method in (m for m in cfg.methods if m != "random"):
        variant = variant_name(method, replacement, primary)
        pairs[method] = [(f"{method}@{pct(f)}", per_seed(results, frac_metric(PREFIX, f), dataset, variant),
                          per_seed(results, frac_metric(PREFIX, f), dataset, control)) for f in cfg.claim_fractions]
    return pairs


def _claim1_verdict(results: Results, cfg: FeatureConsistencyConfig, key: str, fs: FeatureSet,
                    replacement: str) -> Verdict:
    if "random" not in cfg.methods or not [m for m in cfg.methods if m != "random"]:
        return Verdict.inconclusive("not-run", "claim 1 needs the Random control and at least one method")
    # claim 1: the important features are the faithful ones, i.e. their latent shift is the better one
    return per_method(_claim1_pairs(results, cfg, key, fs, replacement),
                      "latent shift (method - Random), paired by run", want=1 if higher_is_better(PREFIX) else -1)


def _claim1_check(cfg: FeatureConsistencyConfig, key: str, fs: FeatureSet, replacement: str):
    return lambda results: _claim1_verdict(results, cfg, key, fs, replacement)


def _robustness_check(cfg: FeatureConsistencyConfig, key: str, fs: FeatureSet):
    """Claim 1 re-decided under every replacement; metric-fragile when the verdicts differ."""

    def check(results: Results) -> Verdict:
        verdicts = {r: _claim1_verdict(results, cfg, key, fs, r) for r in fs.replacements}
        want = 1 if higher_is_better(PREFIX) else -1          # + = the claimed direction
        signs: dict[str, dict[str, int | None]] = {}
        for r in fs.replacements:
            for items in _claim1_pairs(results, cfg, key, fs, r).values():
                for label, a, b in items:
                    d = paired(a, b).direction()
                    signs.setdefault(label, {})[r] = None if d is None else d * want
        return metric_robustness(verdicts, "claim 1 (method - Random latent shift)", signs)

    return check
