"""Training runs of the LICO study: settings, run configs, and trained models shared through the cache.

Every experiment of the study asks for its models with :func:`trained_model`; the model's cache key is
its resolved :class:`~xairepro.experiments.training.RunConfig` (without folders), so the accuracy table
and the insertion/deletion table use the very same trained models, whichever runs first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xairepro.config import config_hash, config_to_dict
from xairepro.errors import ConfigError
from xairepro.experiments.lico_study.sets import StudySet, variant_method
from xairepro.train.augment import check_augmentation
from xairepro.utils import atomic_write_text

__all__ = [
    "StudyTraining", "SaliencySettings", "DATA_SEED", "run_config", "run_key", "TrainedModel",
    "trained_model", "load_images", "evaluate_accuracy",
]

#: Seed of the data splits (and of generated data): fixed, so every training seed sees the same data.
DATA_SEED = 0
#: Bump when the artefacts written next to a trained model change.
ARTEFACT_VERSION = 1


@dataclass
class StudyTraining:
    """Training settings shared by every model of the study (Table 7 in the paper preset).

    ``augment``: ``"dataset"`` takes the data set's own training augmentation (crop + flip with reflect
    padding 4 for CIFAR and Imagenette, ImageNet-style resized crop + flip for PartImageNet), or name one
    (``none``, ``crop-flip`` ...).  ``epochs``: ``None`` takes each data set's own (200 CIFAR, 90
    Imagenette).  The learning-rate schedule is applied per step.
    """

    optimizer: str = "sgd"
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    schedule: str = "lico-cosine"
    augment: str = "dataset"
    epochs: int | None = None
    ema: float | None = None
    precision: str = "32-true"
    num_workers: int = 0

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


@dataclass
class SaliencySettings:
    """How saliency maps are made and scored (Tables 1, 4, 5, 6).

    ``n_images``: the first N images of each test split are explained.  ``protocols``: insertion/deletion
    presets, the first being the one claims are decided on (``lico-fact``, the study's code).  For
    ``lico-fact``, ``pixels_per_step = None`` keeps its 10 px steps up to 32 x 32 images and scales the
    step with the image area above (10 px per 1,024 px: 250 px at 160 px), so larger images keep ~103
    steps.  ``rise_*`` are RISE's settings (SPEC 5 defaults: 4,000 masks, 8 x 8 grid, p1 = 0.1).
    """

    methods: list[str] = field(default_factory=lambda: ["gradcam", "gradcampp", "rise"])
    protocols: list[str] = field(default_factory=lambda: ["lico-fact", "petsiuk"])
    n_images: int = 1000
    pixels_per_step: int | None = None
    rise_masks: int = 4000
    rise_cell_size: int = 8
    rise_p1: float = 0.1
    batch_size: int | None = None
    n_examples: int = 4

    def validate(self) -> None:
        allowed = ("gradcam", "gradcampp", "rise")
        bad = [m for m in self.methods if m not in allowed]
        if bad or not self.methods:
            raise ConfigError(f"saliency.methods must be a non-empty list of {', '.join(allowed)}; got {self.methods}")
        bad = [p for p in self.protocols if p not in ("lico-fact", "petsiuk")]
        if bad or not self.protocols:
            raise ConfigError(f"saliency.protocols must be a non-empty list of lico-fact, petsiuk; got {self.protocols}")
        for key in ("n_images", "rise_masks", "rise_cell_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"saliency.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_examples < 0:
            raise ConfigError(f"saliency.n_examples must be >= 0, got {self.n_examples}")


def _augment(name: str, spec: StudySet) -> str:
    if name != "dataset":
        return name
    from xairepro.data import dataset_info

    return dataset_info(spec.data).augmentation or "none"


def run_config(spec: StudySet, variant: str, seed: int, training: StudyTraining, lico: Mapping[str, Any], *,
               device: str = "cpu", data_dir: str | os.PathLike[str] | None = None,
               out_dir: str | os.PathLike[str] = "runs/lico-study") -> Any:
    """The :class:`~xairepro.experiments.training.RunConfig` of ``variant`` on ``spec`` with seed ``seed``."""
    from xairepro.experiments.training import DataSection, ModelSection, RunConfig
    from xairepro.train import OptimizerConfig, ScheduleConfig, TrainConfig

    method, options = variant_method(variant, lico)
    train = TrainConfig(
        epochs=int(training.epochs or spec.epochs), batch_size=training.batch_size,
        optimizer=OptimizerConfig(name=training.optimizer, lr=training.lr, momentum=training.momentum,
                                  weight_decay=training.weight_decay),
        schedule=ScheduleConfig(name=training.schedule, per="step"), precision=training.precision,
        accelerator="cuda" if str(device).startswith("cuda") else "cpu", ema=training.ema, seed=int(seed),
        augment=_augment(training.augment, spec), num_workers=training.num_workers)
    cfg = RunConfig(data=DataSection(name=spec.data, data_dir=None if data_dir is None else str(data_dir),
                                     seed=DATA_SEED, options=dict(spec.options)),
                    model=ModelSection(name=spec.model, kwargs=dict(spec.model_kwargs)),
                    method=method, method_options=options, train=train, out_dir=str(out_dir))
    return cfg.validate()


def run_key(cfg: Any) -> dict[str, Any]:
    """What a trained model's numbers depend on: the run config without folders, workers and progress."""
    d = config_to_dict(cfg)
    del d["out_dir"], d["data"]["data_dir"], d["train"]["progress"], d["train"]["num_workers"]
    return {"run": d, "artefacts": ARTEFACT_VERSION}


@dataclass
class TrainedModel:
    """A trained model of the study in the cache: its folder, key, and test accuracy (%, full test split)."""

    folder: Path
    key: str
    accuracy: float
    n_test: int
    final: dict[str, float]

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """The classifier (eval mode) on ``device``."""
        from xairepro.train import load_model

        return load_model(self.folder / "model.pt", map_location=device)


def load_images(spec: StudySet, data_dir: str | os.PathLike[str] | None, n: int | None = None, *,
                masks: bool = False, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first ``n`` images (all when None) of ``split`` in [0, 1], their labels, and masks if asked."""
    from xairepro.data import load

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
    from xairepro.data import load

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


def trained_model(ctx: Any, spec: StudySet, variant: str, seed: int, training: StudyTraining,
                  lico: Mapping[str, Any]) -> TrainedModel:
    """Train ``variant`` on ``spec`` with ``seed`` once (``ctx.models`` caches it), then reuse it.

    The folder holds the engine's ``model.pt``/``metrics.json``/``run.json`` and ``study.json`` (test
    accuracy on the full test split, in %, and the final training metrics, e.g. ``train/tau``).
    """
    cfg = run_config(spec, variant, seed, training, lico, device=ctx.device, data_dir=ctx.data_dir)
    key = run_key(cfg)

    def build(folder: Path) -> None:
        from xairepro.experiments.training import train_run

        cfg.out_dir = str(folder)
        outcome = train_run(cfg, progress=False)
        model = TrainedModel(folder, config_hash(key), 0.0, 0, {}).load(ctx.device)  # as saved
        accuracy, n_test = evaluate_accuracy(model, spec, ctx.data_dir, ctx.device)
        record = {"accuracy": accuracy, "n_test": n_test, "final": _final_metrics(outcome.result.history),
                  "test": {k: float(v) for k, v in outcome.test.items()}}
        atomic_write_text(folder / "study.json", json.dumps(record, indent=2, sort_keys=True))
        (folder / "last.pt").unlink(missing_ok=True)  # the optimiser state is not needed once done

    name = f"{spec.key}-{variant}-seed{seed}"
    folder = ctx.models.get_or_create(key, build, name=name)
    info = json.loads((folder / "study.json").read_text(encoding="utf-8"))
    return TrainedModel(folder, config_hash(key), float(info["accuracy"]), int(info["n_test"]),
                        dict(info.get("final", {})))
