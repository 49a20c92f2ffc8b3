"""``xairepro saliency`` end to end on a saved small-cnn and generated shapes-seg, plus bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from xairepro.cli import main
from xairepro.data import load
from xairepro.explain import GradCAM
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion, soft_iou
from xairepro.models import build_model
from xairepro.train import load_model, save_model

DATA = ["--data", "shapes-seg", "--data-option", "n=40", "--data-option", "size=32"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    info = load("shapes-seg", "test", n=40, size=32).info
    model = build_model("small-cnn", num_classes=10, width=8, mean=list(info.mean), std=list(info.std))
    path = tmp_path_factory.mktemp("ck") / "small.pt"
    save_model(path, model)
    return path


def test_end_to_end(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sal"
    rc = main(["saliency", "--checkpoint", str(checkpoint), *DATA, "--methods", "gradcam,gradcampp,groupcam,rise",
               "--protocol", "petsiuk", "--n-images", "5", "--rise-masks", "40", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "± " in captured.out and "gradcampp" in captured.out
    for name in ("saliency_grid.png", "curves.png", "per_image.csv", "summary.csv", "summary.md", "maps.pt",
                 "protocol.json"):
        assert (out / name).stat().st_size > 0, name
    rows = pd.read_csv(out / "per_image.csv")
    assert len(rows) == 5 * 4 and set(rows["method"]) == {"gradcam", "gradcampp", "groupcam", "rise"}
    assert rows["soft_iou"].between(0, 1).all()
    record = json.loads((out / "protocol.json").read_text())
    assert record["protocol_digest"] == InsertionDeletionProtocol.petsiuk().digest
    assert record["protocol"]["n_steps"] == 28 and "pixel space" in record["substrates"]

    # the numbers are those of the library called directly
    model = load_model(checkpoint)
    ds = load("shapes-seg", "test", n=40, size=32)
    x, y = ds.batch(list(range(5)))
    maps = GradCAM(model)(x)
    direct = insertion_deletion(model, x, maps, InsertionDeletionProtocol.petsiuk())
    got = rows[rows["method"] == "gradcam"].sort_values("image")
    torch.testing.assert_close(torch.tensor(got["insertion"].to_numpy(), dtype=torch.float32), direct.insertion,
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(got["deletion"].to_numpy(), dtype=torch.float32), direct.deletion,
                               atol=1e-5, rtol=0)
    iou = soft_iou(maps, ds.masks[:5])
    torch.testing.assert_close(torch.tensor(got["soft_iou"].to_numpy(), dtype=torch.float32), iou, atol=1e-5, rtol=0)
    summary = pd.read_csv(out / "summary.csv")
    mean = summary.loc[summary["method"] == "gradcam", "insertion_mean"].item()
    assert mean == pytest.approx(float(direct.insertion.mean()), abs=1e-5)
    saved = torch.load(out / "maps.pt", weights_only=True)
    assert saved["rise"].shape == (5, 32, 32)


def test_lico_fact_protocol_uses_labels(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "lf"
    rc = main(["saliency", "--checkpoint", str(checkpoint), *DATA, "--methods", "gradcam", "--protocol",
               "lico-fact", "--n-images", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = pd.read_csv(out / "per_image.csv")
    assert (rows["target"] == rows["label"]).all()


# Bad usage: one row each in test_cli_bad_inputs.py.


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["saliency", "--checkpoint", str(checkpoint), *DATA, "--device", "cuda", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "CUDA is not available" in err and "corrupted" not in err


def test_retrain_free_metrics_at_the_cli(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xairepro.metrics import FaithfulnessSuite, retrain_free_scores

    out = tmp_path / "faith"
    rc = main(["saliency", "--checkpoint", str(checkpoint), *DATA, "--methods", "gradcam", "--n-images", "4",
               "--metrics", "road,pixel-flipping,faithfulness-correlation,confidence-change", "--seed", "3",
               "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "road_morf ↓" in captured.out and "faithfulness_correlation ↑" in captured.out
    assert not (out / "curves.png").exists()                  # no insertion/deletion asked for
    rows = pd.read_csv(out / "per_image.csv").sort_values("image")
    assert "insertion" not in rows.columns
    record = json.loads((out / "protocol.json").read_text())
    assert record["metrics"] == ["road", "pixel-flipping", "faithfulness-correlation", "confidence-change"]
    assert record["faithfulness_suite"]["seed"] == 3
    model = load_model(checkpoint)
    x, _ = load("shapes-seg", "test", n=40, size=32).batch(list(range(4)))   # --seed seeds the metrics, not the split
    direct = retrain_free_scores(model, x, GradCAM(model)(x), suite=FaithfulnessSuite(seed=3))
    for name, values in direct.items():
        torch.testing.assert_close(torch.tensor(rows[name].to_numpy(), dtype=torch.float32), values,
                                   atol=1e-4, rtol=0, msg=name)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["road_lerf_mean"].item() == pytest.approx(float(direct["road_lerf"].mean()), abs=1e-5)
