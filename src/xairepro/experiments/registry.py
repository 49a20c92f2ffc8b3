"""Registry of experiments: ``xairepro reproduce STUDY`` and ``xairepro list`` read it.

Built-in experiments are named in ``BUILTIN_EXPERIMENTS`` as ``"module:Class"`` and imported on first
use; users and tests add their own with :func:`register_experiment`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Sequence

from xairepro.errors import UsageError
from xairepro.experiments.base import Experiment

__all__ = [
    "BUILTIN_EXPERIMENTS", "register_experiment", "unregister_experiment", "get_experiment",
    "list_experiments", "select_experiments",
]

#: name -> "module:Class" of the experiments shipped with xairepro, in the order they run.
BUILTIN_EXPERIMENTS: dict[str, str] = {
    "smoke": "xairepro.experiments.smoke:SmokeExperiment",
    "labelfree-feature-consistency": "xairepro.experiments.labelfree_study.feature_consistency:FeatureConsistencyExperiment",
    "labelfree-example-consistency": "xairepro.experiments.labelfree_study.example_consistency:ExampleConsistencyExperiment",
    "labelfree-pretext": "xairepro.experiments.labelfree_study.pretext:PretextExperiment",
    "labelfree-vae": "xairepro.experiments.labelfree_study.disentangled_vae:DisentangledVaeExperiment",
    "labelfree-roar": "xairepro.experiments.labelfree_study.roar:RoarExperiment",
    "lico-accuracy": "xairepro.experiments.lico_study.accuracy:LicoAccuracyExperiment",
    "lico-insdel": "xairepro.experiments.lico_study.insdel:LicoInsDelExperiment",
    "lico-iou": "xairepro.experiments.lico_study.iou:LicoIouExperiment",
    "lico-tau": "xairepro.experiments.lico_study.temperature:LicoTemperatureExperiment",
    "lico-variants": "xairepro.experiments.lico_study.variants:LicoVariantsExperiment",
    "tda-benchmark": "xairepro.experiments.tda_benchmark.experiment:TdaBenchmarkExperiment",
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
    """Experiments named (by experiment or study name) or, with no names, all offering ``preset`` that run
    by default (``Experiment.run_by_default``; the others run only when named).

    A named experiment without ``preset`` is an error; so is a selection that ends up empty.
    """
    exps = list_experiments()
    if not names:
        chosen = [e for e in exps if preset in e.presets and e.run_by_default]
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
