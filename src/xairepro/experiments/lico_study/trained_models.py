"""The trained models of the LICO study (seed 000): training settings, run configs, test accuracy, test images.

Every experiment of the study asks for its models with :func:`trained_model`; through the shared front-end
(:mod:`xairepro.experiments.trained_models`) the model's cache key is its resolved run config, so the
accuracy table and the insertion/deletion table use the very same trained models, whichever runs first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xairepro.data import dataset_info, load
from xairepro.errors import ConfigError
from xairepro.experiments.lico_study.sets import StudySet, variant_method
from xairepro.experiments.trained_models import TrainedModel, TrainingSection
from xairepro.experiments.trained_models import trained_model as cached_model
from xairepro.train.augment import check_augmentation
from xairepro.train.config import TrainConfig
from xairepro.utils import atomic_write_text

if TYPE_CHECKING:  # the training backend is imported where a run is made: listing experiments stays cheap
    from xairepro.training import RunConfig, RunOutcome

__all__ = [
    "StudyTraining", "DATA_SEED", "run_config", "StudyModel", "trained_model", "load_images", "evaluate_accuracy",
]

#: Seed of the data splits (and of generated data): fixed, so every training seed sees the same data.
DATA_SEED = 0


@dataclass
class StudyTraining(TrainingSection):
    """Training settings shared by every model of the study (Table 7 in the paper preset).

    ``augment``: ``"dataset"`` takes the data set's own training augmentation (crop + flip with reflect
    padding 4 for CIFAR and Imagenette, ImageNet-style resized crop + flip for PartImageNet), or name one
    (``none``, ``crop-flip`` ...).  ``epochs``: ``None`` takes each data set's own (200 CIFAR, 90
    Imagenette).  The learning-rate schedule is applied per step.  Fields not set here are the engine's
    defaults (:class:`~xairepro.experiments.trained_models.TrainingSection`).
    """

    optimizer: str = "sgd"
    lr: float = 0.03
    weight_decay: float = 1e-4
    batch_size: int = 64
    schedule: str = "lico-cosine"
    augment: str = "dataset"
    epochs: int | None = None
    ema: float | None = TrainConfig.ema
    precision: str = TrainConfig.precision
    num_workers: int = TrainConfig.num_workers

    def validate(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"training.epochs must be >= 1 or null, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"training.batch_size must be >= 1, got {self.batch_size}")
        if self.augment != "dataset":
            try:
                check_augmentation(self.augment)
            except ConfigError as exc:
                raise ConfigError(f"training.augment: {exc} or 'dataset'") from None


def _augment(name: str, spec: StudySet) -> str:
    if name != "dataset":
        return name
    return dataset_info(spec.data).augmentation or "none"


def run_config(spec: StudySet, variant: str, seed: int, training: StudyTraining, lico: Mapping[str, Any], *,
               device: str = "cpu") -> RunConfig:
    """The :class:`~xairepro.training.RunConfig` of ``variant`` on ``spec`` with seed ``seed`` on ``device``."""
    from xairepro.training import DataSection, ModelSection, RunConfig  # lazy: start-up (see TYPE_CHECKING)

    method, options = variant_method(variant, lico)
    train = training.train_config(epochs=training.epochs or spec.epochs, seed=seed, device=device,
                                  augment=_augment(training.augment, spec), precision=training.precision,
                                  ema=training.ema, num_workers=training.num_workers)
    cfg = RunConfig(data=DataSection(name=spec.data, seed=DATA_SEED, options=dict(spec.options)),
                    model=ModelSection(name=spec.model, kwargs=dict(spec.model_kwargs)),
                    method=method, method_options=options, train=train)
    return cfg.validate()


@dataclass
class StudyModel(TrainedModel):
    """A trained model of the study in the cache, with its test accuracy (%, full test split), the size of
    that split and the final training metrics (``train/tau``, ``train/mm`` ...)."""

    accuracy: float = 0.0
    n_test: int = 0
    final: dict[str, float] = field(default_factory=dict)


def load_images(spec: StudySet, data_dir: str | os.PathLike[str] | None, n: int | None = None, *,
                masks: bool = False, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first ``n`` images (all when None) of ``split`` in [0, 1], their labels, and masks if asked."""
    ds = load(spec.data, split, data_dir, seed=DATA_SEED, **spec.eval_options())
    idx = list(range(len(ds) if n is None else min(int(n), len(ds))))
    if hasattr(ds, "batch"):
        x, y = ds.batch(idx)
    else:
        pairs = [ds[i] for i in idx]
        x, y = torch.stack([p[0] for p in pairs]), torch.as_tensor([int(p[1]) for p in pairs])
    seg = None
    if masks:
        if getattr(ds.info, "task", "") != "segmentation":
            raise ConfigError(f"data set {spec.data!r} has no segmentation masks (IoU needs them)")
        seg = ds.batch_masks(idx) if hasattr(ds, "batch_masks") else ds.masks[idx]
        seg = torch.as_tensor(seg).bool()
    return x.float(), torch.as_tensor(y).long(), seg


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, spec: StudySet, data_dir: str | os.PathLike[str] | None,
                      device: str | torch.device = "cpu", batch_size: int = 256) -> tuple[float, int]:
    """Top-1 accuracy (%) of ``model`` on the full test split of ``spec``, and the number of test images."""
    ds = load(spec.data, "test", data_dir, seed=DATA_SEED, **spec.eval_options())
    model.eval()
    correct = 0
    for start in range(0, len(ds), batch_size):
        idx = list(range(start, min(start + batch_size, len(ds))))
        if hasattr(ds, "batch"):
            x, y = ds.batch(idx)
        else:
            pairs = [ds[i] for i in idx]
            x, y = torch.stack([p[0] for p in pairs]), torch.as_tensor([int(p[1]) for p in pairs])
        logits = model(x.float().to(device))
        correct += int((logits.argmax(1).cpu() == torch.as_tensor(y).long()).sum())
    return 100.0 * correct / max(len(ds), 1), len(ds)


def _final_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    last = history[-1] if history else {}
    return {k: float(v) for k, v in last.items() if isinstance(v, (int, float)) and k not in ("epoch", "lr")}


def trained_model(ctx: Any, spec: StudySet, run: RunConfig, variant: str, seed: int) -> StudyModel:
    """Train ``run`` (``variant`` on ``spec`` with ``seed``) once (``ctx.models`` caches it), then reuse it.

    The folder holds the engine's ``model.pt``/``metrics.json``/``run.json`` and ``study.json`` (test
    accuracy on the full test split, in %, and the final training metrics, e.g. ``train/tau``).
    """

    def record(folder: Path, outcome: RunOutcome) -> None:
        model = TrainedModel(folder, "", run).load(ctx.device)  # as saved
        accuracy, n_test = evaluate_accuracy(model, spec, ctx.data_dir, ctx.device)
        info = {"accuracy": accuracy, "n_test": n_test, "final": _final_metrics(outcome.result.history),
                "test": {k: float(v) for k, v in outcome.test.items()}}
        atomic_write_text(folder / "study.json", json.dumps(info, indent=2, sort_keys=True))
        (folder / "last.pt").unlink(missing_ok=True)  # the optimiser state is not needed once done

    cached = cached_model(ctx, run, name=f"{spec.key}-{variant}-seed{seed}", finish=record)
    info = json.loads((cached.folder / "study.json").read_text(encoding="utf-8"))
    return StudyModel(cached.folder, cached.key, run, float(info["accuracy"]), int(info["n_test"]),
                      dict(info.get("final", {})))
