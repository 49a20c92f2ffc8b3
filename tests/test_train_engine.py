"""Engine.fit / evaluate: learning happens, seeds reproduce, resume is exact, state is where promised."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xairepro.errors import CheckpointError, ConfigError
from xairepro.train import (
    AutoencoderObjective,
    ClassifierObjective,
    EarlyStoppingConfig,
    Engine,
    ObjectiveBase,
    OptimizerConfig,
    TrainConfig,
    checkpoint_weights,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _digits8(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    from xairepro.data import load

    return load("digits", split).tensors()  # (N, 1, 8, 8) in [0, 1], labels


def _mlp(seed: int = 0, hidden: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 10))


def _ae(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 64), nn.Sigmoid(),
                         nn.Unflatten(1, (1, 8, 8)))


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=64, accelerator="cpu", optimizer=OptimizerConfig(name="adam", lr=3e-3))
    base.update(kw)
    return TrainConfig(**base)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_digits_classifier_learns_and_evaluate_matches_history():
    x, y = _digits8()
    xt, yt = _digits8("test")
    model = _mlp(hidden=64)
    result = Engine(_cfg(epochs=8, optimizer=OptimizerConfig(lr=1e-2))).fit(model, ClassifierObjective(), (x, y),
                                                                            (xt, yt))
    assert len(result.history) == 8 and result.epochs_run == 8
    assert result.last["val/accuracy"] >= 0.9
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    # evaluate() on the same data gives the last validation record, with an independent accuracy count
    metrics = Engine(_cfg()).evaluate(model, ClassifierObjective(), (xt, yt))
    assert metrics["accuracy"] == pytest.approx(result.last["val/accuracy"], abs=1e-6)
    model.eval()
    with torch.no_grad():
        direct = (model(xt).argmax(1) == yt).float().mean().item()
    assert metrics["accuracy"] == pytest.approx(direct, abs=1e-6)


def test_autoencoder_loss_falls_with_each_perturbation():
    x, _ = _digits8()
    for perturbation in ("identity", "noise", "mask"):
        result = Engine(_cfg(epochs=4)).fit(_ae(), AutoencoderObjective(perturbation), (x,))
        losses = [h["train/loss"] for h in result.history]
        assert losses[-1] < 0.8 * losses[0], (perturbation, losses)


def test_same_seed_same_weights_other_seed_other_weights():
    x, y = _digits8()
    data = (x[:600], y[:600])
    runs = []
    for seed in (0, 0, 1):
        model = _mlp()
        Engine(_cfg(seed=seed)).fit(model, ClassifierObjective(), data)
        runs.append(_weights(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_evaluate_leaves_model_flags_and_global_rng_alone():
    x, y = _digits8()
    model = _mlp()
    model.train()
    ae = _ae()
    state = torch.get_rng_state()
    first = Engine(_cfg()).evaluate(ae, AutoencoderObjective("noise"), (x[:100],))
    assert torch.equal(torch.get_rng_state(), state)
    assert Engine(_cfg()).evaluate(ae, AutoencoderObjective("noise"), (x[:100],)) == first  # seeded noise
    Engine(_cfg()).evaluate(model, ClassifierObjective(), (x[:100], y[:100]))
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)


class _Crash(Exception):
    pass


class _CrashingObjective(ClassifierObjective):
    """Cross-entropy that raises after ``calls`` training steps (a crash in the middle of an epoch)."""

    def __init__(self, calls: int | None) -> None:
        super().__init__()
        self.calls = calls

    def loss(self, model, batch):
        if self.calls is not None and torch.is_grad_enabled():
            self.calls -= 1
            if self.calls < 0:
                raise _Crash
        return super().loss(model, batch)


def test_resume_after_crash_is_bit_identical(tmp_path: Path):
    x, y = _digits8()
    data, val = (x[:500], y[:500]), (x[500:700], y[500:700])
    cfg = _cfg(epochs=4, checkpoint_every=1, ema=0.9,
               optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4))
    cfg.schedule.name = "lico-cosine"
    reference = _mlp()
    ref = Engine(cfg, tmp_path / "ref").fit(reference, ClassifierObjective(), data, val)

    steps = 8  # ceil(500 / 64)
    model = _mlp()
    with pytest.raises(_Crash):  # dies in the third epoch, after two epochs were saved
        Engine(cfg, tmp_path / "run").fit(model, _CrashingObjective(2 * steps + 3), data, val)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch_0001.pt", "epoch_0002.pt"]
    fresh = _mlp(seed=123)  # another initialisation: everything must come from last.pt
    result = Engine(cfg, tmp_path / "run").fit(fresh, _CrashingObjective(None), data, val)
    assert result.resumed_from == 2 and result.epochs_run == 2
    assert _same(_weights(fresh), _weights(reference))
    assert result.history == ref.history
    for a, b in zip(ref.checkpoints, result.checkpoints):
        assert a.name == b.name
        assert _same(checkpoint_weights(a), checkpoint_weights(b))
    # a finished run "resumes" to its final state without training
    again = _mlp(seed=7)
    done = Engine(cfg, tmp_path / "run").fit(again, _CrashingObjective(0), data, val)
    assert done.epochs_run == 0 and _same(_weights(again), _weights(reference))


def test_validation_with_ema_evaluates_the_averaged_weights():
    x, y = _digits8()
    data, val = (x[:300], y[:300]), (x[300:500], y[300:500])
    cfg = _cfg(epochs=2, ema=0.9)
    model = _mlp()
    result = Engine(cfg).fit(model, ClassifierObjective(), data, val)
    # after fit the model holds the EMA weights (no early stopping); evaluating them again gives the last record
    again = Engine(cfg).evaluate(model, ClassifierObjective(), val)
    assert again["loss"] == pytest.approx(result.last["val/loss"], rel=1e-6)
    assert again["accuracy"] == pytest.approx(result.last["val/accuracy"], abs=1e-9)


def test_resume_with_other_config_or_model_is_refused(tmp_path: Path):
    x, y = _digits8()
    data = (x[:200], y[:200])
    Engine(_cfg(epochs=1), tmp_path).fit(_mlp(), ClassifierObjective(), data)
    with pytest.raises(CheckpointError, match="different training config"):
        Engine(_cfg(epochs=2), tmp_path).fit(_mlp(), ClassifierObjective(), data)
    with pytest.raises(CheckpointError, match="does not match"):
        Engine(_cfg(epochs=1), tmp_path).fit(_mlp(hidden=16), ClassifierObjective(), data)
    with pytest.raises(CheckpointError, match="AutoencoderObjective"):
        Engine(_cfg(epochs=1), tmp_path).fit(_ae(), AutoencoderObjective(), data)
    # progress and num_workers do not change the numbers: resuming with them changed is fine
    Engine(_cfg(epochs=1, num_workers=1), tmp_path).fit(_mlp(), ClassifierObjective(), data)


def test_corrupted_last_checkpoint_is_a_checkpoint_error(tmp_path: Path):
    x, y = _digits8()
    data = (x[:200], y[:200])
    Engine(_cfg(epochs=1), tmp_path).fit(_mlp(), ClassifierObjective(), data)
    raw = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        Engine(_cfg(epochs=1), tmp_path).fit(_mlp(), ClassifierObjective(), data)


class _ScriptedObjective(ObjectiveBase):
    """MSE of a linear model for training; its validation metric follows a fixed script, one value per epoch."""

    def __init__(self, script: list[float]) -> None:
        self.script = list(script)
        self.validations = 0

    def loss(self, model, batch):
        return model(batch[0]).square().mean(), {}

    def evaluate(self, model, batch):
        value = torch.tensor(float(self.script[self.validations]))
        self.validations += 1
        return {"score": value}

    def state_dict(self):
        return {"validations": self.validations}

    def load_state_dict(self, state):
        self.validations = int(state["validations"])


@pytest.mark.parametrize("mode, script, stop_epoch, best_epoch", [
    ("min", [5, 4, 4.5, 4.2, 4.1, 3, 2], 5, 2),         # patience 3: epochs 3, 4, 5 do not improve on 4
    ("max", [1, 2, 3, 3, 3.05, 3.0, 9], 6, 3),          # min_delta 0.1: 3.05 is no improvement on 3
])
def test_early_stopping_stops_at_the_right_epoch_and_restores_best(tmp_path: Path, mode, script, stop_epoch,
                                                                    best_epoch):
    x = torch.randn(32, 4)
    es = EarlyStoppingConfig(monitor="val/score", patience=3, mode=mode, min_delta=0.1 if mode == "max" else 0.0)
    cfg = _cfg(epochs=len(script), early_stopping=es, batch_size=32, checkpoint_every=1)
    model = nn.Linear(4, 1)
    result = Engine(cfg, tmp_path).fit(model, _ScriptedObjective(script), (x,), (x,))
    assert result.stopped_early
    assert len(result.history) == stop_epoch
    assert [h["val/score"] for h in result.history] == pytest.approx(script[:stop_epoch])
    assert result.best["epoch"] == best_epoch
    # the model holds the weights of the best epoch, which differ from the last ones
    assert _same(_weights(model), checkpoint_weights(tmp_path / "checkpoints" / f"epoch_{best_epoch:04d}.pt"))
    assert not _same(_weights(model), checkpoint_weights(tmp_path / "checkpoints" / f"epoch_{stop_epoch:04d}.pt"))
    # resuming a stopped run trains no further
    again = nn.Linear(4, 1)
    done = Engine(cfg, tmp_path).fit(again, _ScriptedObjective(script), (x,), (x,))
    assert done.epochs_run == 0 and _same(_weights(again), _weights(model))


def test_unknown_monitor_is_a_config_error():
    x, y = _digits8()
    cfg = _cfg(epochs=2, early_stopping=EarlyStoppingConfig(monitor="val/acc"))
    with pytest.raises(ConfigError, match="val/accuracy"):
        Engine(cfg).fit(_mlp(), ClassifierObjective(), (x[:100], y[:100]), (x[100:200], y[100:200]))


def test_bf16_mixed_precision_trains_on_cpu():
    x, y = _digits8()
    model = _mlp(hidden=64)
    seen: dict[bool, set[torch.dtype]] = {True: set(), False: set()}  # dtype of the first layer's output
    model[1].register_forward_hook(lambda module, args, out: seen[torch.is_grad_enabled()].add(out.dtype))
    engine = Engine(_cfg(epochs=3, precision="bf16-mixed"))
    result = engine.fit(model, ClassifierObjective(), (x[:600], y[:600]), (x[600:700], y[600:700]))
    losses = [h["train/loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    # the layers really ran under bf16 autocast (training and validation); the weights stay float32
    assert seen == {True: {torch.bfloat16}, False: {torch.bfloat16}}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    seen[False].clear()
    engine.evaluate(model, ClassifierObjective(), (x[600:700], y[600:700]))
    assert seen[False] == {torch.bfloat16}


def test_missing_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: accelerator=cuda is valid here")
    with pytest.raises(ConfigError, match="accelerator=cuda"):
        Engine(_cfg(accelerator="cuda")).fit(_mlp(), ClassifierObjective(), _digits8())


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_file_style_dataset_goes_through_a_dataloader_with_the_same_numbers():
    x, y = _digits8()
    fast, slow = _mlp(), _mlp()
    Engine(_cfg()).fit(fast, ClassifierObjective(), (x[:300], y[:300]))
    Engine(_cfg()).fit(slow, ClassifierObjective(), _ListDataset(x[:300], y[:300]))
    assert _same(_weights(fast), _weights(slow))


class _TemperatureObjective(ClassifierObjective):
    """CE of logits / T with a learnable temperature owned by the objective (an extra trainable module)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Linear(1, 1, bias=False)
        nn.init.ones_(self.scale.weight)
        self.steps = 0

    def modules(self):
        return [self.scale]

    def loss(self, model, batch):
        self.steps += int(torch.is_grad_enabled())
        logits = model(batch[0]) * self.scale.weight.squeeze()
        return nn.functional.cross_entropy(logits, batch[1]), {}

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])


def test_objective_modules_are_trained_and_saved_with_the_run(tmp_path: Path):
    x, y = _digits8()
    data = (x[:256], y[:256])
    obj = _TemperatureObjective()
    Engine(_cfg(epochs=2), tmp_path).fit(_mlp(), obj, data)
    assert obj.scale.weight.item() != 1.0 and obj.steps == 8
    again = _TemperatureObjective()
    Engine(_cfg(epochs=2), tmp_path).fit(_mlp(), again, data)  # finished run: restores, trains nothing
    assert again.steps == 8 and torch.equal(again.scale.weight, obj.scale.weight)
