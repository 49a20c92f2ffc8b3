"""The smoke run trains both models through the engine and reports sensible, reproducible metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xairepro.experiments.smoke import run_smoke


@pytest.mark.slow
def test_smoke_run_metrics_and_file(tmp_path: Path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = run_smoke(tmp_path, seed=0)
        again = run_smoke(tmp_path, seed=0)  # resumes both finished runs: same numbers, no training
    finally:
        torch.set_num_threads(threads)
    assert metrics == again
    assert metrics["classifier.test_accuracy"] >= 0.9
    assert metrics["autoencoder.last_train_loss"] < 0.5 * metrics["autoencoder.first_train_loss"]
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["metrics"] == pytest.approx(metrics)
    assert (tmp_path / "classifier" / "model.pt").is_file() and (tmp_path / "autoencoder" / "model.pt").is_file()
