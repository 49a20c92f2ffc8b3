"""Label-free example importance consistency check (seed 003, Figure 2; claim 2).

n_train training and n_test test examples are drawn (balanced by class where the original did); every
method scores each (test, train) pair, and the similarity rate is the share of a test example's K most
(least) important training examples sharing its label, K = int(p · n_train) for p = 5 ... 100%.
Loss-based methods (influence functions, TracIn) take gradients of the autoencoder's reconstruction
loss w.r.t. the encoder's parameters; representation-based ones (SimplEx, DkNN) use the encoder's
latents.  CIFAR-10 (SimCLR, contrastive loss) has only the representation-based ones, as in the study;
``cifar10_densenet`` is CIFAR-10 with the reproduction's DenseNet-121 SimCLR encoder (its Figure 18;
paper preset only).
Claim 2 (per data set): Most > Least for every method at the small fractions, decided across runs.
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
from xairepro.experiments.labelfree_study.real_preset import DEVIATIONS, REAL_EXAMPLE, REAL_FASHION_DAE
from xairepro.experiments.labelfree_study.sets import EXAMPLE_METHODS, LEAST, MOST, ExampleSet, LissaSettings
from xairepro.experiments.labelfree_study.stats import per_method, per_seed
from xairepro.metrics import higher_is_better
from xairepro.utils import save_figure

__all__ = ["ExampleSet", "LissaSettings", "ExampleConsistencyConfig", "ExampleConsistencyExperiment",
           "EXAMPLE_METHODS"]

METHOD_LABELS = {"influence_functions": "Influence Functions", "tracin": "TracIn", "simplex": "SimplEx",
                 "dknn": "DKNN"}
FRACTIONS = [0.05, 0.1, 0.2, 0.5, 0.7, 1.0]
SET_KEYS = ("mnist", "ecg5000", "cifar10", "cifar10_densenet", "fashion_mnist")


def _set(model: dict[str, Any], methods: list[str], n_train: int, n_test: int, balance_train: bool,
         balance_test: bool) -> dict[str, Any]:
    return {"model": model, "methods": methods, "n_train": n_train, "n_test": n_test,
            "balance_train": balance_train, "balance_test": balance_test}


@dataclass
class ExampleConsistencyConfig:
    """Data sets (``mnist``, ``ecg5000``, ``cifar10``), fractions, method settings."""

    datasets: list[str] = field(default_factory=lambda: ["mnist", "ecg5000"])
    mnist: ExampleSet = field(default_factory=lambda: ExampleSet(ModelSetup(**PAPER_MNIST_DAE)))
    ecg5000: ExampleSet = field(default_factory=lambda: ExampleSet(ModelSetup(**PAPER_ECG_AE), balance_test=False))
    cifar10: ExampleSet = field(default_factory=lambda: ExampleSet(ModelSetup(**PAPER_CIFAR_SIMCLR),
                                                                   ["simplex", "dknn"], balance_train=False,
                                                                   balance_test=False))
    cifar10_densenet: ExampleSet = field(default_factory=lambda: ExampleSet(
        ModelSetup(**PAPER_CIFAR_DENSENET), ["simplex", "dknn"], balance_train=False, balance_test=False))
    fashion_mnist: ExampleSet = field(default_factory=lambda: ExampleSet(ModelSetup(**REAL_FASHION_DAE)))  # Fig 10
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    lissa: LissaSettings = field(default_factory=LissaSettings)
    simplex_steps: int = 1000
    simplex_lr: float = 1e-3
    claim_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    use_gpu: bool = False

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_choices(self.datasets, SET_KEYS, "datasets", "keys")
        for key in self.datasets:
            getattr(self, key).validate(key)
        check_fractions(self.fractions, "fractions")
        check_claim_fractions(self.claim_fractions, self.fractions)
        if self.simplex_steps < 1 or self.simplex_lr <= 0:
            raise ConfigError("simplex_steps must be >= 1 and simplex_lr > 0")


class ExampleConsistencyExperiment(LabelFreeExperiment):
    name = "labelfree-example-consistency"
    title = "Label-free example importance: similarity rates of the most and least important examples"
    reproduces = "seed 003, Figure 2 (and Figure 18: DenseNet-121 encoder)"
    version = "1"
    config_class = ExampleConsistencyConfig
    presets = {
        "quick": {"datasets": ["mnist", "ecg5000"], "seeds": [0, 1, 2, 3],
                  "lissa": {"depth": 4, "hessian_batch_size": 16},
                  "mnist": _set(QUICK_MNIST_DAE, list(EXAMPLE_METHODS), 200, 200, True, True),
                  "ecg5000": _set(QUICK_ECG_AE, ["tracin", "simplex", "dknn"], 120, 120, True, False)},
        "paper": {"datasets": ["mnist", "ecg5000", "cifar10", "cifar10_densenet"], "seeds": [0, 1, 2], "use_gpu": True,
                  "lissa": {"depth": 100, "damping": 1.0, "scale": 1000.0, "hessian_batch_size": 200},
                  "mnist": _set(PAPER_MNIST_DAE, list(EXAMPLE_METHODS), 1000, 1000, True, True),
                  "ecg5000": _set(PAPER_ECG_AE, list(EXAMPLE_METHODS), 1000, 1000, True, False),
                  "cifar10": _set(PAPER_CIFAR_SIMCLR, ["simplex", "dknn"], 1000, 1000, False, False),
                  "cifar10_densenet": _set(PAPER_CIFAR_DENSENET, ["simplex", "dknn"], 1000, 1000, False, False)},
        "real": REAL_EXAMPLE,
    }
    preset_deviations = {"real": DEVIATIONS[name]}
    metrics = {**{frac_metric(MOST, f): MetricSpec(f"similarity rate, {pct(f)} most important",
                                                   higher_is_better(MOST)) for f in FRACTIONS},
               **{frac_metric(LEAST, f): MetricSpec(f"similarity rate, {pct(f)} least important",
                                                    higher_is_better(LEAST)) for f in FRACTIONS}}
    tables = (
        TableSpec("Similarity rate of the most important training examples",
                  tuple(frac_metric(MOST, f) for f in FRACTIONS), "seed 003, Figure 2 (no numbers published)"),
        TableSpec("Similarity rate of the least important training examples",
                  tuple(frac_metric(LEAST, f) for f in FRACTIONS), "seed 003, Figure 2 (no numbers published)"),
    )

    def cells(self, cfg: ExampleConsistencyConfig) -> list[Cell]:
        out = []
        for key in cfg.datasets:
            es: ExampleSet = getattr(cfg, key)
            base = {"set": key, "example_set": config_to_dict(es), "fractions": list(cfg.fractions)}
            for method in es.methods:
                params = dict(base)
                if method == "influence_functions":
                    params["lissa"] = config_to_dict(cfg.lissa)
                if method == "simplex":
                    params["simplex"] = {"steps": cfg.simplex_steps, "lr": cfg.simplex_lr}
                out += [self.study_cell(cfg, set_dataset(key, es.model), method, seed, params) for seed in cfg.seeds]
        return out

    def datasets(self, cfg: ExampleConsistencyConfig) -> list[str]:
        return sorted({getattr(cfg, key).model.data for key in cfg.datasets})

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        # lazy: the computation imports torch and the explainers (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.example_cells import example_consistency_records

        return example_consistency_records(cell, ctx)

    def claims(self, cfg: ExampleConsistencyConfig) -> list[Claim]:
        out = []
        for key in cfg.datasets:
            es: ExampleSet = getattr(cfg, key)
            name = set_name(key, es.model.data)
            out.append(Claim(
                f"claim2-{key}",
                f"Claim 2 on {name}: the most important training examples share the test label more often than "
                f"the least important ones (Most > Least) for {', '.join(METHOD_LABELS[m] for m in es.methods)}, "
                f"at {', '.join(pct(f) for f in cfg.claim_fractions)} of the examples",
                _claim2_check(cfg, set_dataset(key, es.model), es), SOURCE + ", Section 4.1 (Figure 2)", study="holds",
                study_quote="All in all, our results validate claim 2 which states that label‐free importance "
                "scores allow us to determine the training examples that explain the test ones best."))
        return out

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import fraction_curves, similarity_rate_figure

        out = []
        frame = results.frame
        for dataset in dict.fromkeys(frame["dataset"]):
            methods = list(dict.fromkeys(frame[frame["dataset"] == dataset]["variant"]))
            fractions, most = fraction_curves(results, dataset, MOST, methods)
            _, least = fraction_curves(results, dataset, LEAST, methods)
            rates = {METHOD_LABELS.get(m, m): {"most": _band(most[m]), "least": _band(least[m])}
                     for m in methods if m in most and m in least}
            if not rates:
                continue
            fig = similarity_rate_figure(rates, fractions, title=dataset)
            path = save_figure(fig, Path(out_dir) / f"similarity_{dataset}.png")
            out.append(Figure(path, f"Example consistency on {dataset}: similarity rate of the most (solid) and "
                                    "least (dashed) important training examples vs % selected, mean over runs "
                                    "(95% band from 3 runs on) (seed 003, Figure 2)"))
        return out

    def describe(self, cfg: ExampleConsistencyConfig) -> dict[str, Any]:
        sets = {key: f"{getattr(cfg, key).model.data} ({getattr(cfg, key).model.model}): "
                     f"{', '.join(getattr(cfg, key).methods)}; {getattr(cfg, key).n_train} train x "
                     f"{getattr(cfg, key).n_test} test" for key in cfg.datasets}
        return {"data_sets": sets,
                "lissa": f"depth {cfg.lissa.depth}, damping {cfg.lissa.damping:g}, scale {cfg.lissa.scale:g}, "
                         f"Hessian batch {cfg.lissa.hessian_batch_size} (study: 100, 1.0, 1000, 200)",
                "simplex": f"Adam lr {cfg.simplex_lr:g}, {cfg.simplex_steps} steps",
                "tracin": "all epoch checkpoints kept in training, weighted by their learning rate",
                "claim_rule": "the shared rule (report: How verdicts are decided); per method, paired by run",
                "deviations": [SIMCLR_DEVIATION] if any(getattr(cfg, k).model.model == "simclr"
                                                        for k in cfg.datasets) else []}


def _band(values: Any) -> Any:
    """(F, runs) values: as they are from 3 runs on (a 95% band), else the mean over runs (F,)."""
    return values if values.shape[1] >= 3 else np.nanmean(values, 1)


def _claim2_check(cfg: ExampleConsistencyConfig, dataset: str, es: ExampleSet):

    def check(results: Results) -> Verdict:
        pairs = {method: [(f"{method}@{pct(f)}", per_seed(results, frac_metric(MOST, f), dataset, method),
                           per_seed(results, frac_metric(LEAST, f), dataset, method)) for f in cfg.claim_fractions]
                 for method in es.methods}
        return per_method(pairs, "similarity rate (Most - Least), paired by run")

    return check
