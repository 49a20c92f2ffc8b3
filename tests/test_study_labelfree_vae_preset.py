"""The disentangled-VAE presets: the quick VAEs' training (batch 16, lr warm-up) reaches the engine, every change
from the paper preset is listed in provenance, and a quick VAE keeps informative units (issue 13, section 3)."""

from __future__ import annotations

import dataclasses

import pytest

from xairepro.errors import ConfigError
from xairepro.experiments.labelfree_study.common import MNIST_VAE_DEVIATION, ModelSetup
from xairepro.experiments.labelfree_study.disentangled_vae import DisentangledVaeExperiment, vae_setup
from xairepro.experiments.labelfree_study.trained_models import run_config


def test_warmup_reaches_the_engine_schedule_and_nothing_else_changes() -> None:
    base = ModelSetup(data="digits", data_options={"size": 32}, model="burgess-vae",
                      model_kwargs={"latent_dim": 3, "image_size": 32}, method="vae", epochs=2, batch_size=16)
    plain = run_config(base, 0).train
    warm = run_config(dataclasses.replace(base, warmup=7), 0).train
    assert plain.schedule.warmup == 0 and warm.schedule.warmup == 7
    # the warm-up is the only difference: same schedule name and unit, optimiser, batch, epochs, seed
    assert dataclasses.replace(warm, schedule=dataclasses.replace(warm.schedule, warmup=0)) == plain


def test_negative_warmup_is_refused() -> None:
    with pytest.raises(ConfigError, match="warmup"):
        DisentangledVaeExperiment().make_config("quick", ["dsprites.model.warmup=-1"])


def test_quick_vaes_train_in_small_batches_with_a_warm_up_and_the_paper_vaes_do_not() -> None:
    exp = DisentangledVaeExperiment()
    quick, paper = exp.make_config("quick"), exp.make_config("paper")
    for key, lr in (("mnist", 1e-3), ("dsprites", 2e-3)):
        train = run_config(vae_setup(getattr(quick, key), "beta-vae", 5.0), 0).train
        assert (train.epochs, train.batch_size, train.schedule.warmup, train.optimizer.lr) == (8, 16, 40, lr)
        assert train.schedule.name == "none" and train.early_stopping.monitor is None
        train = run_config(vae_setup(getattr(paper, key), "tc-vae", 5.0), 0).train
        assert (train.epochs, train.batch_size, train.schedule.warmup, train.optimizer.lr) == (100, 300, 0, 1e-3)


def test_provenance_lists_every_change_from_the_paper_preset() -> None:
    exp = DisentangledVaeExperiment()
    assert exp.describe(exp.make_config("paper"))["deviations"] == [MNIST_VAE_DEVIATION]
    quick = exp.describe(exp.make_config("quick"))["deviations"]
    digits, dsprites, grid = quick
    for text in (digits, dsprites):
        assert "epochs 8 (paper preset: 100)" in text and "batch 16 (paper preset: 300)" in text
        assert "lr warm-up steps 40 (paper preset: 0)" in text and "patience 0 (paper preset: 10)" in text
    assert digits.startswith("MNIST (digits) VAEs: the digits stand-in") and "Adam lr" not in digits
    assert dsprites.startswith("dSprites (dsprites-gen)") and "Adam lr 0.002 (paper preset: 0.001)" in dsprites
    assert grid == "beta 1, 5, beta-vae, 3 runs (the seed: beta 1, 5, 10, beta-VAE and TC-VAE, 5 runs)"
    # an override of the paper preset is a deviation too
    changed = exp.describe(exp.make_config("paper", ["mnist.model.epochs=50"]))["deviations"]
    assert changed == [MNIST_VAE_DEVIATION, "MNIST VAEs: epochs 50 (paper preset: 100)"]


@pytest.mark.slow
def test_a_quick_dsprites_vae_keeps_informative_units(tmp_path) -> None:
    """The run that collapsed (0 informative units) at batch 32 without warm-up: beta 5, seed 0."""
    import torch

    from xairepro.data import load
    from xairepro.experiments.labelfree_study.disentangled_vae import MIN_INFORMATIVE
    from xairepro.experiments.labelfree_study.vae_cells import informative_units
    from xairepro.training import train_run

    setup = vae_setup(DisentangledVaeExperiment().make_config("quick").dsprites, "beta-vae", 5.0)
    cfg = run_config(setup, 0)
    cfg = dataclasses.replace(cfg, out_dir=str(tmp_path / "run"), train=dataclasses.replace(cfg.train, progress=False))
    model = train_run(cfg).run.model.eval()
    x, _ = load(setup.data, "test", tmp_path / "data", seed=0, **setup.data_options).tensors()
    with torch.no_grad():
        assert informative_units(model.encoder(x)) >= MIN_INFORMATIVE
