"""Data, models and losses of the attribution benchmark; every model trained once through the model cache.

    data = task_data(task, ctx, seed)                      # explained examples (train and test)
    full = trained(ctx, task, seed, data)                  # the model trained on all n_train examples
    sub = trained(ctx, task, seed, data, subset=(m, mask)) # ... on the m-th α-subset (LDS)
    bad = trained(ctx, task, seed, corrupt_data(...))      # ... on a partly corrupted training set

A model's cache key is what it depends on: the task's data and training settings, the seed, and which
examples it saw (the subset index with the LDS settings, or the corruption share).  All models of a task
and seed start from the same initial weights (``build_model(seed=...)``) and see batches in the same
seeded order, so the retrained models differ through their data only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xairepro.config import config_to_dict
from xairepro.experiments.base import Context
from xairepro.experiments.tda_benchmark.config import TaskSetup
from xairepro.utils import derive_seed, make_generator

__all__ = ["TaskData", "Trained", "task_data", "corrupt_data", "trained", "task_loss", "explained_module",
           "representation_module", "tracked_names", "ARTEFACT_VERSION"]

#: Bump when what is stored beside a trained model changes.
ARTEFACT_VERSION = 1


@dataclass
class TaskData:
    """Explained examples on the context's device: inputs, labels (also kept for label-free tasks: they
    define nothing there), and which training examples are corrupted (all False for clean data)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    corrupted: Tensor

    def train(self, kind: str) -> Any:
        """The training examples as the loss takes them: inputs, or (inputs, labels)."""
        return self.x_train if kind == "labelfree" else (self.x_train, self.y_train)

    def test(self, kind: str) -> Any:
        return self.x_test if kind == "labelfree" else (self.x_test, self.y_test)


@dataclass
class Trained:
    model: nn.Module
    folder: Path

    def checkpoints(self) -> list[Path]:
        return sorted((self.folder / "train" / "checkpoints").glob("epoch_*.pt"))


def _pick(n_total: int, n: int, seed: int, key: str) -> Tensor:
    gen = make_generator(derive_seed(seed, key), "cpu")
    return torch.randperm(n_total, generator=gen)[:min(n, n_total)].sort().values


def task_data(task: TaskSetup, ctx: Context) -> TaskData:
    """n_train training and n_test test examples of the task's data set (a fixed seeded draw)."""
    from xairepro.data import load

    out = []
    for split, n in (("train", task.n_train), ("test", task.n_test)):
        x, y = load(task.data, split, ctx.data_dir, seed=0, download=ctx.download, **task.data_options).tensors()
        idx = _pick(x.shape[0], n, 0, f"tda-{split}")
        out += [x[idx].to(ctx.device), y[idx].to(ctx.device)]
    return TaskData(*out, corrupted=torch.zeros(out[0].shape[0], dtype=torch.bool, device=ctx.device))


def corrupt_data(data: TaskData, task: TaskSetup, fraction: float, seed: int) -> TaskData:
    """A copy with round(fraction · n_train) training examples corrupted (seeded): labels moved to another
    class (supervised), or pixels shuffled within the image (label-free)."""
    gen = make_generator(derive_seed(seed, "tda-corrupt"), "cpu")
    n = data.x_train.shape[0]
    flags = torch.zeros(n, dtype=torch.bool)
    flags[torch.randperm(n, generator=gen)[:max(1, round(fraction * n))]] = True
    x, y = data.x_train.clone(), data.y_train.clone()
    rows = flags.nonzero().flatten().tolist()
    if task.kind == "supervised":
        n_classes = int(data.y_train.max()) + 1
        shift = torch.randint(1, n_classes, (len(rows),), generator=gen).to(y.device)
        y[rows] = (y[rows] + shift) % n_classes
    else:
        for r in rows:
            flat = x[r].reshape(-1)
            x[r] = flat[torch.randperm(flat.numel(), generator=gen).to(x.device)].reshape(x[r].shape)
    return TaskData(x, y, data.x_test, data.y_test, flags.to(data.x_train.device))


def task_loss(task: TaskSetup) -> Callable[[nn.Module, Any], Tensor]:
    """loss_fn(model, examples) -> (B,): reconstruction MSE (label-free) or cross-entropy (supervised)."""
    if task.kind == "labelfree":
        def reconstruction(model: nn.Module, x: Tensor) -> Tensor:
            return ((model(x) - x) ** 2).flatten(1).mean(1)

        return reconstruction

    def cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(model(batch[0]), batch[1], reduction="none")

    return cross_entropy


class _Features(nn.Module):
    """A classifier's penultimate features (``forward_features``, global pooling), the representation of
    SimplEx / DkNN."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        f = self.model.forward_features(x)
        return f.mean((2, 3)) if f.dim() == 4 else f.flatten(1)


def explained_module(task: TaskSetup, model: nn.Module) -> nn.Module:
    """Where gradients are taken: the encoder (label-free) or the whole classifier."""
    return model.encoder if task.kind == "labelfree" else model


def representation_module(task: TaskSetup, model: nn.Module) -> nn.Module:
    return model.encoder if task.kind == "labelfree" else _Features(model)


def tracked_names(task: TaskSetup, model: nn.Module) -> list[str]:
    """The ``nn.Linear`` / ``nn.Conv2d`` weights and biases of the explained part (the parameters of every
    gradient method, so that all of them explain the same parameters as EK-FAC)."""
    from xairepro.explain.layer_capture import tracked_layers
    from xairepro.explain.per_example_grads import resolve_params

    layers, _ = tracked_layers(model, resolve_params(model, explained_module(task, model)))
    return [p for layer in layers for p in layer.param_names]


def _train_key(task: TaskSetup, seed: int, extra: dict[str, Any], device: str) -> dict[str, Any]:
    keep = ("kind", "data", "data_options", "model", "model_kwargs", "n_train", "epochs", "batch_size", "lr",
            "weight_decay")
    setup = {k: v for k, v in config_to_dict(task).items() if k in keep}
    return {"tda": setup, "seed": int(seed), "device": "cuda" if device.startswith("cuda") else "cpu",
            "artefacts": ARTEFACT_VERSION, **extra}


def trained(ctx: Context, task: TaskSetup, seed: int, data: TaskData, *, which: dict[str, Any] | None = None,
            mask: Tensor | None = None, checkpoints: bool = False) -> Trained:
    """The task's model trained (once, through ``ctx.models``) on ``data``'s training examples, or on
    those ``mask`` keeps.  ``which`` names the training set in the cache key (subset, corruption);
    ``checkpoints``: keep one checkpoint per epoch (TracIn)."""
    from xairepro.models import build_model
    from xairepro.train import (
        AutoencoderObjective, ClassifierObjective, Engine, OptimizerConfig, TrainConfig, load_model, save_model,
    )

    which = dict(which or {})
    key = _train_key(task, seed, {"which": which, "checkpoints": checkpoints}, ctx.device)

    def build(folder: Path) -> None:
        x, y = data.x_train, data.y_train
        if mask is not None:
            keep = mask.to(x.device)
            x, y = x[keep], y[keep]
        model = build_model(task.model, seed=seed, **task.model_kwargs)
        cfg = TrainConfig(epochs=task.epochs, batch_size=task.batch_size, seed=seed,
                          accelerator="cuda" if ctx.device.startswith("cuda") else "cpu",
                          checkpoint_every=1 if checkpoints else 0,
                          optimizer=OptimizerConfig(name="adam", lr=task.lr, weight_decay=task.weight_decay))
        objective = AutoencoderObjective("identity") if task.kind == "labelfree" else ClassifierObjective()
        Engine(cfg, folder / "train").fit(model, objective, (x.cpu(), y.cpu()))
        save_model(folder / "model.pt", model, which=str(which))

    slug = f"tda-{task.model}-{task.kind}" + "".join(f"-{k}{v}" for k, v in sorted(which.items()))
    folder = ctx.models.get_or_create(key, build, name=slug)
    return Trained(load_model(folder / "model.pt", map_location=ctx.device).eval(), folder)
