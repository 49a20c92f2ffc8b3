"""One training engine (lightning-fabric): schedules, EMA, early stopping, checkpoints, resume, objectives.

    from xairepro.train import Engine, TrainConfig, ClassifierObjective, save_model, load_model
    result = Engine(TrainConfig(epochs=5), out_dir="runs/a").fit(model, ClassifierObjective(), train, val)

Names are exported lazily, so that ``xairepro.train.config`` (the configs alone, dataclasses) imports
without torch and lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "augmentation_names": "xairepro.train.augment",
    "build_augmentation": "xairepro.train.augment",
    "register_augmentation": "xairepro.train.augment",
    "checkpoint_weights": "xairepro.train.checkpoint",
    "load_checkpoint": "xairepro.train.checkpoint",
    "load_model": "xairepro.train.checkpoint",
    "read_model_metadata": "xairepro.train.checkpoint",
    "save_model": "xairepro.train.checkpoint",
    "EarlyStoppingConfig": "xairepro.train.config",
    "OptimizerConfig": "xairepro.train.config",
    "ScheduleConfig": "xairepro.train.config",
    "TrainConfig": "xairepro.train.config",
    "EarlyStopping": "xairepro.train.early_stopping",
    "EMA": "xairepro.train.ema",
    "Engine": "xairepro.train.engine",
    "TrainResult": "xairepro.train.engine",
    "build_optimizer": "xairepro.train.engine",
    "AutoencoderObjective": "xairepro.train.objectives",
    "ClassifierObjective": "xairepro.train.objectives",
    "Objective": "xairepro.train.objectives",
    "ObjectiveBase": "xairepro.train.objectives",
    "lr_factor": "xairepro.train.schedules",
    "SimCLRObjective": "xairepro.train.simclr",
    "nt_xent": "xairepro.train.simclr",
    "BetaVAEObjective": "xairepro.train.vae",
    "TCVAEObjective": "xairepro.train.vae",
}

__all__ = [
    "Engine", "TrainResult", "TrainConfig", "OptimizerConfig", "ScheduleConfig", "EarlyStoppingConfig",
    "Objective", "ObjectiveBase", "ClassifierObjective", "AutoencoderObjective",
    "BetaVAEObjective", "TCVAEObjective", "SimCLRObjective", "nt_xent",
    "EMA", "EarlyStopping", "lr_factor", "build_optimizer",
    "save_model", "load_model", "read_model_metadata", "load_checkpoint", "checkpoint_weights",
    "register_augmentation", "build_augmentation", "augmentation_names",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xairepro.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
