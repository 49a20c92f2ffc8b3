"""ROAR: retraining from the same initial weights through the engine, on data with features removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro import train
from xairepro.errors import UsageError
from xairepro.metrics import roar
from xairepro.metrics.consistency import topk_masks
from xairepro.metrics.roar import RoarResult, removed_inputs


class RecordingObjective(train.AutoencoderObjective):
    """Records, at every training step, the first weight seen and the inputs trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss(self, model, batch):
        if torch.is_grad_enabled():
            weight = next(p for p in model.parameters()).detach().clone()
            self.seen.append((weight, batch[0].detach().clone()))
        return super().loss(model, batch)


def tiny_ae() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Tanh(), nn.Linear(3, 16), nn.Unflatten(1, (1, 4, 4)))


def test_removed_inputs_zero_exactly_the_top_positions():
    x = torch.rand(3, 2, 4, 4) + 0.1
    attr = torch.randn(3, 2, 4, 4)
    out = removed_inputs(x, attr, 0.25)
    masks = topk_masks(attr, [0.25])[0]
    assert torch.equal(out == 0, masks.unsqueeze(1).expand_as(x))
    assert (x > 0).all()  # input untouched


def test_roar_retrains_from_the_same_initial_weights_on_masked_data():
    gen = torch.Generator().manual_seed(1)
    x_train, x_test = torch.rand(12, 1, 4, 4, generator=gen) + 0.1, torch.rand(6, 1, 4, 4, generator=gen)
    attr = torch.randn(12, 1, 4, 4, generator=gen)
    model = tiny_ae()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    objective = RecordingObjective()
    cfg = train.TrainConfig(epochs=1, batch_size=12, seed=0, accelerator="cpu")
    result = roar(model, objective, x_train, x_test, {"IG": attr, "same": attr.clone()}, [0.0, 0.25, 0.5],
                  train_config=cfg, initial_state=init)
    assert isinstance(result, RoarResult)
    assert result.fractions == [0.0, 0.25, 0.5]
    # 1 shared unmodified run + 2 methods x 2 fractions, one step each, all from the same weights
    assert len(objective.seen) == 5
    for weight, _ in objective.seen:
        torch.testing.assert_close(weight, init["1.weight"])
    zero_shares = [float((x == 0).float().mean()) for _, x in objective.seen]
    assert zero_shares == pytest.approx([0.0, 0.25, 0.5, 0.25, 0.5])
    # identical attributions, identical retraining
    assert result.test_loss["IG"] == result.test_loss["same"]
    assert result.test_loss["IG"][0] == result.test_loss["same"][0]
    # the caller's model is untouched
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, init[k])
    rows = result.rows()
    assert len(rows) == 6 and {"method", "fraction", "test_loss"} <= set(rows[0])


def test_roar_random_control_and_resume(tmp_path):
    x = torch.rand(10, 1, 4, 4)
    cfg = train.TrainConfig(epochs=2, batch_size=5, seed=0, accelerator="cpu")
    a = roar(tiny_ae(), train.AutoencoderObjective(), x, x[:4], {"Random": "random"}, [0.0, 0.5],
             train_config=cfg, out_dir=tmp_path, seed=3)
    assert (tmp_path / "Random" / "p50").is_dir() and (tmp_path / "unmodified").is_dir()
    b = roar(tiny_ae(), train.AutoencoderObjective(), x, x[:4], {"Random": "random"}, [0.0, 0.5],
             train_config=cfg, seed=3)
    assert a.test_loss == b.test_loss
    assert all(v > 0 for v in a.test_loss["Random"])


def test_roar_bad_input():
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(UsageError, match="fractions"):
        roar(tiny_ae(), train.AutoencoderObjective(), x, x, {"r": "random"}, [2.0])
    with pytest.raises(UsageError, match="empty"):
        roar(tiny_ae(), train.AutoencoderObjective(), x, x, {}, [0.1])
    with pytest.raises(UsageError, match="attributions have shape"):
        roar(tiny_ae(), train.AutoencoderObjective(), x, x, {"r": torch.rand(4, 3)}, [0.1])
    with pytest.raises(UsageError, match="x_test examples"):
        roar(tiny_ae(), train.AutoencoderObjective(), x, torch.rand(2, 1, 5, 5), {"r": "random"}, [0.1])


def test_package_name_is_the_function_even_after_the_submodule_is_imported():
    import importlib

    import xairepro.metrics.roar  # noqa: F401  (binds the package attribute on import)

    metrics = importlib.import_module("xairepro.metrics")
    assert callable(metrics.roar) and metrics.roar.__name__ == "roar"
    from xairepro.metrics import roar as again

    assert again is roar


class EvalRecordingObjective(RecordingObjective):
    """Also records the inputs every evaluation sees."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluated: list[torch.Tensor] = []

    def evaluate(self, model, batch):
        self.evaluated.append(batch[0].detach().clone())
        return super().evaluate(model, batch)


def _rows_sorted(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return flat[torch.argsort(flat.sum(1))]


def test_roar_starts_from_initial_state_trains_on_removed_inputs_and_tests_on_clean_data():
    gen = torch.Generator().manual_seed(2)
    x_train, x_test = torch.rand(12, 1, 4, 4, generator=gen) + 0.1, torch.rand(6, 1, 4, 4, generator=gen) + 0.1
    attr = torch.randn(12, 1, 4, 4, generator=gen)
    model = tiny_ae()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # the caller's current weights are not the initial ones
        for p in model.parameters():
            p.add_(1.0)
    current = {k: v.clone() for k, v in model.state_dict().items()}
    objective = EvalRecordingObjective()
    cfg = train.TrainConfig(epochs=1, batch_size=12, seed=0, accelerator="cpu")
    result = roar(model, objective, x_train, x_test, {"IG": attr}, [0.25, 0.5], train_config=cfg,
                  initial_state=init)
    assert len(objective.seen) == 2
    for (weight, seen), fraction in zip(objective.seen, [0.25, 0.5]):
        torch.testing.assert_close(weight, init["1.weight"])
        assert torch.equal(_rows_sorted(seen), _rows_sorted(removed_inputs(x_train, attr, fraction)))
    assert objective.evaluated and all(torch.equal(_rows_sorted(e), _rows_sorted(x_test)) for e in objective.evaluated)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, current[k])
    # the reported loss is the engine's evaluation of that retraining on the clean test set
    net = tiny_ae()
    net.load_state_dict(init)
    engine = train.Engine(cfg)
    engine.fit(net, train.AutoencoderObjective(), (removed_inputs(x_train, attr, 0.5),))
    clean_loss = engine.evaluate(net, train.AutoencoderObjective(), (x_test,))["loss"]
    assert result.test_loss["IG"][1] == pytest.approx(clean_loss)


def test_roar_trains_the_all_removed_case_once():
    """At 100% every method removes every feature: one shared retraining, on fully replaced inputs."""
    gen = torch.Generator().manual_seed(2)
    x_train, x_test = torch.rand(8, 1, 4, 4, generator=gen) + 0.1, torch.rand(4, 1, 4, 4, generator=gen)
    objective = RecordingObjective()
    cfg = train.TrainConfig(epochs=1, batch_size=8, seed=0, accelerator="cpu")
    result = roar(tiny_ae(), objective, x_train, x_test,
                  {"A": torch.randn(8, 1, 4, 4, generator=gen), "B": torch.randn(8, 1, 4, 4, generator=gen),
                   "Random": "random"}, [0.0, 0.5, 1.0], train_config=cfg)
    # method by method: unmodified (shared), A 50%, all removed (shared), B 50%, Random 50%; one step each
    assert [float((x == 0).float().mean()) for _, x in objective.seen] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.5])
    assert result.test_loss["A"][2] == result.test_loss["B"][2] == result.test_loss["Random"][2]
    # the shared value is what a method of its own would get at 100%
    alone = roar(tiny_ae(), train.AutoencoderObjective(), x_train, x_test, {"A": torch.ones(8, 1, 4, 4)}, [1.0],
                 train_config=cfg)
    assert alone.test_loss["A"][0] == pytest.approx(result.test_loss["A"][2])
