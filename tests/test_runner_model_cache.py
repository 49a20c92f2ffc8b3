"""Trained models cached by the hash of their training config and shared between experiments."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xairepro.config import config_hash
from xairepro.experiments import Cell, Context, Experiment, Record, register_experiment, unregister_experiment
from xairepro.runner import ModelCache, reproduce


def test_builds_once_then_returns_the_same_folder(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "weights.txt").write_text("w")

    cfg = {"model": "small-cnn", "lr": 0.1}
    first = cache.get_or_create(cfg, build, name="cnn")
    second = cache.get_or_create({"lr": 0.1, "model": "small-cnn"}, build, name="cnn")  # key order irrelevant
    assert first == second == tmp_path / f"cnn-{config_hash(cfg)}"
    assert len(calls) == 1 and calls[0].name.endswith(".partial")
    assert (first / "weights.txt").read_text() == "w"
    assert json.loads((first / "config.json").read_text()) == cfg
    other = cache.get_or_create({"model": "small-cnn", "lr": 0.2}, build, name="cnn")
    assert other != first and len(calls) == 2
    assert cache.has(cfg, name="cnn") and not cache.has({"lr": 0.3}, name="cnn")


def test_a_killed_build_resumes_from_its_partial_folder(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    seen: list[list[str]] = []

    def crashing(folder: Path) -> None:
        (folder / "epoch1.pt").write_text("1")
        raise KeyboardInterrupt  # a kill in the middle of training

    def resuming(folder: Path) -> None:
        seen.append(sorted(p.name for p in folder.iterdir()))
        (folder / "epoch2.pt").write_text("2")

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_create({"x": 1}, crashing)
    assert not cache.has({"x": 1})
    done = cache.get_or_create({"x": 1}, resuming)
    assert seen == [["epoch1.pt"]]  # the second build found the first one's work
    assert sorted(p.name for p in done.iterdir()) == ["config.json", "epoch1.pt", "epoch2.pt"]


def test_concurrent_builders_of_one_config_train_once(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    builds: list[int] = []

    def slow(folder: Path) -> None:
        builds.append(1)
        time.sleep(0.3)
        (folder / "w").write_text("w")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_create({"k": 1}, slow)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(results)) == 1 and len(results) == 3


@dataclass
class TrainerConfig:
    widths: list[int] = field(default_factory=lambda: [4, 8])


class TrainerA(Experiment):
    """Each cell 'trains' a model of some width through ctx.models and reports a number from it."""

    name = "trainer_a"
    config_class = TrainerConfig
    presets = {"quick": {}}
    log: Path

    def cells(self, cfg: TrainerConfig) -> list[Cell]:
        return [self.cell("d", f"w{w}", 0, {"width": w}) for w in cfg.widths]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        width = cell.params["width"]

        def train(folder: Path) -> None:
            with open(self.log, "a") as fh:
                fh.write(f"{width}\n")
            (folder / "weights.json").write_text(json.dumps({"w": width * 1.5}))

        folder = ctx.models.get_or_create({"model": "mlp", "width": width}, train, name="mlp")
        return [cell.record("weight", json.loads((folder / "weights.json").read_text())["w"])]


class TrainerB(TrainerA):
    name = "trainer_b"


def test_models_are_shared_between_experiments_of_a_run(tmp_path: Path) -> None:
    log = tmp_path / "trainings.log"
    a, b = TrainerA(), TrainerB()
    a.log = b.log = log
    register_experiment(a, replace=True)
    register_experiment(b, replace=True)
    try:
        summary = reproduce(["trainer_a", "trainer_b"], out_dir=tmp_path / "run", show_progress=False)
    finally:
        unregister_experiment("trainer_a")
        unregister_experiment("trainer_b")
    assert summary.ok and summary.computed == 4
    assert sorted(log.read_text().split()) == ["4", "8"]  # two models trained, each used by both experiments
    assert len(list((tmp_path / "run" / "models").glob("mlp-*/weights.json"))) == 2
