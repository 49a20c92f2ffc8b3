"""Influence functions: exact vs an explicit closed-form Hessian, LiSSA convergence, Arnoldi, errors."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import InfluenceFunctions
from xairepro.explain.influence import SEED003_LISSA, arnoldi_eigenpairs


pytestmark = pytest.mark.usefixtures("one_thread")


class LinearAE(nn.Module):
    def __init__(self, dim: int = 6, latent: int = 2) -> None:
        super().__init__()
        self.encoder = nn.Linear(dim, latent, bias=False)
        self.decoder = nn.Linear(latent, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class TanhAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(10, 6), nn.Tanh())
        self.decoder = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def sum_sq_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).sum(1)


def closed_form(model: LinearAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example gradients and the Hessian of the mean loss w.r.t. W1 (row-major), by hand.

    loss = ||W2 W1 x - x||²:  g = 2 W2ᵀ (W2 W1 x - x) xᵀ,  H = 2 kron(W2ᵀ W2, mean x xᵀ).
    """
    w1 = model.encoder.weight.detach().double()
    w2 = model.decoder.weight.detach().double()
    xd = x.double()
    residual = xd @ w1.T @ w2.T - xd
    grads = 2 * torch.einsum("ad,nd,nb->nab", w2.T, residual, xd).reshape(x.shape[0], -1)
    hessian = 2 * torch.kron(w2.T @ w2, xd.T @ xd / x.shape[0])
    return grads, hessian


def reference_influence(model: LinearAE, x_test, x_train, damping: float) -> torch.Tensor:
    g_test, _ = closed_form(model, x_test)
    g_train, hessian = closed_form(model, x_train)
    system = hessian + damping * torch.eye(hessian.shape[0], dtype=hessian.dtype)
    return g_test @ torch.linalg.solve(system, g_train.T)


@pytest.fixture
def setup() -> tuple[LinearAE, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = LinearAE()
    x_train = torch.randn(40, 6)
    x_test = torch.randn(9, 6)
    return model, x_train, x_test


def test_exact_equals_explicit_hessian(setup) -> None:
    model, x_train, x_test = setup
    for damping in (0.05, 1.0):
        scores = InfluenceFunctions(model, sum_sq_loss, model.encoder, method="exact", damping=damping,
                                    hessian_data=x_train).attribute(x_test, x_train)
        expected = reference_influence(model, x_test, x_train, damping).float()
        assert scores.shape == (9, 40)
        torch.testing.assert_close(scores, expected, rtol=2e-4, atol=2e-4 * expected.abs().max().item())


def test_exact_hessian_summed_over_data_chunks(setup) -> None:
    """H over hessian_data in chunks of batch_size (40 = 5 x 7 + 5): each chunk weighted by its share."""
    model, x_train, x_test = setup
    scores = InfluenceFunctions(model, sum_sq_loss, model.encoder, method="exact", damping=0.05, batch_size=7,
                                hessian_data=x_train).attribute(x_test, x_train)
    expected = reference_influence(model, x_test, x_train, 0.05).float()
    torch.testing.assert_close(scores, expected, rtol=2e-4, atol=2e-4 * expected.abs().max().item())


def test_exact_uses_hessian_data_default_x_train(setup) -> None:
    model, x_train, x_test = setup
    a = InfluenceFunctions(model, sum_sq_loss, method="exact", damping=0.1).attribute(x_test, x_train)
    b = InfluenceFunctions(model, sum_sq_loss, method="exact", damping=0.1,
                           hessian_data=x_train).attribute(x_test, x_train)
    torch.testing.assert_close(a, b)
    other = InfluenceFunctions(model, sum_sq_loss, method="exact", damping=0.1,
                               hessian_data=x_train[:5]).attribute(x_test, x_train)
    assert not torch.allclose(a, other)


def test_lissa_converges_to_exact_when_scale_bounds_spectrum(setup) -> None:
    model, x_train, x_test = setup
    _, hessian = closed_form(model, x_train)
    top = torch.linalg.eigvalsh(hessian).max().item()
    damping = 0.1 * top
    exact = reference_influence(model, x_test, x_train, damping).float()
    lissa = InfluenceFunctions(model, sum_sq_loss, method="lissa", damping=damping, scale=1.05 * (top + damping),
                               depth=150, hessian_batch_size=None).attribute(x_test, x_train)
    rel = (lissa - exact).norm() / exact.norm()
    assert rel < 0.05, rel


def test_lissa_sampled_batches_are_seeded_and_close(setup) -> None:
    model, x_train, x_test = setup
    _, hessian = closed_form(model, x_train)
    top = torch.linalg.eigvalsh(hessian).max().item()
    damping = 0.1 * top
    kw = dict(method="lissa", damping=damping, scale=2 * (top + damping), depth=300, hessian_batch_size=20)
    a = InfluenceFunctions(model, sum_sq_loss, seed=1, **kw).attribute(x_test, x_train)
    b = InfluenceFunctions(model, sum_sq_loss, seed=1, **kw).attribute(x_test, x_train)
    c = InfluenceFunctions(model, sum_sq_loss, seed=2, **kw).attribute(x_test, x_train)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    exact = reference_influence(model, x_test, x_train, damping).float()
    assert (a - exact).norm() / exact.norm() < 0.15


def test_original_lissa_recursion_equals_damping_d_times_s(setup) -> None:
    """v <- g + (1 - d) v - H v / s, divided by s, is our recursion with damping = d·s."""
    model, x_train, _ = setup
    g, hessian = closed_form(model, x_train[:3])
    _, hessian = closed_form(model, x_train)
    d, s, depth = 1e-3, 1000.0, 100
    v = g.clone()
    for _ in range(depth):
        v = g + (1 - d) * v - v @ hessian / s
    original = v / s
    ours = InfluenceFunctions(model, sum_sq_loss, **SEED003_LISSA.kwargs() | {"hessian_batch_size": None})
    assert SEED003_LISSA.damping == d * s
    out = ours.inverse_hvp(g.float(), hessian_data=x_train)
    torch.testing.assert_close(out.double(), original, rtol=1e-4, atol=1e-6 * original.abs().max().item())


def test_identity_features_each_example_is_its_own_top_proponent() -> None:
    torch.manual_seed(3)
    model = LinearAE(dim=8, latent=3)
    x = torch.eye(8) * torch.linspace(0.5, 2.0, 8)[:, None]
    for method in ("exact", "lissa"):
        scores = InfluenceFunctions(model, sum_sq_loss, method=method, damping=0.5, scale=50.0, depth=200,
                                    hessian_batch_size=None).attribute(x, x)
        assert torch.equal(scores.argmax(1), torch.arange(8)), method


class DigitsAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def mse_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).mean(1)


def test_arnoldi_rank_correlates_with_exact_on_trained_model() -> None:
    """Trained 8x8-digits MLP autoencoder (1,108 encoder parameters): Arnoldi rank 50 vs exact."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x = torch.tensor(load_digits().data[:460] / 16.0, dtype=torch.float32)
    x_train, x_test = x[:400], x[400:]
    model = DigitsAE()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        for i in range(0, 400, 50):
            opt.zero_grad()
            mse_loss(model, x_train[i:i + 50]).mean().backward()
            opt.step()
    x_train = x_train[:200]
    kw = dict(damping=0.05, hessian_data=x_train, batch_size=200, chunk_size=128)  # H + 0.05 I is PD
    exact = InfluenceFunctions(model, mse_loss, method="exact", **kw).attribute(x_test, x_train)
    arnoldi = InfluenceFunctions(model, mse_loss, method="arnoldi", arnoldi_iters=60, arnoldi_rank=50,
                                 **kw).attribute(x_test, x_train)
    rho = spearmanr(exact.flatten().numpy(), arnoldi.flatten().numpy())[0]
    assert rho >= 0.9, rho


def test_arnoldi_with_full_krylov_space_is_exact() -> None:
    torch.manual_seed(0)
    model = TanhAE()
    x_train = torch.randn(60, 10)
    x_test = torch.randn(12, 10)
    kw = dict(damping=0.5, hessian_data=x_train)
    exact = InfluenceFunctions(model, sum_sq_loss, method="exact", **kw).attribute(x_test, x_train)
    for remainder in (True, False):
        full = InfluenceFunctions(model, sum_sq_loss, method="arnoldi", arnoldi_iters=66, arnoldi_rank=66,
                                  arnoldi_remainder=remainder, **kw).attribute(x_test, x_train)
        torch.testing.assert_close(full, exact, rtol=1e-3, atol=1e-3 * exact.abs().max().item())


def test_arnoldi_eigenpairs_of_a_known_matrix() -> None:
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    vals = torch.cat([torch.tensor([50.0, -20.0, 10.0], dtype=torch.float64), torch.rand(27, dtype=torch.float64)])
    mat = q @ torch.diag(vals) @ q.T
    got_vals, got_vecs = arnoldi_eigenpairs(lambda v: mat @ v.double(), 30, 30, 3, dtype=torch.float64)
    torch.testing.assert_close(got_vals, torch.tensor([50.0, -20.0, 10.0], dtype=torch.float64))
    torch.testing.assert_close((got_vecs.T @ q[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=1e-8, rtol=0)


def test_state_restored_and_inputs_untouched(setup) -> None:
    model, x_train, x_test = setup
    model.train()
    model.encoder.weight.grad = torch.full_like(model.encoder.weight, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xt, xr = x_test.clone(), x_train.clone()
    InfluenceFunctions(model, sum_sq_loss, method="lissa", depth=3).attribute(x_test, x_train)
    assert model.training
    assert torch.equal(model.encoder.weight.grad, torch.full_like(model.encoder.weight, 7.0))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(x_test, xt) and torch.equal(x_train, xr)


class DropoutBNAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 2))
        self.decoder = nn.Linear(2, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_scores_in_eval_mode_for_a_model_left_in_train_mode(setup) -> None:
    """BatchNorm uses its running statistics and dropout is off, whatever mode the caller left the model in."""
    import copy

    _, x_train, x_test = setup
    torch.manual_seed(0)
    model = DropoutBNAE()
    with torch.no_grad():
        model.encoder[1].running_mean.uniform_(-0.5, 0.5)
        model.encoder[1].running_var.uniform_(0.5, 2.0)
    model.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    reference_model = copy.deepcopy(model).eval()
    for method in ("exact", "lissa"):
        kw = dict(method=method, damping=0.5, scale=50.0, depth=20, hessian_batch_size=None)
        scores = InfluenceFunctions(model, sum_sq_loss, **kw).attribute(x_test, x_train)
        expected = InfluenceFunctions(reference_model, sum_sq_loss, **kw).attribute(x_test, x_train)
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())


def test_bad_input_errors(setup) -> None:
    model, x_train, x_test = setup
    with pytest.raises(UsageError, match="no examples"):
        InfluenceFunctions(model, sum_sq_loss, method="exact").attribute(x_test, x_train[:0])
    with pytest.raises(UsageError, match="not a parameter"):
        InfluenceFunctions(model, sum_sq_loss, [nn.Parameter(torch.zeros(3))])
    with pytest.raises(UsageError, match="method"):
        InfluenceFunctions(model, sum_sq_loss, method="neumann")
    with pytest.raises(UsageError, match="scale"):
        InfluenceFunctions(model, sum_sq_loss, scale=0.0)
    with pytest.raises(UsageError, match="singular"):
        InfluenceFunctions(model, sum_sq_loss, method="exact", damping=0.0).attribute(x_test, x_train[:1])
    big = nn.Sequential(nn.Linear(100, 100))
    with pytest.raises(UsageError, match="lissa"):
        InfluenceFunctions(big, sum_sq_loss, method="exact")
