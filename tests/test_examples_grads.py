"""Per-example gradients: closed forms, invariances (vmap vs chunked vs loop), projection, model state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import per_example_gradients
from xairepro.explain.per_example_grads import random_projection, resolve_params


pytestmark = pytest.mark.usefixtures("one_thread")


class LinearAE(nn.Module):
    def __init__(self, dim: int = 5, latent: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Linear(dim, latent, bias=False)
        self.decoder = nn.Linear(latent, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def sum_sq_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).sum(1)


class ConvBNAE(nn.Module):
    """Small conv AE with BatchNorm and dropout, so eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Flatten(), nn.Linear(3 * 16, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 16), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view_as(x)


def mse_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).flatten(1).mean(1)


def loop_reference(model: nn.Module, loss_fn, x: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """One backward per example (the original's way), in eval mode."""
    model.eval()
    rows = []
    for i in range(x.shape[0]):
        loss = loss_fn(model, x[i:i + 1])[0]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def test_linear_autoencoder_closed_form() -> None:
    torch.manual_seed(1)
    model = LinearAE().double()
    x = torch.randn(7, 5, dtype=torch.float64)
    g = per_example_gradients(model, sum_sq_loss, x)  # encoder by convention
    w1, w2 = model.encoder.weight.detach(), model.decoder.weight.detach()
    residual = x @ w1.T @ w2.T - x                                      # (N, D)
    expected = 2 * torch.einsum("ad,nd,nb->nab", w2.T, residual, x)      # 2 W2ᵀ r xᵀ per example
    assert g.shape == (7, 10)
    torch.testing.assert_close(g, expected.reshape(7, -1), rtol=1e-10, atol=1e-12)


def test_matches_loop_and_chunked_and_restores_state() -> None:
    torch.manual_seed(0)
    model = ConvBNAE()
    model.train()
    with torch.no_grad():
        model.encoder[1].running_mean.uniform_(-0.5, 0.5)
        model.encoder[1].running_var.uniform_(0.5, 2.0)
    model.encoder[0].weight.grad = torch.ones_like(model.encoder[0].weight)
    model.decoder[0].weight.requires_grad_(False)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = torch.rand(37, 1, 4, 4)
    x_copy = x.clone()
    g_vmap = per_example_gradients(model, mse_loss, x, batch_size=8, strategy="vmap")
    g_chunk = per_example_gradients(model, mse_loss, x, batch_size=16, strategy="chunked")
    assert model.training and model.encoder[3].training
    assert torch.equal(model.encoder[0].weight.grad, torch.ones_like(model.encoder[0].weight))
    assert model.decoder[0].weight.grad is None and not model.decoder[0].weight.requires_grad
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(x, x_copy)
    ref = loop_reference(model, mse_loss, x, list(model.encoder.parameters()))
    torch.testing.assert_close(g_vmap, ref, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(g_chunk, ref, rtol=1e-4, atol=1e-7)
    # batch size is a memory knob only
    torch.testing.assert_close(per_example_gradients(model, mse_loss, x, batch_size=37), g_vmap,
                               rtol=1e-5, atol=1e-8)


class ItemModel(nn.Module):
    """Data-dependent control flow: vmap cannot batch `.item()`, the chunked fallback must take over."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return h * 2 if h.sum().item() > -1e9 else h


def test_auto_falls_back_when_vmap_cannot_batch() -> None:
    torch.manual_seed(0)
    model = ItemModel()
    x = torch.randn(20, 3)
    with pytest.raises(RuntimeError):
        per_example_gradients(model, mse_loss, x, strategy="vmap")
    g = per_example_gradients(model, mse_loss, x, strategy="auto", batch_size=7)
    ref = loop_reference(model, mse_loss, x, list(model.encoder.parameters()))
    torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-7)


def test_lstm_encoder_gradients() -> None:
    torch.manual_seed(0)

    class LSTMAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.LSTM(2, 3, batch_first=True)
            self.decoder = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x)[0])

    model = LSTMAE()
    x = torch.randn(9, 6, 2)
    g = per_example_gradients(model, mse_loss, x, batch_size=4)
    ref = loop_reference(model, mse_loss, x, list(model.encoder.parameters()))
    torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-7)


def test_params_selection_by_names_module_and_tensors() -> None:
    model = LinearAE()
    assert resolve_params(model) == ["encoder.weight"]
    assert resolve_params(model, model.decoder) == ["decoder.weight"]
    assert resolve_params(model, ["decoder.weight", "encoder.weight"]) == ["decoder.weight", "encoder.weight"]
    assert resolve_params(model, list(model.parameters())) == ["encoder.weight", "decoder.weight"]
    plain = nn.Sequential(nn.Linear(2, 2))
    assert resolve_params(plain) == ["0.weight", "0.bias"]


def test_params_not_in_model_and_bad_loss_are_clear_errors() -> None:
    model = LinearAE()
    x = torch.randn(3, 5)
    with pytest.raises(UsageError, match="not a parameter of the model"):
        per_example_gradients(model, sum_sq_loss, x, params=[nn.Parameter(torch.zeros(2))])
    with pytest.raises(UsageError, match="not a parameter name"):
        per_example_gradients(model, sum_sq_loss, x, params=["encoder.wieght"])
    with pytest.raises(UsageError, match="no parameters"):
        per_example_gradients(model, sum_sq_loss, x, params=[])
    with pytest.raises(UsageError, match="one loss per example"):
        per_example_gradients(model, lambda m, z: ((m(z) - z) ** 2).mean(), x)
    with pytest.raises(UsageError, match="no examples"):
        per_example_gradients(model, sum_sq_loss, x[:0])


def test_random_projection_preserves_dot_products_and_is_seeded() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.Tanh(), nn.Linear(20, 30))
    x = torch.randn(6, 30)
    full = per_example_gradients(model, mse_loss, x)
    proj = per_example_gradients(model, mse_loss, x, projection_dim=4000, seed=3)
    again = per_example_gradients(model, mse_loss, x, projection_dim=4000, seed=3)
    assert proj.shape == (6, 4000)
    assert torch.equal(proj, again)
    r = random_projection(full.shape[1], 4000, seed=3)
    torch.testing.assert_close(proj, full @ r, rtol=1e-4, atol=1e-7)
    gram, approx = full @ full.T, proj @ proj.T
    assert ((approx - gram).abs().max() / gram.abs().max()) < 0.15


def test_state_restored_after_an_exception() -> None:
    model = ConvBNAE()
    model.train()
    model.encoder[0].weight.grad = torch.full_like(model.encoder[0].weight, 3.0)
    calls = {"n": 0}

    def failing_loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        assert not m.training  # explanations run in eval mode
        raise ValueError("boom")

    for strategy in ("vmap", "chunked"):
        with pytest.raises(ValueError, match="boom"):
            per_example_gradients(model, failing_loss, torch.rand(4, 1, 4, 4), strategy=strategy)
        assert model.training and all(m.training for m in model.modules())
        assert torch.equal(model.encoder[0].weight.grad, torch.full_like(model.encoder[0].weight, 3.0))
    assert calls["n"] == 2
