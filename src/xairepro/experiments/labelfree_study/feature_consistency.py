"""Label-free feature importance consistency check (seed 003, Figure 1; claim 1).

For each data set's encoder f and each attribution method, the top-p% features of every test example
(by |label-free attribution| summed over channels) are replaced, and the latent shift
mean ||f(x) - f(x_p)||² is recorded at p = 5, 10, 20, 50, 80, 100%.  Random attributions are the
control.  Claim 1 (per data set and masking): at the small fractions, perturbing the most important
features shifts the latent more than perturbing random ones, for every method; decided across runs
(paired by seed, ``stats.combine``).

Replacement (the original code): MNIST black pixels (baseline zeros), ECG5000 the mean training beat
(also the attribution baseline), CIFAR-10 a Gaussian blur (21, sigma 5) of the image (also the
baseline); ``zeros`` on CIFAR-10 is the study's black-pixel variant (its Figure 5b).  ``road`` (not in
the study) imputes the removed features from the kept ones as ROAD does (noisy linear imputation;
linear interpolation in time for series), at the fractions below 100%: claim 1 is decided under it too,
and a verdict-robustness claim says whether claim 1's verdict depends on the removal (metric-fragile).
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
    PAPER_CIFAR_SIMCLR, PAPER_ECG_AE, PAPER_MNIST_DAE, QUICK_ECG_AE, QUICK_MNIST_DAE, SOURCE, LabelFreeExperiment,
    ModelSetup, check_choices, check_claim_fractions, check_fractions, check_seeds, frac_metric, pct, set_name,
)
from xairepro.experiments.labelfree_study.sets import BASELINES, PREFIX, REPLACEMENTS, FeatureSet, variant_name
from xairepro.experiments.labelfree_study.stats import CLAIM_Z, Difference, combine, paired_difference, per_seed
from xairepro.experiments.robustness import FRAGILE, metric_robustness
from xairepro.metrics import higher_is_better
from xairepro.utils import save_figure

__all__ = ["FeatureSet", "FeatureConsistencyConfig", "FeatureConsistencyExperiment", "FEATURE_METHODS",
           "REPLACEMENTS", "BASELINES", "variant_name"]

FEATURE_METHODS = ("integrated_gradients", "gradient_shap", "saliency", "random")
METHOD_LABELS = {"integrated_gradients": "Integrated Gradients", "gradient_shap": "Gradient Shap",
                 "saliency": "Saliency", "random": "Random"}
FRACTIONS = [0.05, 0.1, 0.2, 0.5, 0.8, 1.0]


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
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(FEATURE_METHODS))
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    ig_steps: int = 50
    gradient_shap_samples: int = 5
    batch_size: int = 500
    claim_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    claim_z: float = CLAIM_Z
    use_gpu: bool = False

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_choices(self.datasets, ("mnist", "ecg5000", "cifar10"), "datasets", "keys")
        for key in self.datasets:
            getattr(self, key).validate(key)
        check_choices(self.methods, FEATURE_METHODS, "methods")
        check_fractions(self.fractions, "fractions")
        check_claim_fractions(self.claim_fractions, self.fractions)
        if self.ig_steps < 1 or self.gradient_shap_samples < 1 or self.batch_size < 1:
            raise ConfigError("ig_steps, gradient_shap_samples and batch_size must be >= 1")
        if self.claim_z <= 0:
            raise ConfigError(f"claim_z must be > 0, got {self.claim_z}")


class FeatureConsistencyExperiment(LabelFreeExperiment):
    name = "labelfree-feature-consistency"
    title = "Label-free feature importance: consistency check (latent shift vs % of features perturbed)"
    reproduces = "seed 003, Figure 1 (and Figure 5b: CIFAR-10 black-pixel masks)"
    version = "1"
    config_class = FeatureConsistencyConfig
    presets = {
        "quick": {"datasets": ["mnist", "ecg5000"], "seeds": [0, 1], "ig_steps": 16,
                  "mnist": _set(QUICK_MNIST_DAE, ["zeros", "road"], "zeros", None),
                  "ecg5000": _set(QUICK_ECG_AE, ["mean", "road"], "mean", 200)},
        "paper": {"datasets": ["mnist", "ecg5000", "cifar10"], "seeds": [0, 1, 2], "ig_steps": 50,
                  "use_gpu": True,
                  "mnist": _set(PAPER_MNIST_DAE, ["zeros", "road"], "zeros", None),
                  "ecg5000": _set(PAPER_ECG_AE, ["mean", "road"], "mean", None),
                  "cifar10": _set(PAPER_CIFAR_SIMCLR, ["blur", "zeros", "road"], "blur", None)},
    }
    metrics = {frac_metric(PREFIX, f): MetricSpec(f"latent shift, {pct(f)} perturbed", higher_is_better(PREFIX))
               for f in FRACTIONS}
    tables = (TableSpec("Latent shift ||f(x) - f(x_p)||² after perturbing the top features",
                        tuple(frac_metric(PREFIX, f) for f in FRACTIONS), "seed 003, Figure 1 (no numbers published)"),)

    def cells(self, cfg: FeatureConsistencyConfig) -> list[Cell]:
        out = []
        for key in cfg.datasets:
            fs: FeatureSet = getattr(cfg, key)
            params = {"set": key, "feature_set": config_to_dict(fs), "methods": list(cfg.methods),
                      "fractions": list(cfg.fractions), "ig_steps": cfg.ig_steps,
                      "gradient_shap_samples": cfg.gradient_shap_samples, "batch_size": cfg.batch_size}
            out += [self.study_cell(cfg, fs.model.data, "methods", seed, params) for seed in cfg.seeds]
        return out

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
                out.append(Claim(
                    f"claim1-{key}" + ("" if not suffix else f"-{replacement}"),
                    f"Claim 1 on {name}: perturbing the most important features shifts the latent more than "
                    f"perturbing random ones, for every method, at {', '.join(pct(f) for f in cfg.claim_fractions)}",
                    _claim1_check(cfg, fs, replacement), SOURCE + ", Section 4.1 (Figure 1)"))
            if len(fs.replacements) > 1:
                name = set_name(key, fs.model.data)
                out.append(Claim(
                    f"claim1-{key}-metric-robustness",
                    f"Verdict robustness of claim 1 on {name}: the verdict is the same whichever way the top "
                    f"features are removed ({', '.join(fs.replacements)}; road = ROAD's noisy linear imputation); "
                    f"a verdict that changes is {FRAGILE}",
                    _robustness_check(cfg, fs), "not in the study (xairepro issue 15)"))
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
        return out

    def describe(self, cfg: FeatureConsistencyConfig) -> dict[str, Any]:
        sets = {key: f"{getattr(cfg, key).model.data} ({getattr(cfg, key).model.model}), masks "
                     f"{'/'.join(getattr(cfg, key).replacements)}, baseline {getattr(cfg, key).baseline}, "
                     f"{getattr(cfg, key).n_test or 'all'} test examples" for key in cfg.datasets}
        return {"data_sets": sets, "attribution": f"IG {cfg.ig_steps} steps (captum default 50), GradientShap "
                f"{cfg.gradient_shap_samples} samples, Saliency abs", "claim_rule":
                f"paired over seeds, difference > {cfg.claim_z:g} standard errors"}


def _claim1_outcomes(results: Results, cfg: FeatureConsistencyConfig, fs: FeatureSet, replacement: str
                     ) -> dict[str, Difference]:
    """Method - Random latent shift, paired over seeds, at every claim fraction, under ``replacement``."""
    primary = fs.replacements[0]
    dataset = fs.model.data
    control = variant_name("random", replacement, primary)
    outcomes = {}
    for method in (m for m in cfg.methods if m != "random"):
        variant = variant_name(method, replacement, primary)
        for f in cfg.claim_fractions:
            metric = frac_metric(PREFIX, f)
            outcomes[f"{method}@{pct(f)}"] = paired_difference(
                per_seed(results, metric, dataset, variant), per_seed(results, metric, dataset, control),
                cfg.claim_z)
    return outcomes


def _claim1_verdict(results: Results, cfg: FeatureConsistencyConfig, fs: FeatureSet, replacement: str) -> Verdict:
    if "random" not in cfg.methods or not [m for m in cfg.methods if m != "random"]:
        return Verdict("inconclusive", "claim 1 needs the Random control and at least one method")
    # claim 1: the important features are the faithful ones, i.e. their latent shift is the better one
    return combine(_claim1_outcomes(results, cfg, fs, replacement), claim="latent shift (method - Random)",
                   want=1 if higher_is_better(PREFIX) else -1)


def _claim1_check(cfg: FeatureConsistencyConfig, fs: FeatureSet, replacement: str):
    return lambda results: _claim1_verdict(results, cfg, fs, replacement)


def _robustness_check(cfg: FeatureConsistencyConfig, fs: FeatureSet):
    """Claim 1 re-decided under every replacement; metric-fragile when the verdicts differ."""

    def check(results: Results) -> Verdict:
        verdicts = {r: _claim1_verdict(results, cfg, fs, r) for r in fs.replacements}
        want = 1 if higher_is_better(PREFIX) else -1          # + = the claimed direction
        signs: dict[str, dict[str, int | None]] = {}
        for r in fs.replacements:
            for label, d in _claim1_outcomes(results, cfg, fs, r).items():
                signs.setdefault(label, {})[r] = None if d.n < 2 else d.sign * want
        return metric_robustness(verdicts, "claim 1 (method - Random latent shift)", signs)

    return check
