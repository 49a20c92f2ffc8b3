"""Schedules, EMA, batching and config validation: each against its formula or an independent count."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from xairepro.config import resolve_config
from xairepro.errors import ConfigError
from xairepro.train import EMA, Engine, ObjectiveBase, OptimizerConfig, ScheduleConfig, TrainConfig, lr_factor
from xairepro.train.batches import BatchSource
from xairepro.train.checkpoint import checkpoint_weights


class _Slope(nn.Module):
    """One weight w; the objective's loss is w itself, so plain SGD moves w by exactly -lr per step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        return self.w * torch.ones(x.shape[0], dtype=torch.float64)


class _Record(ObjectiveBase):
    """Loss = mean(model(x)); remembers the weights seen at every training step."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.Tensor]] = []

    def loss(self, model, batch):
        if torch.is_grad_enabled():
            self.seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return model(batch[0]).mean(), {}


def _run_lrs(schedule: ScheduleConfig, epochs: int, n: int, batch: int) -> list[float]:
    cfg = TrainConfig(epochs=epochs, batch_size=batch, accelerator="cpu", schedule=schedule,
                      optimizer=OptimizerConfig(name="sgd", lr=0.5, momentum=0.0))
    model, obj = _Slope(), _Record()
    Engine(cfg).fit(model, obj, (torch.zeros(n, 1),))
    ws = [s["w"].item() for s in obj.seen] + [model.w.item()]
    return [ws[k] - ws[k + 1] for k in range(len(ws) - 1)]


def test_lico_cosine_per_step_is_applied_by_the_engine():
    lrs = _run_lrs(ScheduleConfig(name="lico-cosine", per="step"), epochs=3, n=10, batch=4)  # 3 steps/epoch
    total = 9
    assert len(lrs) == total
    for k, lr in enumerate(lrs):
        assert lr == pytest.approx(0.5 * math.cos(7 * math.pi * k / (16 * total)), abs=1e-12)


def test_per_epoch_cosine_with_warmup_is_applied_by_the_engine():
    lrs = _run_lrs(ScheduleConfig(name="cosine", per="epoch", warmup=1), epochs=4, n=6, batch=3)  # 2 steps/epoch
    expected_epoch = [0.5 * 1.0] + [0.5 * 0.5 * (1 + math.cos(math.pi * u / 3)) for u in range(3)]
    assert lrs == pytest.approx([e for e in expected_epoch for _ in range(2)], abs=1e-12)


def test_grad_clip_scales_the_step_to_the_max_norm_and_val_every_skips_epochs():
    # loss = w with d loss / dw = 1: clipping to 0.25 makes every plain SGD step 0.5 * 0.25 / (1 + 1e-6)
    # (clip_grad_norm_ scales by max_norm / (norm + 1e-6))
    cfg = TrainConfig(epochs=5, batch_size=4, accelerator="cpu", grad_clip=0.25, val_every=2,
                      optimizer=OptimizerConfig(name="sgd", lr=0.5, momentum=0.0))
    model, obj = _Slope(), _Record()
    result = Engine(cfg).fit(model, obj, (torch.zeros(8, 1),), (torch.zeros(4, 1),))
    ws = [s["w"].item() for s in obj.seen] + [model.w.item()]
    assert [ws[k] - ws[k + 1] for k in range(len(ws) - 1)] == pytest.approx([0.125 / (1 + 1e-6)] * 10, abs=1e-12)
    # validation after epochs 2 and 4 (every 2nd) and after the last one
    assert [h["epoch"] for h in result.history if "val/loss" in h] == [2, 4, 5]


@pytest.mark.parametrize("name", ["none", "cosine", "lico-cosine", "step"])
def test_lr_factor_formulas(name):
    cfg = ScheduleConfig(name=name, warmup=3, milestones=[5, 8], gamma=0.5)
    total = 12
    for t in range(3):
        assert lr_factor(cfg, t, total) == pytest.approx((t + 1) / 3)
    for t in range(3, total):
        u, span = t - 3, total - 3
        expected = {"none": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * u / span)),
                    "lico-cosine": math.cos(7 * math.pi * u / (16 * span)),
                    "step": 0.5 ** ((t >= 5) + (t >= 8))}[name]
        assert lr_factor(cfg, t, total) == pytest.approx(expected, abs=1e-15)
    # LICO's schedule ends at cos(7 pi / 16) = 0.195 of eta_0, never at zero
    assert lr_factor(ScheduleConfig(name="lico-cosine"), 100, 100) == pytest.approx(math.cos(7 * math.pi / 16))


def test_ema_unit_recursion_and_applied_restores():
    lin = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(lin, 0.8)
    expected = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in lin.state_dict().items()}
    for step in range(5):
        with torch.no_grad():
            for p in lin.parameters():
                p.add_(torch.randn(p.shape))
        lin.train()
        lin(torch.randn(4, 3))  # moves BatchNorm's running statistics and num_batches_tracked
        ema.update()
        for k, v in lin.state_dict().items():
            if v.is_floating_point():
                expected[k] = 0.8 * expected[k] + 0.2 * v.double()
            else:
                expected[k] = v.clone()
    got = ema.state_dict()
    assert got["1.num_batches_tracked"].item() == 5
    for k in expected:
        assert torch.allclose(got[k].to(expected[k].dtype), expected[k], rtol=1e-6, atol=1e-7), k
    live = {k: v.clone() for k, v in lin.state_dict().items()}
    with pytest.raises(RuntimeError):
        with ema.applied():
            assert torch.allclose(lin[0].weight.double(), expected["0.weight"], atol=1e-6)
            raise RuntimeError("boom")
    assert all(torch.equal(live[k], v) for k, v in lin.state_dict().items())


def test_engine_ema_equals_the_recursion_over_its_steps(tmp_path: Path):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    class Sq(_Record):
        def loss(self, m, batch):
            super().loss(m, batch)
            return (m(batch[0]) - batch[1]).square().mean(), {}

    obj = Sq()
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    cfg = TrainConfig(epochs=2, batch_size=8, accelerator="cpu", ema=0.7, checkpoint_every=2,
                      optimizer=OptimizerConfig(name="sgd", lr=0.1))
    Engine(cfg, tmp_path).fit(model, obj, (x, y))
    thetas = obj.seen + [checkpoint_weights(tmp_path / "checkpoints" / "epoch_0002.pt")]
    shadow = {k: v.double() for k, v in thetas[0].items()}
    for theta in thetas[1:]:
        shadow = {k: 0.7 * shadow[k] + 0.3 * theta[k].double() for k in shadow}
    for k, v in model.state_dict().items():  # after fit the model holds the EMA weights
        assert torch.allclose(v.double(), shadow[k], rtol=1e-6, atol=1e-7), k
    assert not torch.allclose(model.weight, thetas[-1]["weight"])


class _ListDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_batches_tensor_path_equals_dataloader_path_and_shards_are_disjoint():
    x, y = torch.arange(23.0).unsqueeze(1), torch.arange(23)
    fast = BatchSource((x, y), 5)
    slow = BatchSource(_ListDataset(x, y), 5, num_workers=0)
    assert len(fast) == len(slow) == 5
    a = [b for b in fast.epoch(seed=3)]
    b = [b for b in slow.epoch(seed=3)]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert sorted(torch.cat([p[1] for p in a]).tolist()) == list(range(23))
    assert [p[1].tolist() for p in BatchSource((x, y), 5).epoch(None)][0] == [0, 1, 2, 3, 4]
    shards = [torch.cat([p[1] for p in BatchSource((x, y), 4, rank=r, world_size=2).epoch(seed=3)]) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 11
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    with pytest.raises(ValueError, match="empty"):
        BatchSource((x[:0],), 4)
    with pytest.raises(ValueError, match="disagree"):
        BatchSource((x, y[:3]), 4)


@pytest.mark.parametrize("override, match", [
    (["epochs=0"], "epochs"),
    (["optimizer.name=rmsprop"], "optimizer.name must be one of sgd, adam, adamw"),
    (["schedule.name=linear"], "schedule.name"),
    (["schedule.per=batch"], "schedule.per"),
    (["precision=16-mixed"], "precision"),
    (["ema=1.5"], "ema"),
    (["early_stopping.mode=up"], "early_stopping.mode"),
    (["devices=2"], "strategy"),
    (["batch_size=abc"], "batch_size"),
    (["no_such_key=1"], "no_such_key"),
    (["optimizer.nesterov=true", "optimizer.name=adam"], "nesterov"),
    (["schedule.name=step"], "milestones"),
])
def test_invalid_config_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(TrainConfig, overrides=override)


def test_unknown_augmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown augmentation"):
        Engine(TrainConfig(augment="crop-flop"))
