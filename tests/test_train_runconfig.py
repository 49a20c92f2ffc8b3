"""Run configs: YAML + overrides, options derived from the data set, the method registry, build-time checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from xairepro.config import resolve_config
from xairepro.errors import ConfigError, UsageError
from xairepro.training import (
    RunConfig,
    build_run,
    get_method,
    register_method,
    train_run,
    unregister_method,
)
from xairepro.train import ClassifierObjective, load_model


def test_yaml_then_overrides_build_the_run(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  name: digits\n  options:\n    size: 28\nmodel:\n  name: mnist-classifier\n"
                    "  kwargs:\n    latent_dim: 3\ntrain:\n  epochs: 4\n  optimizer:\n    name: sgd\n")
    cfg = resolve_config(RunConfig, file=path, overrides=["train.epochs=2", "model.kwargs.latent_dim=5"])
    assert cfg.train.epochs == 2 and cfg.train.optimizer.name == "sgd" and cfg.data.options == {"size": 28}
    model, objective, train, val, test = build_run(cfg)
    assert isinstance(objective, ClassifierObjective)
    # options the data set determines were filled in; the user's kwargs were kept
    assert model.config["latent_dim"] == 5 and model.config["num_classes"] == 10
    assert model.config["mean"] == pytest.approx(list(train.info.mean))
    assert train[0][0].shape == (1, 28, 28) and len(val) > 0 and len(test) > 0


def test_same_seed_builds_the_same_model():
    a = build_run(resolve_config(RunConfig, overrides=["train.seed=4"])).model
    b = build_run(resolve_config(RunConfig, overrides=["train.seed=4"])).model
    c = build_run(resolve_config(RunConfig, overrides=["train.seed=5"])).model
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


@dataclass
class _ScaledOptions:
    factor: float = 2.0


class _ScaledCE(ClassifierObjective):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        return self.factor * loss, metrics


def test_registered_method_plugs_in_without_the_engine_knowing(tmp_path: Path):
    seen = {}

    def factory(ctx):
        seen["classes"] = ctx.info.num_classes
        return _ScaledCE(ctx.options.factor)

    register_method("scaled-ce", factory, model_kinds=("classifier",), options=_ScaledOptions)
    try:
        assert get_method("scaled-ce").options is _ScaledOptions
        cfg = resolve_config(RunConfig, overrides=["method=scaled-ce", "method_options.factor=3",
                                                   "model.kwargs.width=4", "train.epochs=1",
                                                   "train.accelerator=cpu", "data.options.subset=64",
                                                   f"out_dir={tmp_path}"])
        outcome = train_run(cfg)
        assert seen["classes"] == 10 and outcome.run.objective.factor == 3.0
        assert load_model(outcome.model_path).metadata["method"] == "scaled-ce"
        with pytest.raises(ConfigError, match="method_options of 'scaled-ce'"):
            build_run(resolve_config(RunConfig, overrides=["method=scaled-ce", "method_options.factor=big"]))
    finally:
        unregister_method("scaled-ce")
    with pytest.raises(ConfigError, match="unknown training method"):
        get_method("scaled-ce")


def test_wrong_image_size_is_caught_before_training():
    for overrides, match in [
        (["model.name=mnist-ae", "method=ae"], "expects 28 x 28 images, got 8 x 8"),
        (["model.name=burgess-vae", "method=vae", "data.options.size=28"], "for data set 'digits' \\(inputs 1x28x28\\)"),
        (["model.name=small-cnn", "model.kwargs.in_channels=3", "model.kwargs.mean=[0.5,0.5,0.5]",
          "model.kwargs.std=[0.2,0.2,0.2]"], "expects 3-channel images, got 1 channel"),
    ]:
        with pytest.raises(UsageError, match=match):
            build_run(resolve_config(RunConfig, overrides=overrides))
