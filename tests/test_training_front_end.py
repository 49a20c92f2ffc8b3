"""The trained-model front-end of the studies and the training backend it calls: one key per run, trained
once, the caller's config never changed, hashes that ignore where files live."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

from xairepro.config import config_hash, config_to_dict, resolve_config
from xairepro.experiments.labelfree_study.common import ModelSetup
from xairepro.experiments.lico_study.trained_models import StudyTraining
from xairepro.experiments.trained_models import TrainingSection, model_key, trained_model
from xairepro.runner import ModelCache
from xairepro.train import OptimizerConfig, ScheduleConfig, TrainConfig
from xairepro.training import RunConfig, run_numbers, train_run

FAST = ["train.epochs=1", "train.accelerator=cpu", "data.options.subset=64", "model.kwargs.width=4"]


def test_train_run_leaves_the_callers_config_as_it_was(tmp_path: Path) -> None:
    cfg = resolve_config(RunConfig, overrides=[*FAST, f"out_dir={tmp_path}"])
    before = copy.deepcopy(cfg)
    train_run(cfg, progress=True)
    assert cfg == before and cfg.train.progress is False and cfg.method_options == {}
    recorded = json.loads((tmp_path / "run.json").read_text())
    # run.json spells out the method's resolved options; its hash is that of the recorded numbers
    assert recorded["config"]["method_options"] == {"label_smoothing": 0.0}
    numbers = run_numbers(resolve_config(RunConfig, values=recorded["config"]))
    assert recorded["config_hash"] == config_hash(numbers)


def test_run_numbers_ignore_where_and_how_fast_but_not_what() -> None:
    cfg = resolve_config(RunConfig, overrides=FAST)
    moved = dataclasses.replace(cfg, out_dir="elsewhere", data=dataclasses.replace(cfg.data, data_dir="/data"),
                                train=dataclasses.replace(cfg.train, num_workers=4, progress=True))
    assert run_numbers(moved) == run_numbers(cfg) and model_key(moved) == model_key(cfg)
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=1))
    assert run_numbers(other) != run_numbers(cfg)


def test_trained_once_through_the_cache_and_the_run_is_not_changed(tmp_path: Path) -> None:
    run = resolve_config(RunConfig, overrides=FAST)
    before = copy.deepcopy(run)
    ctx = SimpleNamespace(models=ModelCache(tmp_path / "models"), data_dir=None, device="cpu", download=False)
    finished: list[Path] = []
    first = trained_model(ctx, run, name="tiny", finish=lambda folder, outcome: finished.append(folder))
    again = trained_model(ctx, run, name="tiny", finish=lambda folder, outcome: finished.append(folder))
    assert len(finished) == 1 and finished[0].name.endswith(".partial")       # trained once, before publishing
    assert first.folder == again.folder and first.key == config_hash(model_key(run)) == again.key
    assert (first.folder / "model.pt").is_file() and run == before
    assert json.loads((first.folder / "run.json").read_text())["config"]["out_dir"] == str(finished[0])
    model = first.load("cpu")
    assert not model.training and model.config["name"] == "small-cnn"


def test_sections_map_onto_the_engine_and_take_its_defaults() -> None:
    train = TrainingSection().train_config(epochs=3, seed=2, device="cuda:1", checkpoint_every=1)
    assert train.optimizer == OptimizerConfig() and train.schedule == ScheduleConfig(per="step")
    assert (train.epochs, train.seed, train.accelerator, train.checkpoint_every) == (3, 2, "cuda", 1)
    assert train.batch_size == TrainConfig().batch_size and train.augment == TrainConfig().augment
    # the studies' sections: their papers' settings, momentum from the engine (declared once)
    lico = StudyTraining().train_config(epochs=1, seed=0, augment="crop-flip")
    assert (lico.optimizer.name, lico.optimizer.lr, lico.optimizer.momentum) == ("sgd", 0.03, OptimizerConfig.momentum)
    assert lico.augment == "crop-flip" and lico.schedule.name == "lico-cosine"
    assert ModelSetup().momentum == OptimizerConfig.momentum
    # the sections stay flat: their fields are part of every cell's cache key (results.csv's config_hash)
    assert sorted(config_to_dict(StudyTraining())) == sorted(
        ["optimizer", "lr", "momentum", "weight_decay", "batch_size", "schedule", "augment", "epochs", "ema",
         "precision", "num_workers"])
    assert len(config_to_dict(ModelSetup())) == 16
