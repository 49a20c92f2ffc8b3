"""Settings shared by the experiments of the Label-Free XAI study (seed 003); light imports only.

A :class:`ModelSetup` says how one model of the study is trained (data set, model, method, engine
settings).  Experiments that name equal setups share the trained model through the runner's model cache
(e.g. feature and example consistency use the very same MNIST autoencoder).  The presets below are the
single source of the study's training settings: ``PAPER_*`` follow the original code (Crabbé & van der
Schaar 2022) as the reproduction ran it; ``QUICK_*`` are small stand-ins for a 2-core CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from xairepro.errors import ConfigError, UsageError
from xairepro.experiments.base import Cell, Experiment
from xairepro.experiments.trained_models import TrainingSection
from xairepro.train.augment import check_augmentation
from xairepro.train.config import TrainConfig

__all__ = [
    "STUDY", "SOURCE", "DATA_SEED", "ModelSetup", "LabelFreeExperiment", "check_fractions", "check_seeds",
    "check_choices", "check_claim_fractions", "set_name", "set_dataset", "ENCODER_VARIANTS", "SIMCLR_DEVIATION",
    "MNIST_VAE_DEVIATION",
    "pct", "STUDY_DATA", "stand_in_note", "frac_metric", "parse_frac_metric",
]

STUDY = "labelfree"
SOURCE = "seed 003"
#: Seed of the data splits and of generated data: fixed, so every run sees the same data.
DATA_SEED = 0

#: Display names of the study's data sets (the key a config uses) and the stand-ins quick runs use.
STUDY_DATA: dict[str, str] = {
    "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "ecg5000": "ECG5000", "cifar10": "CIFAR-10",
    "dsprites": "dSprites",
}
_STAND_INS: dict[str, str] = {"digits": "mnist", "ecg-gen": "ecg5000", "dsprites-gen": "dsprites"}
#: Set keys that change only the encoder of a study set: key -> (the set's key, the encoder's label).
ENCODER_VARIANTS: dict[str, tuple[str, str]] = {"cifar10_densenet": ("cifar10", "DenseNet-121")}


def stand_in_note(study_key: str, data: str) -> str:
    """A reference note saying what was published and what the configured run compares."""
    published = STUDY_DATA.get(study_key, study_key)
    if data == study_key:
        return f"published on {published}"
    return f"published on {published}; this run compares the {data} stand-in"


def pct(fraction: float) -> str:
    """0.05 -> '5%', 0.125 -> '12.5%' (metric-name suffixes)."""
    value = 100 * float(fraction)
    return f"{value:.0f}%" if abs(value - round(value)) < 1e-9 else f"{value:g}%"


def frac_metric(prefix: str, fraction: float) -> str:
    """Metric name of a quantity at a fraction: ``latent_shift@5%``."""
    return f"{prefix}@{pct(fraction)}"


def parse_frac_metric(metric: str, prefix: str) -> float | None:
    """The fraction in ``prefix@P%`` (0.05 for ``@5%``), None for another metric."""
    head, sep, tail = metric.partition("@")
    if head != prefix or not sep or not tail.endswith("%"):
        return None
    try:
        return float(tail[:-1]) / 100
    except ValueError:
        return None


def check_fractions(values: list[float], what: str, *, allow_zero: bool = False) -> None:
    if not values:
        raise ConfigError(f"{what} must not be empty")
    low_ok = (lambda f: f >= 0) if allow_zero else (lambda f: f > 0)
    bad = [f for f in values if not (low_ok(f) and f <= 1) or math.isnan(f)]
    if bad:
        raise ConfigError(f"{what} must lie in {'[0' if allow_zero else '(0'}, 1] (0.05 = 5%), got {bad}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{what} has duplicates: {values}")


def check_choices(values: list[str], allowed: Sequence[str], what: str, noun: str = "values") -> None:
    """``values`` must be a non-empty list of distinct members of ``allowed``."""
    if not values or any(v not in allowed for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{what} must be distinct {noun} of {', '.join(allowed)}; got {values}")


def check_claim_fractions(claim_fractions: list[float], fractions: list[float]) -> None:
    """The fractions a claim reads must be valid and among the fractions the cells compute."""
    check_fractions(claim_fractions, "claim_fractions")
    missing = [f for f in claim_fractions if f not in fractions]
    if missing:
        raise ConfigError(f"claim_fractions {missing} are not among fractions {fractions}")


def set_name(key: str, data: str) -> str:
    """A data set as the study names it, with the stand-in that replaced it: "MNIST (digits)"; a set that
    changes only the encoder says which: "CIFAR-10, DenseNet-121 encoder"."""
    base, encoder = ENCODER_VARIANTS.get(key, (key, ""))
    return STUDY_DATA[base] + (f" ({data})" if data != base else "") + (f", {encoder} encoder" if encoder else "")


def set_dataset(key: str, setup: ModelSetup) -> str:
    """The ``dataset`` of a set's cells and records: its data set's name, plus the backbone for a set that
    changes only the encoder (``cifar10-densenet121``), so its rows never mix with the set's own."""
    if key in ENCODER_VARIANTS:
        return f"{setup.data}-{setup.model_kwargs.get('backbone', setup.model)}"
    return setup.data


def check_seeds(seeds: list[int], what: str = "seeds") -> None:
    if not seeds:
        raise ConfigError(f"{what} must not be empty")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"{what} must be distinct non-negative integers, got {seeds}")


@dataclass
class ModelSetup(TrainingSection):
    """How one model of the study is trained: data set, model, method and engine settings.

    ``data_options`` go to the loader (``subset``: a seeded count or fraction of the training split);
    ``patience``: early stopping on the validation loss after that many epochs without improvement
    (0: off), best weights restored; ``checkpoint_every``: keep epoch checkpoints (TracIn uses them).
    The optimiser, schedule and batch fields are :class:`~xairepro.experiments.trained_models.TrainingSection`'s
    (the engine's defaults unless set here).
    """

    data: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    model: str = "mnist-ae"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = "ae"
    method_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 200
    optimizer: str = "adam"      # the original code's Adam, lr 1e-3, weight decay 1e-5, no schedule
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: str = "none"
    patience: int = 10
    checkpoint_every: int = TrainConfig.checkpoint_every

    def validate(self, where: str = "model") -> None:
        if not self.data or not self.model or not self.method:
            raise ConfigError(f"{where}: data, model and method must be named")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key} must be >= 1, got {getattr(self, key)}")
        if self.patience < 0 or self.checkpoint_every < 0:
            raise ConfigError(f"{where}: patience and checkpoint_every must be >= 0")
        # lazy: the training backend imports torch; study configs import this module while listing
        from xairepro.training import check_run_parts

        try:
            check_run_parts(self.data, self.data_options, self.model, self.method, self.method_options)
            check_augmentation(self.augment)
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc}") from None


class LabelFreeExperiment(Experiment):
    """Base of the study's experiments: study name, GPU request in the paper preset."""

    study: ClassVar[str] = STUDY

    def study_cell(self, cfg: Any, dataset: str, variant: str, seed: int, params: dict[str, Any]) -> Cell:
        gpus = 1.0 if getattr(cfg, "use_gpu", False) else 0.0
        return self.cell(dataset, variant, seed, params, num_gpus=gpus)


#: Where the paper preset departs from the seed (docs/decisions.md, "Preset deviations"), shown in provenance.
SIMCLR_DEVIATION = ("CIFAR-10 SimCLR encoders (ResNet-18; DenseNet-121 for the reproduction's Figure 5c) trained from "
                    "scratch with SimCLR: the seed's Appendix A.1 calls the encoder 'pre-trained' without naming "
                    "weights, and no pretrained weights are loaded")
MNIST_VAE_DEVIATION = ("MNIST VAEs train on the official 60,000 / 10,000 train / test split; the seed says a 90% / "
                       "10% split (Appendix A.1)")


# ------------------------------------------------------------------------------------------ presets
# Training settings of the study's models (original code: Adam lr 1e-3, weight decay 1e-5, early stopping
# after 10 epochs without improvement).  Dicts, so that presets can nest them as they are.

#: MNIST denoising autoencoder of the consistency checks (x + 0.3 N(0, 1), d = 4, 100 epochs, batch 200,
#: checkpoints every 10 epochs for TracIn).
PAPER_MNIST_DAE: dict[str, Any] = {
    "data": "mnist", "data_options": {}, "model": "mnist-ae", "model_kwargs": {"latent_dim": 4},
    "method": "ae", "method_options": {"perturbation": "noise", "noise_std": 0.3}, "epochs": 100,
    "batch_size": 200, "patience": 10, "checkpoint_every": 10,
}
#: Quick stand-in: bundled digits at 28 px, a few epochs, a checkpoint other epoch.
QUICK_MNIST_DAE: dict[str, Any] = {
    **PAPER_MNIST_DAE, "data": "digits", "data_options": {"size": 28}, "epochs": 8, "batch_size": 32,
    "patience": 0, "checkpoint_every": 2,
}
#: ECG5000 recurrent autoencoder (embedding 64, L1 reconstruction summed over time, 150 epochs, batch 20).
PAPER_ECG_AE: dict[str, Any] = {
    "data": "ecg5000", "data_options": {}, "model": "lstm-ae", "model_kwargs": {"embedding_dim": 64},
    "method": "ae", "method_options": {"perturbation": "identity", "error": "l1", "reduction": "sum"},
    "epochs": 150, "batch_size": 20, "patience": 10, "checkpoint_every": 10,
}
#: Quick stand-in: generated ECG-like beats, a smaller LSTM (embedding 16), 1,000 beats, a few epochs.
QUICK_ECG_AE: dict[str, Any] = {
    **PAPER_ECG_AE, "data": "ecg-gen", "data_options": {"n": 1000}, "model_kwargs": {"embedding_dim": 16},
    "epochs": 4, "batch_size": 32, "patience": 0, "checkpoint_every": 1,
}
#: CIFAR-10 SimCLR (ResNet-18, projection 128, SGD lr 0.6 momentum 0.9, wd 1e-6, temperature 0.5,
#: batch 512, 100 epochs, cosine schedule).
PAPER_CIFAR_SIMCLR: dict[str, Any] = {
    "data": "cifar10", "data_options": {}, "model": "simclr",
    "model_kwargs": {"backbone": "resnet18", "projection_dim": 128}, "method": "simclr",
    "method_options": {"temperature": 0.5}, "epochs": 100, "batch_size": 512, "optimizer": "sgd", "lr": 0.6,
    "momentum": 0.9, "weight_decay": 1e-6, "schedule": "cosine", "patience": 0, "checkpoint_every": 0,
}
#: The reproduction's DenseNet-121 SimCLR encoder (its Section 4.2, Figures 5c and 18): the same training
#: (Table 4 lists one set of SimCLR hyperparameters for both encoders), the backbone swapped.
PAPER_CIFAR_DENSENET: dict[str, Any] = {
    **PAPER_CIFAR_SIMCLR, "model_kwargs": {**PAPER_CIFAR_SIMCLR["model_kwargs"], "backbone": "densenet121"},
}
