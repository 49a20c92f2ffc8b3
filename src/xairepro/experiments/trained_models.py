"""The trained-model front-end of every study: settings -> one ``RunConfig`` -> one model in the runner's cache.

    section = TrainingSection(lr=0.1, batch_size=128)                 # a study config's typed section
    run = RunConfig(data=..., model=..., method="ce",
                    train=section.train_config(epochs=3, seed=0, device=ctx.device))
    trained = trained_model(ctx, run, name="shapes-k4-baseline-seed0")   # trains once, then reuses
    model = trained.load(ctx.device)

A study maps its settings to a :class:`~xairepro.training.RunConfig` once per cell; the model's cache key
is :func:`model_key` of that config, so two experiments (or two studies) naming the same run share one
trained model, whichever runs first.  The folder is filled by ``xairepro.training.train_run`` (``model.pt``,
``run.json``, ``metrics.json``, epoch checkpoints when asked for).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xairepro.config import config_hash
from xairepro.train.config import OptimizerConfig, ScheduleConfig, TrainConfig

if TYPE_CHECKING:  # the training backend imports torch: study configs import this module while listing
    from torch import nn

    from xairepro.training import RunConfig, RunOutcome

__all__ = ["TrainingSection", "ARTEFACT_VERSION", "accelerator", "model_key", "TrainedModel", "trained_model",
           "with_context_data"]

#: Bump when what the studies store beside a trained model changes, or training code changes what a run trains
#: (every cached model is then rebuilt).  2: LICO's L_MM on unit-norm aggregates (issue 13).
ARTEFACT_VERSION = 2


@dataclass
class TrainingSection:
    """The engine settings a study's presets change, as flat typed fields (``training.lr=0.1``).

    Each maps onto the engine's config (:meth:`train_config`): ``optimizer`` (its name), ``lr``,
    ``momentum`` and ``weight_decay`` onto :class:`~xairepro.train.OptimizerConfig`, ``schedule`` onto
    :class:`~xairepro.train.ScheduleConfig` (applied per step), ``batch_size`` and ``augment`` onto
    :class:`~xairepro.train.TrainConfig`.  Defaults are the engine's own; a study section overrides the
    ones its paper fixes.  The fields are flat because their names and values are part of every cell's
    cache key (``results.csv``'s ``config_hash``).
    """

    optimizer: str = OptimizerConfig.name
    lr: float = OptimizerConfig.lr
    momentum: float = OptimizerConfig.momentum
    weight_decay: float = OptimizerConfig.weight_decay
    batch_size: int = TrainConfig.batch_size
    schedule: str = ScheduleConfig.name
    augment: str = TrainConfig.augment

    def train_config(self, *, epochs: int, seed: int, device: str = "cpu", augment: str | None = None,
                     **engine: Any) -> TrainConfig:
        """The engine's :class:`TrainConfig` of these settings for ``epochs`` and ``seed`` on ``device``.

        ``augment`` replaces the section's (e.g. a data set's own augmentation); ``engine`` sets further
        ``TrainConfig`` fields (``ema``, ``early_stopping``, ``checkpoint_every`` ...).
        """
        return TrainConfig(
            epochs=int(epochs), batch_size=self.batch_size,
            optimizer=OptimizerConfig(name=self.optimizer, lr=self.lr, momentum=self.momentum,
                                      weight_decay=self.weight_decay),
            schedule=ScheduleConfig(name=self.schedule, per="step"), seed=int(seed),
            augment=self.augment if augment is None else augment, accelerator=accelerator(device), **engine)


def accelerator(device: str) -> str:
    """The engine's accelerator for a runner device: ``cuda`` for ``cuda``/``cuda:N``, else ``cpu``."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def model_key(run: RunConfig) -> dict[str, Any]:
    """The cache key of the model ``run`` trains: what its numbers depend on, and the artefact version."""
    from xairepro.training import run_numbers  # lazy: the training backend imports torch (see TYPE_CHECKING)

    return {"run": run_numbers(run), "artefacts": ARTEFACT_VERSION}


@dataclass
class TrainedModel:
    """A trained model in the cache: its folder, key (hash of :func:`model_key`) and the run that made it."""

    folder: Path
    key: str
    run: RunConfig

    def load(self, device: Any = "cpu") -> nn.Module:
        """The saved model (eval mode) on ``device``."""
        from xairepro.train.checkpoint import load_model  # lazy: torch (see TYPE_CHECKING)

        return load_model(self.folder / "model.pt", map_location=device).eval()

    def checkpoints(self) -> list[Path]:
        """The epoch checkpoints kept during training (oldest first)."""
        return sorted((self.folder / "checkpoints").glob("epoch_*.pt"))


def with_context_data(ctx: Any, run: RunConfig) -> RunConfig:
    """A copy of ``run`` reading its data where the context says (data folder, ``--download``); neither is
    part of any key.  ``run`` itself is not changed."""
    options = dict(run.data.options)
    if getattr(ctx, "download", False):
        options["download"] = True
    data_dir = None if ctx.data_dir is None else str(ctx.data_dir)
    return dataclasses.replace(run, data=dataclasses.replace(run.data, data_dir=data_dir, options=options))


def trained_model(ctx: Any, run: RunConfig, *, name: str,
                  finish: Callable[[Path, RunOutcome], None] | None = None) -> TrainedModel:
    """Train ``run`` once through the runner's model cache (``ctx.models``) and return its folder.

    The training copy of ``run`` gets the context's data folder, ``--download`` and the cache folder as
    ``out_dir`` (none of which is in the key); ``run`` itself is not changed.  ``finish(folder, outcome)``
    adds a study's own artefacts after training, before the folder is published.
    """
    from xairepro.training import train_run  # lazy: the training backend imports torch (see TYPE_CHECKING)

    key = model_key(run)

    def build(folder: Path) -> None:
        outcome = train_run(dataclasses.replace(with_context_data(ctx, run), out_dir=str(folder)), progress=False)
        if finish is not None:
            finish(folder, outcome)

    folder = ctx.models.get_or_create(key, build, name=name)
    return TrainedModel(Path(folder), config_hash(key), run)
