"""`--download` is the only way a command fetches data: it reaches the loader (train) and the cells (reproduce)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torchvision.datasets as tvd

from xairepro.cli import main
from xairepro.experiments import Cell, Context, Experiment, Record, register_experiment, unregister_experiment


class _Offline:
    """Stands in for torchvision's MNIST: records that a download was asked for, then fails like no network."""

    calls: list[bool] = []

    def __init__(self, root, train=True, download=False, **kwargs):
        _Offline.calls.append(bool(download))
        raise RuntimeError("network unreachable")


def test_train_downloads_only_with_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tvd, "MNIST", _Offline)
    _Offline.calls = []
    args = ["train", "--set", "data.name=mnist", "--set", f"data.data_dir={tmp_path / 'data'}",
            "--set", "model.name=small-cnn", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args) == 2
    without = capsys.readouterr().err
    assert _Offline.calls == [] and "--download" in without and "\n" not in without.strip()
    assert main(args + ["--download"]) == 2
    with_flag = capsys.readouterr().err
    assert _Offline.calls and all(_Offline.calls)
    assert "network unreachable" in with_flag and "\n" not in with_flag.strip()


@dataclass
class _Cfg:
    seeds: list[int] = field(default_factory=lambda: [0])


class _SeesDownload(Experiment):
    name = "sees-download"
    title = "Records whether the cell may download"
    study = "test"
    reproduces = "nothing"
    config_class = _Cfg
    presets = {"quick": {}}

    def cells(self, cfg: _Cfg) -> list[Cell]:
        return [self.cell("none", "flag", s, {}) for s in cfg.seeds]

    def run_cell(self, cell: Cell, ctx: Context) -> list[Record]:
        return [cell.record("download", float(ctx.download))]


@pytest.fixture
def sees_download():
    register_experiment(_SeesDownload, replace=True)
    yield
    unregister_experiment("sees-download")


@pytest.mark.parametrize("flag, expected", [([], "0.0"), (["--download"], "1.0")])
def test_reproduce_passes_the_flag_to_every_cell(tmp_path, sees_download, flag, expected):
    out = tmp_path / "out"
    assert main(["reproduce", "sees-download", "--out", str(out), "--no-progress", *flag]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[1].split(",")[5] == expected
