"""One training engine (lightning-fabric): schedules, EMA, early stopping, checkpoints, resume, objectives.

    from xairepro.train import Engine, TrainConfig, ClassifierObjective, save_model, load_model
    result = Engine(TrainConfig(epochs=5), out_dir="runs/a").fit(model, ClassifierObjective(), train, val)
"""

from xairepro.train.augment import augmentation_names, build_augmentation, register_augmentation
from xairepro.train.checkpoint import (
    checkpoint_weights,
    load_checkpoint,
    load_model,
    read_model_metadata,
    save_model,
)
from xairepro.train.config import EarlyStoppingConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from xairepro.train.early_stopping import EarlyStopping
from xairepro.train.ema import EMA
from xairepro.train.engine import Engine, TrainResult, build_optimizer
from xairepro.train.objectives import (
    AutoencoderObjective,
    ClassifierObjective,
    Objective,
    ObjectiveBase,
)
from xairepro.train.schedules import lr_factor
from xairepro.train.simclr import SimCLRObjective, nt_xent
from xairepro.train.vae import BetaVAEObjective, TCVAEObjective

__all__ = [
    "Engine", "TrainResult", "TrainConfig", "OptimizerConfig", "ScheduleConfig", "EarlyStoppingConfig",
    "Objective", "ObjectiveBase", "ClassifierObjective", "AutoencoderObjective",
    "BetaVAEObjective", "TCVAEObjective", "SimCLRObjective", "nt_xent",
    "EMA", "EarlyStopping", "lr_factor", "build_optimizer",
    "save_model", "load_model", "read_model_metadata", "load_checkpoint", "checkpoint_weights",
    "register_augmentation", "build_augmentation", "augmentation_names",
]
