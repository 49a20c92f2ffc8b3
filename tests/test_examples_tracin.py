"""TracIn: 1-D closed form, checkpoints as state dicts or files, learning rates, model untouched, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.explain import TracIn


pytestmark = pytest.mark.usefixtures("one_thread")


class ScalarAE(nn.Module):
    """y = w·x: the encoder is one weight, the decoder the identity."""

    def __init__(self, w: float = 0.3) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.encoder.weight.fill_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def rec_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).sum(1)


def states(ws: list[float]) -> list[dict[str, torch.Tensor]]:
    return [{"encoder.weight": torch.tensor([[w]])} for w in ws]


def closed_form(x_test: torch.Tensor, x_train: torch.Tensor, ws: list[float], lrs: list[float]) -> torch.Tensor:
    """score[i, j] = sum_c lr_c (2 x_i² (w_c - 1)) (2 x_j² (w_c - 1))."""
    out = torch.zeros(x_test.shape[0], x_train.shape[0], dtype=torch.float64)
    for w, lr in zip(ws, lrs):
        gi = 2 * x_test[:, 0].double() ** 2 * (w - 1)
        gj = 2 * x_train[:, 0].double() ** 2 * (w - 1)
        out += lr * gi[:, None] * gj[None, :]
    return out


def test_one_dimensional_closed_form() -> None:
    torch.manual_seed(0)
    x_train = torch.randn(11, 1)
    x_test = torch.randn(5, 1)
    ws = [0.2, 0.7, 1.4]
    model = ScalarAE()
    scores = TracIn(model, rec_loss, model.encoder, checkpoints=states(ws)).attribute(x_test, x_train)
    torch.testing.assert_close(scores.double(), closed_form(x_test, x_train, ws, [1, 1, 1]), rtol=1e-5, atol=1e-6)
    lrs = [0.1, 0.01, 0.5]
    weighted = TracIn(model, rec_loss, checkpoints=states(ws), learning_rates=lrs).attribute(x_test, x_train)
    torch.testing.assert_close(weighted.double(), closed_form(x_test, x_train, ws, lrs), rtol=1e-5, atol=1e-6)


def test_checkpoint_files_equal_state_dicts_and_model_untouched(tmp_path) -> None:
    torch.manual_seed(0)
    x_train, x_test = torch.randn(7, 1), torch.randn(3, 1)
    ws = [0.5, 0.9]
    paths = []
    for c, state in enumerate(states(ws)):
        path = tmp_path / f"epoch_{c:04d}.pt"
        torch.save({"model": state, "epoch": c}, path)  # nested, as training checkpoints store it
        paths.append(path)
    torch.save(states([1.2])[0], tmp_path / "plain.pt")
    model = ScalarAE(w=-3.0)
    model.train()
    before = model.encoder.weight.detach().clone()
    from_files = TracIn(model, rec_loss, checkpoints=paths + [tmp_path / "plain.pt"]).attribute(x_test, x_train)
    expected = closed_form(x_test, x_train, ws + [1.2], [1, 1, 1])
    torch.testing.assert_close(from_files.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.encoder.weight.detach(), before)
    assert model.training and model.encoder.weight.grad is None


def test_identity_features_each_example_is_its_own_top_proponent() -> None:
    torch.manual_seed(0)

    class LinearAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Linear(6, 3, bias=False)
            self.decoder = nn.Linear(3, 6, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x))

    model = LinearAE()
    ckpts = []
    for _ in range(3):
        ckpts.append({k: v.clone() for k, v in model.state_dict().items()})
        with torch.no_grad():
            model.encoder.weight.add_(0.1 * torch.randn(3, 6))
    x = torch.eye(6) * 1.5
    scores = TracIn(model, rec_loss, checkpoints=ckpts).attribute(x, x)
    assert torch.equal(scores.argmax(1), torch.arange(6))
    off = scores - torch.diag(torch.diag(scores))
    assert off.abs().max() < 1e-6 * scores.diag().abs().min()


def test_scores_in_eval_mode_for_a_model_left_in_train_mode() -> None:
    """BatchNorm uses the checkpoint's running statistics and dropout is off; the caller's model is untouched."""
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 6))
    ckpts = []
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        ckpts.append({k: v.clone() for k, v in model.state_dict().items()})
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_train, x_test = torch.randn(9, 6), torch.randn(4, 6)
    scores = TracIn(model, rec_loss, checkpoints=ckpts).attribute(x_test, x_train)
    expected = torch.zeros(4, 9)
    for state in ckpts:  # one backward per example, in eval mode, on a copy loaded with the checkpoint
        ref = copy.deepcopy(model).eval()
        ref.load_state_dict(state)
        grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(rec_loss(ref, x[i:i + 1])[0],
                                                                       list(ref.parameters()))])
                 for x in (x_test, x_train) for i in range(x.shape[0])]
        g = torch.stack(grads)
        expected += g[:4] @ g[4:].T
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_projection_is_seeded_and_approximates() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    ckpts = [model.state_dict()]
    x_train, x_test = torch.randn(10, 8), torch.randn(4, 8)
    full = TracIn(model, rec_loss, checkpoints=ckpts).attribute(x_test, x_train)
    p1 = TracIn(model, rec_loss, checkpoints=ckpts, projection_dim=3000, seed=5).attribute(x_test, x_train)
    p2 = TracIn(model, rec_loss, checkpoints=ckpts, projection_dim=3000, seed=5).attribute(x_test, x_train)
    assert torch.equal(p1, p2)
    assert (p1 - full).abs().max() < 0.15 * full.abs().max()


def test_errors(tmp_path) -> None:
    model = ScalarAE()
    x = torch.randn(4, 1)
    with pytest.raises(UsageError, match="at least one checkpoint"):
        TracIn(model, rec_loss, checkpoints=[])
    with pytest.raises(UsageError, match="at least one checkpoint"):
        TracIn(model, rec_loss)
    with pytest.raises(UsageError, match="learning_rates"):
        TracIn(model, rec_loss, checkpoints=states([0.1]), learning_rates=[1.0, 2.0])
    with pytest.raises(CheckpointError, match="does not exist"):
        TracIn(model, rec_loss, checkpoints=[tmp_path / "missing.pt"]).attribute(x, x)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load"):
        TracIn(model, rec_loss, checkpoints=[tmp_path / "junk.pt"]).attribute(x, x)
    with pytest.raises(CheckpointError, match="does not match"):
        TracIn(model, rec_loss, checkpoints=[{"other.weight": torch.zeros(1, 1)}]).attribute(x, x)
    with pytest.raises(UsageError, match="not a parameter"):
        TracIn(model, rec_loss, [nn.Parameter(torch.zeros(1))], checkpoints=states([0.1]))
    with pytest.raises(UsageError, match="no examples"):
        TracIn(model, rec_loss, checkpoints=states([0.1])).attribute(x, x[:0])
