"""Pretext tasks: are the representations interchangeable? (seed 003, Table 3; claim 3.)

Per run, four encoders with the same architecture (d = 4) are trained: autoencoders for reconstruction,
denoising (x + 0.3 N(0, 1)) and inpainting (20% of the pixels dropped), and a classifier.  Between every
pair of tasks we record the Pearson (and Spearman) correlation of
- their saliency maps |label-free GradientShap| (and IG) on the test images, and
- their DkNN example-importance scores (test x training subset),
pooled over all examples as the original code did (``pooled=False``: per example, then averaged).
Published: Tables 3a/3b (MNIST), 5/6 (Fashion-MNIST), 7 (IG).

Claim 3 (per data set): (a) the representations are not interchangeable: every correlation is
significantly below ``interchangeable_threshold`` (0.7, a strong correlation); a sanity check (the
published correlations are 0.05-0.49), shown apart from the tests; (b) the example importance is less
correlated between tasks than the saliency maps, pair by pair (paired by run; the average over the pairs
decides, by the shared rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xairepro.config import config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.base import (
    Cell, Claim, Context, Figure, MetricSpec, Record, Reference, Results, TableSpec, Verdict,
)
from xairepro.experiments.labelfree_study.common import (
    PAPER_MNIST_DAE, QUICK_MNIST_DAE, SOURCE, LabelFreeExperiment, ModelSetup, check_choices, check_seeds,
    set_name, stand_in_note,
)
from xairepro.experiments.labelfree_study.real_preset import DEVIATIONS, REAL_PRETEXT, REAL_PRETEXT_SETS
from xairepro.experiments.labelfree_study.references import PAIRS, TASK_LABELS, TASKS, pair_metric, published
from xairepro.experiments.labelfree_study.sets import PRETEXT_EXAMPLES, PretextSet, task_setup
from xairepro.experiments.labelfree_study.stats import per_seed
from xairepro.experiments.verdict_rules import directional, one_sample, paired, paired_mean, sanity

__all__ = ["PretextSet", "PretextConfig", "PretextExperiment", "task_setup", "PRETEXT_METHODS"]

PRETEXT_METHODS = ("gradient_shap", "integrated_gradients", "saliency")
SET_KEYS = ("mnist", "fashion_mnist")
#: The study's reading of its tables (seed 003, Section 4.1 for MNIST, Appendix A.4 for Fashion-MNIST).
STUDY_QUOTES = {
    "mnist": "the Pearson correlation coefficients for saliency maps range from .32 to .43 corresponding to the "
             "moderate positive correlations [...] we have Pearson correlation coefficients for example "
             "importance ranging from .05 to .13 corresponding to the weak correlations",
    "fashion_mnist": "The Pearson scores range from .31 to .49 corresponding to moderate positive correlation "
                     "for saliency maps and from .07 to .31 corresponding to weak correlations for example "
                     "importance.",
}
STATISTICS = ("pearson", "spearman")


def _classifier(ae: dict[str, Any]) -> dict[str, Any]:
    """The classifier with the autoencoder's encoder and training (identity normalisation as the original)."""
    return {**ae, "model": "mnist-classifier", "model_kwargs": {**ae["model_kwargs"], "mean": [0.0], "std": [1.0]},
            "method": "ce", "method_options": {}, "checkpoint_every": 0}


def _set(ae: dict[str, Any], n_test: int | None, n_train: int) -> dict[str, Any]:
    return {"autoencoder": ae, "classifier": _classifier(ae), "n_test": n_test, "n_train": n_train}


#: The pretext study trained with batch 300 (the consistency checks with 200), 5 runs.
PAPER_PRETEXT_AE = {**PAPER_MNIST_DAE, "batch_size": 300, "checkpoint_every": 0}
PAPER_FASHION_AE = {**PAPER_PRETEXT_AE, "data": "fashion-mnist"}


@dataclass
class PretextConfig:
    """Data sets (``mnist``, ``fashion_mnist``), runs, saliency methods, claim settings."""

    datasets: list[str] = field(default_factory=lambda: ["mnist"])
    mnist: PretextSet = field(default_factory=lambda: PretextSet(
        ModelSetup(**PAPER_PRETEXT_AE), ModelSetup(**_classifier(PAPER_PRETEXT_AE))))
    fashion_mnist: PretextSet = field(default_factory=lambda: PretextSet(
        ModelSetup(**PAPER_FASHION_AE), ModelSetup(**_classifier(PAPER_FASHION_AE))))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    saliency_methods: list[str] = field(default_factory=lambda: ["gradient_shap"])
    ig_steps: int = 50
    gradient_shap_samples: int = 5
    pooled: bool = True
    batch_size: int = 500
    interchangeable_threshold: float = 0.7
    use_gpu: bool = False

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_choices(self.datasets, SET_KEYS, "datasets", "keys")
        for key in self.datasets:
            getattr(self, key).validate(key)
        check_choices(self.saliency_methods, PRETEXT_METHODS, "saliency_methods")
        if self.ig_steps < 1 or self.gradient_shap_samples < 1 or self.batch_size < 1:
            raise ConfigError("ig_steps, gradient_shap_samples and batch_size must be >= 1")
        if not 0 < self.interchangeable_threshold <= 1:
            raise ConfigError("interchangeable_threshold must be in (0, 1]")


def _metric_specs() -> dict[str, MetricSpec]:
    out = {}
    for kind in ("saliency", "example"):
        for stat in STATISTICS:
            for a, b in PAIRS:
                what = "saliency maps" if kind == "saliency" else "example importance"
                out[pair_metric(kind, stat, a, b)] = MetricSpec(
                    f"{stat.capitalize()}, {what}, {TASK_LABELS[a]} vs {TASK_LABELS[b]}")
    return out


class PretextExperiment(LabelFreeExperiment):
    name = "labelfree-pretext"
    title = "Pretext tasks: correlation of saliency maps and example importance between tasks"
    reproduces = ("seed 003, Table 3 (and Tables 5, 6: Fashion-MNIST; Table 7: Integrated Gradients; Figures 7, 8, "
                  "11, 12, 15, 16: top examples and saliency maps per task)")
    version = "1"
    config_class = PretextConfig
    presets = {
        "quick": {"datasets": ["mnist"], "seeds": [0, 1, 2, 3], "ig_steps": 16,
                  "saliency_methods": ["gradient_shap", "integrated_gradients"],
                  "mnist": _set(QUICK_MNIST_DAE, None, 300)},
        "paper": {"datasets": ["mnist", "fashion_mnist"], "seeds": [0, 1, 2, 3, 4], "ig_steps": 50,
                  "saliency_methods": ["gradient_shap", "integrated_gradients"], "use_gpu": True,
                  "mnist": _set(PAPER_PRETEXT_AE, None, 1000), "fashion_mnist": _set(PAPER_FASHION_AE, None, 1000)},
        "real": {**REAL_PRETEXT, **{key: _set(ae, n_test, 1000) for key, (ae, n_test) in REAL_PRETEXT_SETS.items()}},
    }
    preset_deviations = {"real": DEVIATIONS[name]}
    metrics = _metric_specs()
    tables = (
        TableSpec("Pearson correlation of the saliency maps between pretext tasks",
                  tuple(pair_metric("saliency", "pearson", a, b) for a, b in PAIRS),
                  "seed 003, Tables 3a, 5, 7"),
        TableSpec("Pearson correlation of the example importance (DkNN) between pretext tasks",
                  tuple(pair_metric("example", "pearson", a, b) for a, b in PAIRS), "seed 003, Tables 3b, 6"),
        TableSpec("Spearman correlations (computed by the original code, not published in the seed)",
                  tuple(pair_metric(k, "spearman", a, b) for k in ("saliency", "example") for a, b in PAIRS)),
    )

    def cells(self, cfg: PretextConfig) -> list[Cell]:
        out = []
        for key in cfg.datasets:
            ps: PretextSet = getattr(cfg, key)
            params = {"set": key, "pretext_set": config_to_dict(ps), "saliency_methods": list(cfg.saliency_methods),
                      "ig_steps": cfg.ig_steps, "gradient_shap_samples": cfg.gradient_shap_samples,
                      "pooled": cfg.pooled, "batch_size": cfg.batch_size}
            out += [self.study_cell(cfg, ps.autoencoder.data, "tasks", seed, params) for seed in cfg.seeds]
        return out

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        # lazy: the computation imports torch and the explainers (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.pretext_cells import pretext_records

        return pretext_records(cell, ctx)

    def references(self, cfg: PretextConfig) -> list[Reference]:
        out = []
        for key in cfg.datasets:
            data = getattr(cfg, key).autoencoder.data
            study_key = key.replace("_", "-")
            for kind, methods in (("saliency", cfg.saliency_methods), ("example", ["dknn"])):
                for method in methods:
                    table = published(study_key, kind, method)
                    if table is None:
                        continue
                    note = stand_in_note(study_key, data) + "; published std over 5 runs (ddof 0)"
                    out += [Reference(data, method, pair_metric(kind, "pearson", a, b), mean, std,
                                      f"{SOURCE}, {table.table}", note)
                            for (a, b), (mean, std) in table.pairs().items()]
        return out

    def claims(self, cfg: PretextConfig) -> list[Claim]:
        out = []
        method = "gradient_shap" if "gradient_shap" in cfg.saliency_methods else cfg.saliency_methods[0]
        for key in cfg.datasets:
            data = getattr(cfg, key).autoencoder.data
            name = set_name(key.replace("_", "-"), data)
            quote = STUDY_QUOTES[key]
            out.append(Claim(
                f"claim3-{key}",
                f"Claim 3 on {name}: representations of different pretext tasks are not interchangeable: "
                f"every Pearson correlation between tasks (saliency maps by {method}, DkNN example importance) "
                f"is below {cfg.interchangeable_threshold:g} (a sanity check: the study's are 0.05-0.49)",
                _interchangeable_check(cfg, data, method), SOURCE + ", Section 4.1 (Table 3)", study="holds",
                study_quote="In conclusion, the representations of different pretext tasks are not "
                "interchangeable.", sanity=True))
            out.append(Claim(
                f"claim3-{key}-examples-weaker",
                f"Claim 3 on {name} (Table 3a vs 3b): example importance is less correlated between tasks than "
                "saliency, for every pair of tasks (moderate vs weak correlations)",
                _weaker_check(cfg, data, method), SOURCE + ", Section 4.1 (Table 3)", study="holds",
                study_quote=quote))
        return out

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import correlation_heatmaps

        out = []
        frame = results.frame
        for dataset in dict.fromkeys(frame["dataset"]):
            panels = []
            for variant in dict.fromkeys(frame[frame["dataset"] == dataset]["variant"]):
                kind = "example" if variant == "dknn" else "saliency"
                mean, std = np.eye(len(TASKS)), np.zeros((len(TASKS), len(TASKS)))
                for a, b in PAIRS:
                    i, j = TASKS.index(a), TASKS.index(b)
                    values = results.values(pair_metric(kind, "pearson", a, b), dataset, variant)
                    m = float(np.nanmean(values)) if values.size else np.nan
                    s = float(np.nanstd(values, ddof=1)) if values.size > 1 else np.nan
                    mean[i, j] = mean[j, i] = m
                    std[i, j] = std[j, i] = s
                panels.append((f"{'examples (DkNN)' if kind == 'example' else 'saliency: ' + variant}",
                               [TASK_LABELS[t] for t in TASKS], mean, std))
            if panels:
                path = correlation_heatmaps(panels, Path(out_dir) / f"pretext_{dataset}.png",
                                            suptitle=f"Pearson correlation between pretext tasks on {dataset}")
                out.append(Figure(path, f"Pretext tasks on {dataset}: mean ± std over runs of the Pearson correlation "
                                        "between tasks (seed 003, Table 3 as heatmaps)"))
            out += self._example_figures(results, dataset, out_dir)
        return out

    def _example_figures(self, results: Results, dataset: str, out_dir: Path) -> list[Figure]:
        """Saliency maps per task (one figure per method) and top examples per task, of the first run."""
        # lazy: torch and matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import load_cell_file, pretext_example_grid, pretext_map_grid

        seed = int(results.frame["seed"].min())
        kept = load_cell_file(results, out_dir, self.name, dataset, "dknn", seed, PRETEXT_EXAMPLES)
        if kept is None:
            return []
        n = kept["images"].shape[0]
        out = []
        for method in kept["maps"]:
            label = {"gradient_shap": "Gradient Shap", "integrated_gradients": "Integrated Gradients"}.get(method, method)
            path = pretext_map_grid(kept, TASK_LABELS, method, Path(out_dir) / f"pretext_saliency_{dataset}_{method}.png",
                                    title=f"{dataset}, run {seed}: |label-free {label}| per task")
            figures = {"gradient_shap": "Figures 8 and 12", "integrated_gradients": "Figure 16"}.get(method, "")
            out.append(Figure(path, f"Pretext tasks on {dataset}: saliency map (|label-free {label}|) of each task's "
                                    f"encoder for {n} test images, run {seed}; maps scaled per image"
                                    + (f" (seed 003, {figures})" if figures else "")))
        path = pretext_example_grid(kept, TASK_LABELS, Path(out_dir) / f"pretext_top_examples_{dataset}.png",
                                    title=f"{dataset}, run {seed}: top training example (DkNN) per task")
        # DkNN's top examples do not depend on the saliency method: Figure 15 shows the same quantity
        out.append(Figure(path, f"Pretext tasks on {dataset}: the most important training example (DkNN) of each "
                                f"task's encoder for the same {n} test images, run {seed} (seed 003, Figures 7, 11, 15)"))
        return out

    def describe(self, cfg: PretextConfig) -> dict[str, Any]:
        sets = {key: f"{getattr(cfg, key).autoencoder.data}: {getattr(cfg, key).n_test or 'all'} test images for "
                     f"saliency and DkNN, {getattr(cfg, key).n_train} training examples for DkNN"
                for key in cfg.datasets}
        return {"data_sets": sets, "correlation": "pooled over all examples (as the original)" if cfg.pooled
                else "per example, averaged", "attribution": f"|label-free {', '.join(cfg.saliency_methods)}|, "
                f"IG {cfg.ig_steps} steps, GradientShap {cfg.gradient_shap_samples} samples, zero baseline",
                "claim_rule": "the shared rule (report: How verdicts are decided); 'every r below the threshold' is "
                              "a sanity check, not counted"}


def _interchangeable_check(cfg: PretextConfig, dataset: str, method: str):
    def check(results: Results) -> Verdict:
        comparisons = {f"{kind} {a}-{b}": one_sample(
            list(per_seed(results, pair_metric(kind, "pearson", a, b), dataset, variant).values()),
            cfg.interchangeable_threshold)
            for kind, variant in (("saliency", method), ("example", "dknn")) for a, b in PAIRS}
        return sanity(comparisons, f"Pearson - {cfg.interchangeable_threshold:g}", want=-1)

    return check


def _weaker_check(cfg: PretextConfig, dataset: str, method: str):
    def check(results: Results) -> Verdict:
        pairs = [(f"{a}-{b}", per_seed(results, pair_metric("saliency", "pearson", a, b), dataset, method),
                  per_seed(results, pair_metric("example", "pearson", a, b), dataset, "dknn")) for a, b in PAIRS]
        comparisons = {label: paired(x, y) for label, x, y in pairs}
        return directional(comparisons, "Pearson of saliency - Pearson of examples, paired by run",
                           overall=paired_mean([(x, y) for _, x, y in pairs]))

    return check
