"""The smoke run: a small digits classifier and a small denoising autoencoder, trained through the engine.

    metrics = run_smoke("results/smoke", seed=0)
    # {"classifier.test_accuracy": 0.93, "classifier.test_loss": ..., "autoencoder.test_mse": ...,
    #  "autoencoder.first_train_loss": ..., "autoencoder.last_train_loss": ...}

It checks the stack end to end on bundled data (a couple of minutes at most on 2 CPU cores) and writes
``out_dir/smoke.json``.  Each model trains in its own sub-folder and resumes when run again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xairepro.experiments.training import DataSection, ModelSection, RunConfig, train_run
from xairepro.train import OptimizerConfig, TrainConfig
from xairepro.utils import atomic_write_text

__all__ = ["run_smoke", "smoke_configs"]


def smoke_configs(out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, RunConfig]:
    """The two run configs of the smoke run, keyed ``classifier`` and ``autoencoder``."""
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
