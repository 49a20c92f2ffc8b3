"""The disentangled-VAE presets: what the quick VAEs train with, and every change from the paper preset listed
in the experiment's provenance (``deviations``; issue 13, section 3)."""

from __future__ import annotations

from xairepro.experiments.labelfree_study.common import MNIST_VAE_DEVIATION
from xairepro.experiments.labelfree_study.disentangled_vae import DisentangledVaeExperiment, vae_setup
from xairepro.experiments.labelfree_study.trained_models import run_config


def test_quick_and_paper_vaes_train_with_their_settings() -> None:
    exp = DisentangledVaeExperiment()
    quick, paper = exp.make_config("quick"), exp.make_config("paper")
    # batch 16: twice the optimiser steps of batch 32 for the same CPU; dSprites-gen 12 epochs (8 collapsed)
    for key, epochs, lr in (("mnist", 8, 1e-3), ("dsprites", 12, 2e-3)):
        cfg = run_config(vae_setup(getattr(quick, key), "beta-vae", 5.0), 0)
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer.lr) == (epochs, 16, lr)
        assert cfg.method_options == {"beta": 5.0} and cfg.train.early_stopping.monitor is None
        cfg = run_config(vae_setup(getattr(paper, key), "tc-vae", 5.0), 0)
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer.lr) == (100, 300, 1e-3)
        assert cfg.train.early_stopping.monitor == "val/loss" and cfg.train.early_stopping.patience == 10


def test_provenance_lists_every_change_from_the_paper_preset() -> None:
    exp = DisentangledVaeExperiment()
    assert exp.describe(exp.make_config("paper"))["deviations"] == [MNIST_VAE_DEVIATION]
    digits, dsprites, grid = exp.describe(exp.make_config("quick"))["deviations"]
    for text, epochs in ((digits, 8), (dsprites, 12)):
        assert f"epochs {epochs} (paper preset: 100)" in text and "batch 16 (paper preset: 300)" in text
        assert "early-stopping patience 0 (paper preset: 10)" in text
    assert digits.startswith("MNIST (digits) VAEs: the digits stand-in") and "Adam lr" not in digits
    assert dsprites.startswith("dSprites (dsprites-gen) VAEs: the dsprites-gen stand-in")
    assert "Adam lr 0.002 (paper preset: 0.001)" in dsprites
    assert grid == "beta 1, 5, beta-vae, 3 runs (the seed: beta 1, 5, 10, beta-VAE and TC-VAE, 5 runs)"
    # an override of the paper preset is a deviation too; the grid of the seed is none
    changed = exp.describe(exp.make_config("paper", ["mnist.model.epochs=50"]))["deviations"]
    assert changed == [MNIST_VAE_DEVIATION, "MNIST VAEs: epochs 50 (paper preset: 100)"]
    only_dsprites = exp.describe(exp.make_config("paper", ["datasets=[dsprites]", "seeds=[0,1,2,3,4]"]))
    assert only_dsprites["deviations"] == []
