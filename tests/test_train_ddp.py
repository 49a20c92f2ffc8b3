"""DDP through the engine: 2 CPU processes (gloo), each with half of every batch, train the same weights as
one process with the whole batch (mean gradients over the same examples), up to float rounding."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from xairepro.train import ClassifierObjective, EarlyStoppingConfig, Engine, OptimizerConfig, TrainConfig

N, BATCH = 96, 8  # per process; one process takes 2 * BATCH


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def _model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))


def _cfg(**kw):
    base = dict(epochs=3, batch_size=BATCH, seed=0, accelerator="cpu",
                optimizer=OptimizerConfig(name="sgd", lr=0.1, momentum=0.9),
                early_stopping=EarlyStoppingConfig(monitor="val/loss", patience=5))
    base.update(kw)
    return TrainConfig(**base)


def _single_process_reference():
    model = _model()
    result = Engine(_cfg(batch_size=2 * BATCH)).fit(model, ClassifierObjective(), _data(), _data())
    return model, result


SCRIPT = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, sys.argv[2])
    from test_train_ddp import _cfg, _data, _model
    from xairepro.train import ClassifierObjective, Engine

    model = _model()
    result = Engine(_cfg(devices=2, strategy="ddp"), sys.argv[1]).fit(model, ClassifierObjective(), _data(), _data())
    rank = int(torch.distributed.get_rank())
    torch.save({"state": model.state_dict(), "history": result.history}, f"{sys.argv[1]}/rank{rank}.pt")
""")


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process_with_the_whole_batch(tmp_path: Path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference, ref = _single_process_reference()
    ranks = [torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in reference.state_dict().items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key  # replicas stay in sync
        assert torch.allclose(ranks[0]["state"][key], value, atol=1e-5), key
    for mine, theirs in zip(ranks[0]["history"], ref.history):  # metrics are reduced over both processes
        assert mine["train/loss"] == pytest.approx(theirs["train/loss"], abs=1e-5)
        assert mine["train/accuracy"] == pytest.approx(theirs["train/accuracy"], abs=1e-6)
        assert mine["val/loss"] == pytest.approx(theirs["val/loss"], abs=1e-5)
    assert ranks[0]["history"] == ranks[1]["history"]  # every rank holds the same records
    assert (tmp_path / "run" / "last.pt").is_file()


@pytest.mark.slow
def test_ddp_spawn_returns_the_trained_weights_to_the_caller(tmp_path: Path):
    model = _model()
    result = Engine(_cfg(devices=2, strategy="ddp_spawn"), tmp_path).fit(model, ClassifierObjective(), _data(),
                                                                          _data())
    reference, ref = _single_process_reference()
    assert len(result.history) == 3
    for key, value in reference.state_dict().items():
        assert torch.allclose(model.state_dict()[key], value, atol=1e-5), key
    assert result.last["train/loss"] == pytest.approx(ref.last["train/loss"], abs=1e-5)
