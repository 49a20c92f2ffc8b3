"""Registry of experiments: ``xairepro reproduce STUDY`` and ``xairepro list`` read it.

Built-in experiments are named in ``BUILTIN_EXPERIMENTS`` as ``"module:Class"`` and imported on first
use; users and tests add their own with :func:`register_experiment`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.errors import UsageError
from xairepro.experiments.base import (
    Cell, Claim, Context, Experiment, MetricSpec, Record, Results, TableSpec, Verdict,
)

__all__ = [
    "BUILTIN_EXPERIMENTS", "register_experiment", "unregister_experiment", "get_experiment",
    "list_experiments", "select_experiments", "SmokeExperiment",
]

#: name -> "module:Class" of the experiments shipped with xairepro, in the order they run.
BUILTIN_EXPERIMENTS: dict[str, str] = {
    "smoke": "xairepro.experiments.registry:SmokeExperiment",
    "labelfree-feature-consistency": "xairepro.experiments.labelfree_study.feature_consistency:FeatureConsistencyExperiment",
    "labelfree-example-consistency": "xairepro.experiments.labelfree_study.example_consistency:ExampleConsistencyExperiment",
    "labelfree-pretext": "xairepro.experiments.labelfree_study.pretext:PretextExperiment",
    "labelfree-vae": "xairepro.experiments.labelfree_study.disentangled_vae:DisentangledVaeExperiment",
    "lico-accuracy": "xairepro.experiments.lico_study.accuracy:LicoAccuracyExperiment",
    "lico-insdel": "xairepro.experiments.lico_study.insdel:LicoInsDelExperiment",
    "lico-iou": "xairepro.experiments.lico_study.iou:LicoIouExperiment",
    "lico-tau": "xairepro.experiments.lico_study.temperature:LicoTemperatureExperiment",
}

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_registry: dict[str, Experiment] = {}
_builtins_loaded = False


def _check(exp: Experiment) -> None:
    if not _NAME.match(exp.name or ""):
        raise ValueError(f"experiment name {exp.name!r} must start with a letter and hold only "
                         "letters, digits, '-' and '_'")
    if not dataclasses.is_dataclass(getattr(exp, "config_class", None)):
        raise ValueError(f"experiment {exp.name!r}: config_class must be a dataclass")
    if not exp.presets:
        raise ValueError(f"experiment {exp.name!r} defines no preset")


def register_experiment(experiment: Experiment | type[Experiment], *, replace: bool = False) -> Experiment:
    """Add an experiment (an instance or a class without constructor arguments); returns the instance."""
    exp = experiment() if isinstance(experiment, type) else experiment
    _check(exp)
    _load_builtins()
    if exp.name in _registry and not replace:
        raise ValueError(f"an experiment named {exp.name!r} is already registered (pass replace=True)")
    _registry[exp.name] = exp
    return exp


def unregister_experiment(name: str) -> None:
    """Remove an experiment (no error if it is not registered)."""
    _registry.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for name, target in BUILTIN_EXPERIMENTS.items():
        module, _, attr = target.partition(":")
        exp = getattr(importlib.import_module(module), attr)()
        _check(exp)
        _registry.setdefault(name, exp)


def list_experiments() -> list[Experiment]:
    """Every registered experiment, built-ins first, in registration order."""
    _load_builtins()
    return list(_registry.values())


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ``UsageError`` listing the known names otherwise."""
    _load_builtins()
    if name not in _registry:
        known = ", ".join(_registry) or "none"
        raise UsageError(f"unknown experiment or study {name!r} (known: {known})")
    return _registry[name]


def select_experiments(names: Sequence[str], preset: str) -> list[Experiment]:
    """Experiments named (by experiment or study name) or, with no names, all offering ``preset``.

    A named experiment without ``preset`` is an error; so is a selection that ends up empty.
    """
    exps = list_experiments()
    if not names:
        chosen = [e for e in exps if preset in e.presets]
        if not chosen:
            offered = sorted({p for e in exps for p in e.presets})
            raise UsageError(f"no registered experiment offers preset {preset!r} (presets: {', '.join(offered)})")
        return chosen
    chosen: list[Experiment] = []
    for name in names:
        matched = [e for e in exps if e.name == name or (e.study or e.name) == name]
        if not matched:
            get_experiment(name)  # raises with the list of known names
        for exp in matched:
            if preset not in exp.presets:
                raise UsageError(f"experiment {exp.name!r} has no preset {preset!r} "
                                 f"(presets: {', '.join(sorted(exp.presets))})")
            if exp not in chosen:
                chosen.append(exp)
    return chosen


# --------------------------------------------------------------------------------------------------
# The engine smoke run as an experiment: digits classifier + autoencoder trained through the engine.


@dataclass
class SmokeConfig:
    """Seeds of the engine smoke run (one cell per seed)."""

    seeds: list[int] = field(default_factory=lambda: [0])

    def validate(self) -> None:
        if not self.seeds:
            raise UsageError("smoke: seeds must not be empty")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise UsageError(f"smoke: seeds must be distinct non-negative integers, got {list(self.seeds)}")


def _classifier_learns(results: Results) -> Verdict:
    acc = results.mean("classifier.test_accuracy")
    return Verdict.decide(acc > SMOKE_MIN_ACCURACY, f"test accuracy {acc:.3f} vs threshold {SMOKE_MIN_ACCURACY}",
                          accuracy=acc, threshold=SMOKE_MIN_ACCURACY)


def _autoencoder_learns(results: Results) -> Verdict:
    first, last = results.mean("autoencoder.first_train_loss"), results.mean("autoencoder.last_train_loss")
    return Verdict.decide(last < first, f"training loss {first:.4g} -> {last:.4g}", first=first, last=last)


#: The smoke classifier must beat this digits test accuracy (chance is 0.1).
SMOKE_MIN_ACCURACY = 0.8


class SmokeExperiment(Experiment):
    """``xairepro.experiments.smoke.run_smoke`` per seed: checks the stack end to end on bundled digits."""

    name = "smoke"
    title = "Engine smoke run: digits classifier and denoising autoencoder"
    study = "smoke"
    reproduces = "no published table (end-to-end check of data, models and the training engine)"
    config_class = SmokeConfig
    presets = {"quick": {}}
    metrics = {
        "classifier.test_accuracy": MetricSpec("test accuracy", higher_is_better=True),
        "classifier.test_loss": MetricSpec("test loss", higher_is_better=False),
        "autoencoder.test_mse": MetricSpec("test MSE", higher_is_better=False),
        "autoencoder.first_train_loss": MetricSpec("first-epoch train loss", higher_is_better=False),
        "autoencoder.last_train_loss": MetricSpec("last-epoch train loss", higher_is_better=False),
    }
    tables = (
        TableSpec("Digits classifier", ("classifier.test_accuracy", "classifier.test_loss")),
        TableSpec("Denoising autoencoder", ("autoencoder.test_mse", "autoencoder.first_train_loss",
                                            "autoencoder.last_train_loss")),
    )

    def cells(self, cfg: SmokeConfig) -> list[Cell]:
        return [self.cell("digits", "engine", seed) for seed in cfg.seeds]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        from xairepro.experiments.smoke import run_smoke

        values = run_smoke(Path(ctx.cache_dir), seed=cell.seed)
        return [cell.record(metric, float(value)) for metric, value in sorted(values.items())]

    def claims(self, cfg: SmokeConfig) -> list[Claim]:
        return [
            Claim("classifier-learns", f"The digits classifier beats {SMOKE_MIN_ACCURACY:.0%} test accuracy",
                  _classifier_learns),
            Claim("autoencoder-learns", "The denoising autoencoder's training loss decreases",
                  _autoencoder_learns),
        ]

    def describe(self, cfg: Any) -> dict[str, Any]:
        return {"data": "scikit-learn digits (bundled)", "models": "small-cnn classifier, mnist-ae (d=4)"}
