"""Trained models and data of the Label-Free XAI study, shared between its experiments.

    cfg = run_config(setup, seed)                  # RunConfig (folders left out of the cache key)
    trained = trained_model(ctx, setup, seed)      # trains once per setup and seed, then reuses
    x, y = load_tensors(setup, "test", ctx)        # the split as tensors on ctx.device

The cache key of a model is its resolved :class:`~xairepro.experiments.training.RunConfig` without
folders: two experiments naming equal :class:`ModelSetup` values and seeds get the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xairepro.config import config_to_dict
from xairepro.experiments.base import Context
from xairepro.experiments.labelfree_study.common import DATA_SEED, ModelSetup
from xairepro.utils import derive_seed, make_generator

__all__ = ["run_config", "run_key", "TrainedModel", "trained_model", "load_tensors", "pick_indices",
           "reconstruction_loss", "ARTEFACT_VERSION"]

#: Bump when what is stored beside a trained model changes.
ARTEFACT_VERSION = 1


def run_config(setup: ModelSetup, seed: int, *, device: str = "cpu", data_dir: str | Path | None = None,
               out_dir: str | Path = "runs/labelfree-study", download: bool = False) -> Any:
    """The :class:`RunConfig` that trains ``setup`` with seed ``seed`` (data splits fixed by ``DATA_SEED``)."""
    from xairepro.experiments.training import DataSection, ModelSection, RunConfig
    from xairepro.train import EarlyStoppingConfig, OptimizerConfig, ScheduleConfig, TrainConfig

    stopping = EarlyStoppingConfig(monitor="val/loss" if setup.patience else None,
                                   patience=max(1, setup.patience), restore_best=True)
    train = TrainConfig(
        epochs=setup.epochs, batch_size=setup.batch_size,
        optimizer=OptimizerConfig(name=setup.optimizer, lr=setup.lr, momentum=setup.momentum,
                                  weight_decay=setup.weight_decay),
        schedule=ScheduleConfig(name=setup.schedule, per="step"), early_stopping=stopping,
        checkpoint_every=setup.checkpoint_every, seed=int(seed), augment=setup.augment,
        accelerator="cuda" if str(device).startswith("cuda") else "cpu")
    options = dict(setup.data_options)
    if download:
        options["download"] = True
    cfg = RunConfig(data=DataSection(name=setup.data, data_dir=None if data_dir is None else str(data_dir),
                                     seed=DATA_SEED, options=options),
                    model=ModelSection(name=setup.model, kwargs=dict(setup.model_kwargs)),
                    method=setup.method, method_options=dict(setup.method_options), train=train,
                    out_dir=str(out_dir))
    return cfg.validate()


def run_key(setup: ModelSetup, seed: int, device: str = "cpu") -> dict[str, Any]:
    """What a trained model depends on: its run config without folders, workers and progress."""
    d = config_to_dict(run_config(setup, seed, device=device))
    del d["out_dir"], d["data"]["data_dir"], d["train"]["progress"], d["train"]["num_workers"]
    return {"run": d, "artefacts": ARTEFACT_VERSION}


@dataclass
class TrainedModel:
    """A trained model of the study: the module (eval mode, on the context's device) and its folder."""

    model: nn.Module
    folder: Path
    setup: ModelSetup
    seed: int

    def checkpoints(self) -> list[Path]:
        """The epoch checkpoints kept during training (oldest first)."""
        return sorted((self.folder / "checkpoints").glob("epoch_*.pt"))


def _slug(setup: ModelSetup) -> str:
    extra = setup.method_options.get("perturbation") or setup.method_options.get("beta")
    return "-".join(str(p) for p in ("labelfree", setup.data, setup.model, setup.method, extra) if p is not None)


def trained_model(ctx: Context, setup: ModelSetup, seed: int) -> TrainedModel:
    """Train ``setup`` with ``seed`` once (through the runner's model cache) and load it."""
    from xairepro.experiments.training import train_run
    from xairepro.train import load_model

    key = run_key(setup, seed, ctx.device)

    def build(folder: Path) -> None:
        cfg = run_config(setup, seed, device=ctx.device, data_dir=ctx.data_dir, out_dir=folder,
                         download=getattr(ctx, "download", False))
        train_run(cfg, progress=False)

    folder = ctx.models.get_or_create(key, build, name=_slug(setup))
    model = load_model(folder / "model.pt", map_location=ctx.device)
    return TrainedModel(model.eval(), folder, setup, int(seed))


def load_tensors(setup: ModelSetup, split: str, ctx: Context) -> tuple[Tensor, Tensor]:
    """The inputs (N, ...) float32 and labels (N,) of ``split`` of the setup's data set, on ``ctx.device``."""
    from xairepro.data import load

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


def reconstruction_loss(setup: ModelSetup) -> Callable[[nn.Module, Tensor], Tensor]:
    """Per-example label-free loss of an autoencoder, loss_fn(model, x) -> (B,): its reconstruction error
    of the clean input (the setup's error and reduction; no pretext perturbation, so it is deterministic)."""
    from xairepro.experiments.training import AutoencoderOptions
    from xairepro.train import AutoencoderObjective

    opts = dataclasses.asdict(AutoencoderOptions(**dict(setup.method_options)))
    objective = AutoencoderObjective(perturbation="identity", error=opts["error"], reduction=opts["reduction"])

    def loss_fn(model: nn.Module, x: Tensor) -> Tensor:
        return objective.per_example_loss(model, x)

    return loss_fn
