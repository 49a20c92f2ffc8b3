"""save_model / load_model and checkpoint loading: round trips, weights_only, errors in the user's terms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.models import build_model
from xairepro.train import checkpoint_weights, load_checkpoint, load_model, read_model_metadata, save_model


def test_save_load_model_round_trip_with_metadata(tmp_path: Path):
    model = build_model("mnist-ae", latent_dim=3, seed=0)
    with torch.no_grad():  # make the BatchNorm buffers non-default too
        model.encoder.cnn.bn2.running_mean.add_(0.5)
    path = save_model(tmp_path / "m.pt", model, dataset="digits", class_names=["0", "1"], mean=(0.1,), method="ae")
    # the file is loadable with weights_only=True and holds no pickled objects
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == model.config
    loaded = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.metadata == {"dataset": "digits", "class_names": ["0", "1"], "mean": (0.1,), "method": "ae"}
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), loaded(x))
    assert read_model_metadata(path)["config"]["latent_dim"] == 3


def test_save_model_needs_a_config_and_plain_metadata(tmp_path: Path):
    with pytest.raises(UsageError, match="build_model"):
        save_model(tmp_path / "m.pt", nn.Linear(2, 2))
    with pytest.raises(TypeError, match="metadata.bad"):
        save_model(tmp_path / "m.pt", build_model("mnist-ae", seed=0), bad=object())
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_files_raise_checkpoint_error(tmp_path: Path, damage: str):
    path = save_model(tmp_path / "m.pt", build_model("mnist-ae", seed=0))
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 3], "garbage": b"not a checkpoint at all", "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model(path)


def test_foreign_and_mismatched_checkpoints(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an xairepro checkpoint"):
        load_model(tmp_path / "foreign.pt")
    # a pickled module (not weights_only-safe) is refused rather than executed
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match=r"holds Python objects \(torch.nn.modules.linear.Linear\) that a "
                       "safe load refuses") as caught:
        load_checkpoint(tmp_path / "pickled.pt")
    assert "weights_only" not in str(caught.value)  # PyTorch's advice to load it unsafely is not passed on
    # weights that do not fit the recorded architecture
    path = save_model(tmp_path / "m.pt", build_model("mnist-ae", latent_dim=4, seed=0))
    obj = torch.load(path, weights_only=True)
    obj["config"]["latent_dim"] = 5
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)
    obj["config"]["name"] = "no-such-model"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="cannot be built"):
        load_model(path)
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(path, expect="xairepro-epoch")
    assert set(checkpoint_weights(path)) == set(build_model("mnist-ae", seed=0).state_dict())
