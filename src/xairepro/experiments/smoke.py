"""The smoke run: a small digits classifier and a small denoising autoencoder, trained through the engine,
and ``SmokeExperiment``, the ``smoke`` experiment of ``xairepro reproduce`` (one cell per seed).

    metrics = run_smoke("results/smoke", seed=0)
    # {"classifier.test_accuracy": 0.93, "classifier.test_loss": ..., "autoencoder.test_mse": ...,
    #  "autoencoder.first_train_loss": ..., "autoencoder.last_train_loss": ...}

It checks the stack end to end on bundled data (a couple of minutes at most on 2 CPU cores) and writes
``out_dir/smoke.json``.  Each model trains in its own sub-folder and resumes when run again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xairepro.errors import UsageError
from xairepro.experiments.base import (
    Cell, Claim, Context, Experiment, MetricSpec, Record, Results, TableSpec, Verdict,
)
from xairepro.train.config import OptimizerConfig, TrainConfig
from xairepro.utils import atomic_write_text

if TYPE_CHECKING:  # the training backend imports torch; the registry imports this module to list experiments
    from xairepro.training import RunConfig

__all__ = ["run_smoke", "smoke_configs", "SmokeConfig", "SmokeExperiment", "SMOKE_MIN_ACCURACY"]


def smoke_configs(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, RunConfig]:
    """The two run configs of the smoke run, keyed ``classifier`` and ``autoencoder``."""
    from xairepro.training import DataSection, ModelSection, RunConfig  # lazy: start-up (see TYPE_CHECKING)

    out = Path(out_dir)
    classifier = RunConfig(
        data=DataSection(name="digits", seed=seed),
        model=ModelSection(name="small-cnn", kwargs={"width": 8}),
        method="ce",
        train=TrainConfig(epochs=8, batch_size=64, seed=seed, accelerator="cpu",
                          optimizer=OptimizerConfig(name="adam", lr=1e-2)),
        out_dir=str(out / "classifier"),
    )
    autoencoder = RunConfig(
        data=DataSection(name="digits", seed=seed, options={"size": 28}),
        model=ModelSection(name="mnist-ae", kwargs={"latent_dim": 4}),
        method="ae",
        method_options={"perturbation": "noise"},
        train=TrainConfig(epochs=5, batch_size=32, seed=seed, accelerator="cpu",
                          optimizer=OptimizerConfig(name="adam", lr=3e-3)),
        out_dir=str(out / "autoencoder"),
    )
    return {"classifier": classifier, "autoencoder": autoencoder}


def run_smoke(out_dir: str | os.PathLike[str], seed: int = 0, *, progress: bool = False) -> dict[str, float]:
    """Train both smoke models and return their metrics (also written to ``out_dir/smoke.json``)."""
    from xairepro.training import train_run  # lazy: start-up (see TYPE_CHECKING)

    configs = smoke_configs(out_dir, seed)
    clf = train_run(configs["classifier"], progress=progress)
    ae = train_run(configs["autoencoder"], progress=progress)
    metrics = {
        "classifier.test_accuracy": clf.test["accuracy"],
        "classifier.test_loss": clf.test["loss"],
        "autoencoder.test_mse": ae.test["mse"],
        "autoencoder.first_train_loss": ae.result.history[0]["train/loss"],
        "autoencoder.last_train_loss": ae.result.history[-1]["train/loss"],
    }
    atomic_write_text(Path(out_dir) / "smoke.json", json.dumps({"seed": seed, "metrics": metrics}, indent=2))
    return metrics



@dataclass
class SmokeConfig:
    """Seeds of the engine smoke run (one cell per seed)."""

    seeds: list[int] = field(default_factory=lambda: [0])

    def validate(self) -> None:
        if not self.seeds:
            raise UsageError("smoke: seeds must not be empty")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise UsageError(f"smoke: seeds must be distinct non-negative integers, got {list(self.seeds)}")


def _classifier_learns(results: Results) -> Verdict:
    acc = results.mean("classifier.test_accuracy")
    return Verdict.decide(acc > SMOKE_MIN_ACCURACY, f"test accuracy {acc:.3f} vs threshold {SMOKE_MIN_ACCURACY}",
                          accuracy=acc, threshold=SMOKE_MIN_ACCURACY)


def _autoencoder_learns(results: Results) -> Verdict:
    first, last = results.mean("autoencoder.first_train_loss"), results.mean("autoencoder.last_train_loss")
    return Verdict.decide(last < first, f"training loss {first:.4g} -> {last:.4g}", first=first, last=last)


#: The smoke classifier must beat this digits test accuracy (chance is 0.1).
SMOKE_MIN_ACCURACY = 0.8


class SmokeExperiment(Experiment):
    """``xairepro.experiments.smoke.run_smoke`` per seed: checks the stack end to end on bundled digits."""

    name = "smoke"
    title = "Engine smoke run: digits classifier and denoising autoencoder"
    study = "smoke"
    reproduces = "no published table (end-to-end check of data, models and the training engine)"
    config_class = SmokeConfig
    presets = {"quick": {}}
    metrics = {
        "classifier.test_accuracy": MetricSpec("test accuracy", higher_is_better=True),
        "classifier.test_loss": MetricSpec("test loss", higher_is_better=False),
        "autoencoder.test_mse": MetricSpec("test MSE", higher_is_better=False),
        "autoencoder.first_train_loss": MetricSpec("first-epoch train loss", higher_is_better=False),
        "autoencoder.last_train_loss": MetricSpec("last-epoch train loss", higher_is_better=False),
    }
    tables = (
        TableSpec("Digits classifier", ("classifier.test_accuracy", "classifier.test_loss")),
        TableSpec("Denoising autoencoder", ("autoencoder.test_mse", "autoencoder.first_train_loss",
                                            "autoencoder.last_train_loss")),
    )

    def cells(self, cfg: SmokeConfig) -> list[Cell]:
        return [self.cell("digits", "engine", seed) for seed in cfg.seeds]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        values = run_smoke(Path(ctx.cache_dir), seed=cell.seed)
        return [cell.record(metric, float(value)) for metric, value in sorted(values.items())]

    def claims(self, cfg: SmokeConfig) -> list[Claim]:
        return [
            Claim("classifier-learns", f"The digits classifier beats {SMOKE_MIN_ACCURACY:.0%} test accuracy",
                  _classifier_learns),
            Claim("autoencoder-learns", "The denoising autoencoder's training loss decreases",
                  _autoencoder_learns),
        ]

    def describe(self, cfg: Any) -> dict[str, Any]:
        return {"data": "scikit-learn digits (bundled)", "models": "small-cnn classifier, mnist-ae (d=4)"}
