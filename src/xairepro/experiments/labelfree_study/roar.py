"""ROAR for label-free feature importance (seed 003, Appendix A.3, Figure 9; supports claim 1).

The reconstruction autoencoder of each run (MNIST, d = 4) is explained on its training examples by
label-free Gradient Shap and Integrated Gradients (zero baseline) and by Random; for each fraction p the
top-p% pixels of every training example are removed (set to black, as the original's ``mask * image``),
a fresh copy of the autoencoder is retrained from the explained model's own initial weights on the
modified examples, and its loss on the unmodified test set is recorded (``test_loss@P%``).  0% (nothing
removed) and 100% (every pixel black, whatever the ranking) are trained once per run and shared by the
methods.  Retraining goes through :func:`xairepro.metrics.roar` and the engine; the explained model
through the runner's model cache (the quick preset's is the pretext study's reconstruction autoencoder of
the same run: no extra training).

The original ran one run (seed 1) and 10 epochs per model (``roar_test(n_epochs=10)``); the seed compares
its curve with the original's ("a similar trend") and publishes no numbers.  Claim (the trend of the
original's figure): removing what the label-free methods rank most important raises the retrained
model's test loss more than removing random pixels, decided per method across runs (paired by seed) by the
shared rule (:func:`~xairepro.experiments.labelfree_study.stats.per_method`); the study's verdict: holds.
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
    PAPER_MNIST_DAE, QUICK_MNIST_DAE, SOURCE, LabelFreeExperiment, ModelSetup, check_choices, check_claim_fractions,
    check_fractions, check_seeds, frac_metric, pct, set_name,
)
from xairepro.experiments.labelfree_study.sets import ROAR_PREFIX, RoarSet
from xairepro.experiments.labelfree_study.stats import per_method, per_seed
from xairepro.metrics import higher_is_better
from xairepro.utils import save_figure

__all__ = ["RoarSet", "RoarConfig", "RoarExperiment", "ROAR_METHODS", "PAPER_ROAR_AE", "QUICK_ROAR_AE"]

ROAR_METHODS = ("gradient_shap", "integrated_gradients", "random")
METHOD_LABELS = {"gradient_shap": "Gradient Shap", "integrated_gradients": "Integrated Gradients",
                 "random": "Random"}
#: The study's reading of its Figure 9 (seed 003, Appendix A.3): the original's trend holds.
STUDY_QUOTE = "We compare results with the original paper in Figure 9 and obtain a similar trend."
#: The original's removed percentages (10, 20, 50, 70, 100) and the unmodified training set (0).
FRACTIONS = [0.0, 0.1, 0.2, 0.5, 0.7, 1.0]

#: The original's ROAR autoencoder: MNIST reconstruction (identity pretext), d = 4, batch 200, 10 epochs
#: (``roar_test`` is called with ``n_epochs=10``), Adam lr 1e-3, best weights on held-out loss.
PAPER_ROAR_AE: dict[str, Any] = {**PAPER_MNIST_DAE, "method_options": {"perturbation": "identity"}, "epochs": 10,
                                 "checkpoint_every": 0}
#: Quick: the pretext study's quick reconstruction autoencoder (its ``task_setup(..., "rec")``), so the run's
#: model comes from the cache; ``tests/test_study_labelfree_roar.py`` checks the two stay one model.
QUICK_ROAR_AE: dict[str, Any] = {**QUICK_MNIST_DAE, "method_options": {**QUICK_MNIST_DAE["method_options"],
                                                                        "perturbation": "identity"}}


@dataclass
class RoarConfig:
    """Data sets (key ``mnist``), runs, methods, fractions removed, attribution and claim settings."""

    datasets: list[str] = field(default_factory=lambda: ["mnist"])
    mnist: RoarSet = field(default_factory=lambda: RoarSet(ModelSetup(**PAPER_ROAR_AE)))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(ROAR_METHODS))
    fractions: list[float] = field(default_factory=lambda: list(FRACTIONS))
    ig_steps: int = 50
    gradient_shap_samples: int = 5
    batch_size: int = 500
    claim_fractions: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5])
    use_gpu: bool = False

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_choices(self.datasets, ("mnist",), "datasets", "keys")
        for key in self.datasets:
            getattr(self, key).validate(key)
        check_choices(self.methods, ROAR_METHODS, "methods")
        check_fractions(self.fractions, "fractions", allow_zero=True)
        check_claim_fractions(self.claim_fractions, self.fractions)
        if self.ig_steps < 1 or self.gradient_shap_samples < 1 or self.batch_size < 1:
            raise ConfigError("ig_steps, gradient_shap_samples and batch_size must be >= 1")


def _set(model: dict[str, Any], retrain_epochs: int | None, n_train: int | None) -> dict[str, Any]:
    return {"model": model, "retrain_epochs": retrain_epochs, "n_train": n_train, "n_test": None}


class RoarExperiment(LabelFreeExperiment):
    name = "labelfree-roar"
    title = "ROAR: test loss of the autoencoder retrained without the most important features"
    reproduces = "seed 003, Figure 9 (Appendix A.3)"
    version = "1"
    config_class = RoarConfig
    presets = {
        "quick": {"datasets": ["mnist"], "seeds": [0, 1, 2, 3], "ig_steps": 16, "fractions": [0.0, 0.1, 0.2, 0.5, 1.0],
                  "mnist": _set(QUICK_ROAR_AE, 2, 600)},
        "paper": {"datasets": ["mnist"], "seeds": [0, 1, 2], "ig_steps": 50, "use_gpu": True,
                  "mnist": _set(PAPER_ROAR_AE, None, None)},
    }
    metrics = {frac_metric(ROAR_PREFIX, f): MetricSpec(f"test loss, {pct(f)} removed", higher_is_better(ROAR_PREFIX))
               for f in FRACTIONS}
    tables = (TableSpec("Test loss of the autoencoder retrained without the top features (ROAR)",
                        tuple(frac_metric(ROAR_PREFIX, f) for f in FRACTIONS),
                        "seed 003, Figure 9 (curves only, no numbers published)"),)

    def cells(self, cfg: RoarConfig) -> list[Cell]:
        out = []
        for key in cfg.datasets:
            rs: RoarSet = getattr(cfg, key)
            params = {"set": key, "roar_set": config_to_dict(rs), "methods": list(cfg.methods),
                      "fractions": list(cfg.fractions), "ig_steps": cfg.ig_steps,
                      "gradient_shap_samples": cfg.gradient_shap_samples, "batch_size": cfg.batch_size}
            out += [self.study_cell(cfg, rs.model.data, "methods", seed, params) for seed in cfg.seeds]
        return out

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        # lazy: the computation imports torch, the engine and the explainers (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.roar_cells import roar_records

        return roar_records(cell, ctx)

    def claims(self, cfg: RoarConfig) -> list[Claim]:
        out = []
        methods = [METHOD_LABELS[m] for m in cfg.methods if m != "random"]
        for key in cfg.datasets:
            name = set_name(key, getattr(cfg, key).model.data)
            out.append(Claim(
                f"roar-{key}",
                f"ROAR on {name} (the original's trend, which the seed reproduces): retraining without the pixels "
                f"label-free {' and '.join(methods)} rank most important raises the test loss more than removing "
                f"random pixels, at {', '.join(pct(f) for f in cfg.claim_fractions)} removed",
                _roar_check(cfg, getattr(cfg, key)), SOURCE + ", Appendix A.3 (Figure 9)", study="holds",
                study_quote=STUDY_QUOTE))
        return out

    def figures(self, results: Results, out_dir: Path) -> list[Figure]:
        # lazy: matplotlib, only when drawing (listing experiments stays cheap)
        from xairepro.experiments.labelfree_study.figures import curve_figure, fraction_curves

        out = []
        frame = results.frame
        for dataset in dict.fromkeys(frame["dataset"]):
            variants = list(dict.fromkeys(frame[frame["dataset"] == dataset]["variant"]))
            fractions, curves = fraction_curves(results, dataset, ROAR_PREFIX, variants)
            if not curves:
                continue
            # a band over 2 runs (t = 12.7) says nothing: bands from 3 runs on
            fig = curve_figure({METHOD_LABELS.get(v, v): a if a.shape[1] >= 3 else np.nanmean(a, 1)
                                for v, a in curves.items()}, fractions, ylabel="Test loss after retraining",
                               xlabel="% of features removed", title=dataset)
            path = save_figure(fig, Path(out_dir) / f"roar_{dataset}.png")
            out.append(Figure(path, f"ROAR on {dataset}: test loss of the autoencoder retrained without the top "
                                    "features vs % removed, mean over runs (95% band from 3 runs on) "
                                    "(seed 003, Figure 9)"))
        return out

    def describe(self, cfg: RoarConfig) -> dict[str, Any]:
        sets = {}
        for key in cfg.datasets:
            rs: RoarSet = getattr(cfg, key)
            sets[key] = (f"{rs.model.data} ({rs.model.model}, {rs.model.method_options.get('perturbation')} "
                         f"autoencoder, {rs.model.epochs} epochs); each retraining {rs.retrain_epochs or rs.model.epochs}"
                         f" epochs from the explained model's initial weights, no early stopping; "
                         f"{rs.n_train or 'all'} training / {rs.n_test or 'all'} test examples")
        return {"data_sets": sets, "removal": "top-p% pixels set to 0 (the original's mask * image)",
                "attribution": f"label-free IG {cfg.ig_steps} steps, GradientShap {cfg.gradient_shap_samples} "
                               "samples, zero baseline, on the training examples",
                "claim_rule": "the shared rule (report: How verdicts are decided); per method, method - Random "
                              "test loss paired by run",
                "deviations": "; ".join(_deviations(cfg))}


def _deviations(cfg: RoarConfig) -> list[str]:
    """How this configuration differs from the original ROAR test (``roar_test``: one run, MNIST, 10 epochs
    per model, all 60,000 training images, IG 50 steps, the best epoch on the test loss)."""
    out = [f"{len(cfg.seeds)} runs (the original ran one; a claim needs two)",
           "each retraining runs its epochs without early stopping (the original kept its best epoch on the test "
           "loss; no held-out set is modified alike)"]
    for key in cfg.datasets:
        rs: RoarSet = getattr(cfg, key)
        if rs.model.data != key:
            out.append(f"the {rs.model.data} stand-in for {set_name(key, key)} (the pretext study's reconstruction "
                       f"autoencoder, {rs.model.epochs} epochs, batch {rs.model.batch_size})")
        elif rs.model.epochs != PAPER_ROAR_AE["epochs"]:
            out.append(f"{rs.model.epochs} epochs for the explained model (the original: 10)")
        retrain = rs.retrain_epochs or rs.model.epochs
        if retrain != PAPER_ROAR_AE["epochs"]:
            out.append(f"{retrain} epochs per retraining (the original: 10)")
        if rs.n_train is not None:
            out.append(f"features removed from {rs.n_train} training examples, the others left out (the original: "
                       "the whole training set)")
    if cfg.fractions != FRACTIONS:
        out.append(f"removed {', '.join(pct(f) for f in cfg.fractions)} (the original: 0, 10, 20, 50, 70, 100%)")
    if cfg.ig_steps != 50:
        out.append(f"IG {cfg.ig_steps} steps (captum's default 50)")
    return out


def _roar_check(cfg: RoarConfig, rs: RoarSet):
    dataset = rs.model.data
    methods = [m for m in cfg.methods if m != "random"]

    def check(results: Results) -> Verdict:
        if "random" not in cfg.methods or not methods:
            return Verdict.inconclusive("not-run", "ROAR's claim needs the Random control and at least one method")
        pairs = {method: [(f"{method}@{pct(f)}", per_seed(results, frac_metric(ROAR_PREFIX, f), dataset, method),
                           per_seed(results, frac_metric(ROAR_PREFIX, f), dataset, "random"))
                          for f in cfg.claim_fractions] for method in methods}
        # removing informative features hurts the retrained model more: a higher test loss is the wanted sign
        return per_method(pairs, "test loss after retraining (method - Random), paired by run", want=1)

    return check
