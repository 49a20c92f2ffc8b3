"""Trained models and data of the Label-Free XAI study, shared between its experiments.

    run = run_config(setup, seed, device=ctx.device)   # the setup's RunConfig, resolved once
    trained = trained_model(ctx, setup, seed)          # trains once per setup and seed (cache), then loads
    x, y = load_tensors(setup, "test", ctx)            # the split as tensors on ctx.device

The model cache is the shared front-end's (:mod:`xairepro.experiments.trained_models`): two experiments
naming equal :class:`ModelSetup` values and seeds get the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from xairepro.data import load
from xairepro.experiments.base import Context
from xairepro.experiments.labelfree_study.common import DATA_SEED, ModelSetup
from xairepro.experiments.trained_models import TrainedModel
from xairepro.experiments.trained_models import trained_model as cached_model
from xairepro.train import AutoencoderObjective, EarlyStoppingConfig
from xairepro.training import AutoencoderOptions, DataSection, ModelSection, RunConfig
from xairepro.utils import derive_seed, make_generator

__all__ = ["run_config", "LoadedModel", "trained_model", "load_tensors", "pick_indices", "shown_indices",
           "reconstruction_loss"]


def run_config(setup: ModelSetup, seed: int, *, device: str = "cpu") -> RunConfig:
    """The :class:`RunConfig` that trains ``setup`` with seed ``seed`` (data splits fixed by ``DATA_SEED``)."""
    stopping = EarlyStoppingConfig(monitor="val/loss" if setup.patience else None,
                                   patience=max(1, setup.patience), restore_best=True)
    train = setup.train_config(epochs=setup.epochs, seed=seed, device=device, early_stopping=stopping,
                               checkpoint_every=setup.checkpoint_every)
    cfg = RunConfig(data=DataSection(name=setup.data, seed=DATA_SEED, options=dict(setup.data_options)),
                    model=ModelSection(name=setup.model, kwargs=dict(setup.model_kwargs)),
                    method=setup.method, method_options=dict(setup.method_options), train=train)
    return cfg.validate()


@dataclass
class LoadedModel:
    """A trained model of the study, loaded: the module (eval mode, on the context's device), its cache
    entry, and the setup and seed it was trained with."""

    model: nn.Module
    cached: TrainedModel
    setup: ModelSetup
    seed: int

    @property
    def folder(self) -> Path:
        return self.cached.folder

    def checkpoints(self) -> list[Path]:
        """The epoch checkpoints kept during training (oldest first)."""
        return self.cached.checkpoints()


def _slug(setup: ModelSetup) -> str:
    extra = setup.method_options.get("perturbation") or setup.method_options.get("beta")
    return "-".join(str(p) for p in ("labelfree", setup.data, setup.model, setup.method, extra) if p is not None)


def trained_model(ctx: Context, setup: ModelSetup, seed: int) -> LoadedModel:
    """Train ``setup`` with ``seed`` once (through the runner's model cache) and load it on ``ctx.device``."""
    cached = cached_model(ctx, run_config(setup, seed, device=ctx.device), name=_slug(setup))
    return LoadedModel(cached.load(ctx.device), cached, setup, int(seed))


def load_tensors(setup: ModelSetup, split: str, ctx: Context) -> tuple[Tensor, Tensor]:
    """The inputs (N, ...) float32 and labels (N,) of ``split`` of the setup's data set, on ``ctx.device``."""
    options = {k: v for k, v in setup.data_options.items() if k != "subset" or split == "train"}
    ds = load(setup.data, split, ctx.data_dir, seed=DATA_SEED, download=getattr(ctx, "download", False),
              **options)
    x, y = ds.tensors()
    return x.to(ctx.device), y.to(ctx.device)


def pick_indices(labels: Tensor, n: int | None, seed: int, *, balanced: bool, key: str) -> Tensor:
    """Indices of ``n`` examples (all for None or n >= N), drawn with a seeded permutation.

    ``balanced``: as many of each class as possible, interleaved class by class (the original took the
    k-th example of class k mod K, in data set order; we take them from a seeded permutation).
    Returns a sorted LongTensor on the CPU.
    """
    y = labels.detach().cpu()
    total = y.shape[0]
    if n is None or n >= total:
        return torch.arange(total)
    gen = make_generator(derive_seed(seed, key), "cpu")
    order = torch.randperm(total, generator=gen)
    if not balanced:
        return order[:n].sort().values
    classes = torch.unique(y)
    pools = [order[y[order] == c] for c in classes]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        added = False
        for pool in pools:
            if depth < pool.shape[0] and len(chosen) < n:
                chosen.append(int(pool[depth]))
                added = True
        if not added:
            break
        depth += 1
    return torch.tensor(sorted(chosen), dtype=torch.long)


def shown_indices(labels: Tensor, n: int) -> Tensor:
    """Indices of the ``n`` examples a qualitative figure shows: the first example of each class in class
    order (one digit of each kind, as the original's plots), then the next examples in order.  Returns a
    LongTensor on the CPU of min(n, N) indices."""
    y = labels.detach().cpu()
    firsts = [int((y == c).nonzero()[0]) for c in torch.unique(y)]
    rest = [i for i in range(y.shape[0]) if i not in set(firsts[:n])]
    return torch.tensor((firsts + rest)[:n], dtype=torch.long)


def reconstruction_loss(setup: ModelSetup) -> Callable[[nn.Module, Tensor], Tensor]:
    """Per-example label-free loss of an autoencoder, loss_fn(model, x) -> (B,): its reconstruction error
    of the clean input (the setup's error and reduction; no pretext perturbation, so it is deterministic)."""
    opts = dataclasses.asdict(AutoencoderOptions(**dict(setup.method_options)))
    objective = AutoencoderObjective(perturbation="identity", error=opts["error"], reduction=opts["reduction"])

    def loss_fn(model: nn.Module, x: Tensor) -> Tensor:
        return objective.per_example_loss(model, x)

    return loss_fn
