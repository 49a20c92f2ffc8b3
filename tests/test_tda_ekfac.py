"""K-FAC / EK-FAC influence: layer capture, factors, exact cases, agreement with exact influence, files, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from xairepro.errors import CheckpointError, UsageError
from xairepro.explain import InfluenceFunctions, per_example_gradients
from xairepro.explain.block_files import BlockFile
from xairepro.explain.kronecker_factors import KroneckerFactors
from xairepro.explain.layer_capture import capture_terms, flat_gradients, tracked_layers
from tda_helpers import WriteSpy

pytestmark = pytest.mark.usefixtures("one_thread")


class ConvNet(nn.Module):
    """Convolutions with stride, dilation, 'same' and reflect padding, no bias; a linear layer used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(3, 4, 2, dilation=2, padding="same", bias=False, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 5)
        self.fc2 = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(torch.tanh(self.c2(torch.tanh(self.c1(x)))))
        h = self.fc(h.flatten(1))
        return self.fc2(torch.tanh(self.fc2(h)))


def ce(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y, reduction="none")


def conv_data(n: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, 8, 8, generator=gen, dtype=torch.float64), torch.randint(5, (n,), generator=gen))


def all_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters()]


def test_captured_layer_gradients_equal_per_example_gradients() -> None:
    torch.manual_seed(0)
    model = ConvNet().double().eval()
    data = conv_data()
    layers, ignored = tracked_layers(model, all_names(model))
    assert [layer.name for layer in layers] == ["c1", "c2", "fc", "fc2"]
    assert ignored == ["bn.weight", "bn.bias"]
    g = flat_gradients(layers, capture_terms(model, ce, layers, data))
    names = [p for layer in layers for p in layer.param_names]
    expected = per_example_gradients(model, ce, data, params=names)
    torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-12)


def test_kfac_factors_are_the_activation_and_output_gradient_covariances() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x = torch.randn(10, 4, dtype=torch.float64)
    loss = lambda m, b: ((m(b) - b[:, :2]) ** 2).sum(1)  # noqa: E731
    inf = InfluenceFunctions(model, loss, method="kfac", hessian_data=x)
    factors = inf.fit_factors()
    # oracle: A = E[[a, 1][a, 1]ᵀ] from the layer inputs, S = E[s sᵀ] from one backward per example
    a = torch.cat([x, torch.ones(10, 1, dtype=torch.float64)], 1)
    s_rows = []
    for i in range(10):
        out = model[0](x[i:i + 1])
        out.retain_grad()
        loss_i = ((model[2](model[1](out)) - x[i:i + 1, :2]) ** 2).sum()
        s_rows.append(torch.autograd.grad(loss_i, out)[0][0])
    s = torch.stack(s_rows)
    f = factors.layers["0"]
    torch.testing.assert_close(f.a_vecs @ torch.diag(f.a_vals) @ f.a_vecs.T, a.T @ a / 10)
    torch.testing.assert_close(f.s_vecs @ torch.diag(f.s_vals) @ f.s_vecs.T, s.T @ s / 10)


def test_kfac_factors_of_a_convolution_average_patches_over_positions() -> None:
    """KFC: A = E_n[(1/T) sum_t a aᵀ] over unfolded patches, S = E_n[sum_t s sᵀ] over output positions."""
    torch.manual_seed(7)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    loss = lambda m, b: m(b).tanh().square().flatten(1).sum(1)  # noqa: E731
    f = InfluenceFunctions(conv, loss, method="kfac", hessian_data=x).fit_factors().layers[""]
    patches = nn.functional.unfold(x, 3, padding=1).transpose(1, 2)                 # (6, 25, 18)
    a = torch.cat([patches, torch.ones(6, 25, 1, dtype=torch.float64)], 2)
    out = conv(x)
    s = torch.autograd.grad(loss(lambda z: out, x).sum(), out)[0].flatten(2).transpose(1, 2)  # (6, 25, 3)
    torch.testing.assert_close(f.a_vecs @ torch.diag(f.a_vals) @ f.a_vecs.T,
                               torch.einsum("nti,ntj->ij", a, a) / (6 * 25))
    torch.testing.assert_close(f.s_vecs @ torch.diag(f.s_vals) @ f.s_vecs.T, torch.einsum("nto,ntp->op", s, s) / 6)


def test_exact_fisher_influence_equals_the_explicit_solve_with_few_and_many_examples() -> None:
    """P <= n: eigenpairs of F itself; P > n: through G Gᵀ, with F = 0 on the rest of the space."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()  # 39 parameters
    loss = lambda m, x: ((m(x) - x[:, :3]) ** 2).sum(1)  # noqa: E731
    x_test = torch.randn(4, 5, dtype=torch.float64)
    for n in (60, 12):
        x = torch.randn(n, 5, dtype=torch.float64)
        g, gt = per_example_gradients(model, loss, x), per_example_gradients(model, loss, x_test)
        expected = gt @ torch.linalg.solve(g.T @ g / n + 0.05 * torch.eye(39, dtype=torch.float64), g.T)
        inf = InfluenceFunctions(model, loss, method="exact", curvature="fisher", damping=0.05)
        torch.testing.assert_close(inf.attribute(x_test, x), expected)
        torch.testing.assert_close(inf.self_influence(x), torch.diagonal(g @ torch.linalg.solve(
            g.T @ g / n + 0.05 * torch.eye(39, dtype=torch.float64), g.T)))


@pytest.mark.parametrize("method", ["exact", "lissa", "arnoldi", "kfac", "ekfac", "projected"])
def test_self_influence_is_the_diagonal_of_the_scores(method) -> None:
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    loss = lambda m, x: ((m(x) - x[:, :3]) ** 2).sum(1)  # noqa: E731
    x = torch.randn(25, 5, dtype=torch.float64)
    inf = InfluenceFunctions(model, loss, method=method, damping=0.5, scale=20.0, depth=30, hessian_batch_size=None,
                             arnoldi_iters=10, arnoldi_rank=5, projection_dim=16)
    own = inf.self_influence(x)
    torch.testing.assert_close(own, torch.diagonal(inf.attribute(x, x)), rtol=1e-8, atol=1e-10)
    if inf.curvature == "fisher":  # F + λI is positive definite (an untrained model's H need not be)
        assert torch.all(own > 0)


def test_ekfac_eigenvalues_are_the_fisher_diagonal_in_the_kronecker_eigenbasis() -> None:
    torch.manual_seed(2)
    model = ConvNet().double()
    data = conv_data(16)
    inf = InfluenceFunctions(model, ce, [f"c1.{p}" for p in ("weight", "bias")], method="ekfac", hessian_data=data)
    f = inf.fit_factors().layers["c1"]
    g = per_example_gradients(model, ce, data, params=["c1.weight", "c1.bias"])  # (N, 3*18 + 3)
    mats = torch.cat([g[:, :54].reshape(16, 3, 18), g[:, 54:, None]], dim=2)   # [dW | db] (N, out, in')
    rotated = f.s_vecs.T @ mats @ f.a_vecs
    torch.testing.assert_close(f.corrected, rotated.square().mean(0), rtol=1e-9, atol=1e-14)


def test_single_linear_layer_one_fitting_example_equals_exact_fisher_influence() -> None:
    """With one example, E[a aᵀ ⊗ s sᵀ] = E[a aᵀ] ⊗ E[s sᵀ]: K-FAC and EK-FAC are the exact Fisher."""
    torch.manual_seed(3)
    layer = nn.Linear(5, 3).double()
    loss = lambda m, b: ((m(b) - b[:, :3]) ** 2).sum(1)  # noqa: E731
    x_train, x_test = torch.randn(20, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    kw = dict(damping=0.1, hessian_data=x_train[:1])
    exact = InfluenceFunctions(layer, loss, method="exact", curvature="fisher", **kw).attribute(x_test, x_train)
    for method in ("kfac", "ekfac"):
        got = InfluenceFunctions(layer, loss, method=method, **kw).attribute(x_test, x_train)
        torch.testing.assert_close(got, exact, rtol=1e-9, atol=1e-9 * exact.abs().max().item())


def test_eigenvalue_correction_is_exact_where_the_fisher_is_diagonal_in_the_eigenbasis() -> None:
    """Scalar output, orthogonal inputs: F = sum_n s_n² a_n a_nᵀ / N shares A's eigenvectors, so EK-FAC is
    exact while K-FAC (A ⊗ E[s²]) is not."""
    layer = nn.Linear(6, 1, bias=False).double()
    loss = lambda m, b: (m(b[0]).squeeze(1) - b[1]) ** 2  # noqa: E731
    x = torch.eye(6, dtype=torch.float64)[:4] * torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)[:, None]
    train = (x, torch.tensor([0.5, -1.0, 2.0, 0.1], dtype=torch.float64))
    test = (torch.randn(3, 6, dtype=torch.float64), torch.randn(3, dtype=torch.float64))
    exact = InfluenceFunctions(layer, loss, method="exact", curvature="fisher", damping=0.1).attribute(test, train)
    ekfac = InfluenceFunctions(layer, loss, method="ekfac", damping=0.1).attribute(test, train)
    kfac = InfluenceFunctions(layer, loss, method="kfac", damping=0.1).attribute(test, train)
    torch.testing.assert_close(ekfac, exact, rtol=1e-9, atol=1e-12)
    assert (kfac - exact).abs().max() > 0.1 * exact.abs().max()


@pytest.fixture(scope="module")
def digits_mlp():
    """A small MLP classifier trained on 8x8 digits (64-16-10, 1,210 parameters)."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x, y = torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    with torch.enable_grad():
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[:300]), y[:300]).backward()
            opt.step()
    return model.eval(), (x[:300], y[:300]), (x[1500:1530], y[1500:1530])


def test_ekfac_rank_correlates_with_exact_fisher_influence_on_a_small_mlp(digits_mlp) -> None:
    model, train, test = digits_mlp
    exact = InfluenceFunctions(model, ce, method="exact", curvature="fisher", damping=0.01).attribute(test, train)
    ekfac = InfluenceFunctions(model, ce, method="ekfac", damping=0.01).attribute(test, train)
    rho = spearmanr(exact.flatten().numpy(), ekfac.flatten().numpy())[0]
    assert rho >= 0.9, rho


def test_query_rank_trades_accuracy_for_cost_and_full_rank_is_exact(digits_mlp) -> None:
    model, train, test = digits_mlp
    dense = InfluenceFunctions(model, ce, method="ekfac", damping=0.01).attribute(test, train)
    full = InfluenceFunctions(model, ce, method="ekfac", damping=0.01, query_rank=16).attribute(test, train)
    torch.testing.assert_close(full, dense)  # rank 16 = min(out, in') of both layers: dense everywhere
    low = InfluenceFunctions(model, ce, method="ekfac", damping=0.01, query_rank=4).attribute(test, train)
    assert not torch.allclose(low, dense)
    assert spearmanr(low.flatten().numpy(), dense.flatten().numpy())[0] > 0.9


def test_low_rank_queries_of_single_token_layers_come_from_the_inverse_eigenvalue_matrix() -> None:
    """K-FAC without damping: W = 1 / (σ_k μ_l) has rank 1, so rank-1 queries are exact."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    train, test = torch.randn(80, 6, dtype=torch.float64), torch.randn(6, 6, dtype=torch.float64)
    loss = lambda m, x: ((m(x) - x[:, :4]) ** 2).sum(1)  # noqa: E731  (cross-entropy's S is singular)
    dense = InfluenceFunctions(model, loss, method="kfac", damping=0.0).attribute(test, train)
    rank1 = InfluenceFunctions(model, loss, method="kfac", damping=0.0, query_rank=1).attribute(test, train)
    torch.testing.assert_close(rank1, dense, rtol=1e-8, atol=1e-10 * dense.abs().max().item())
    damped = InfluenceFunctions(model, loss, method="kfac", damping=0.1, query_rank=1).attribute(test, train)
    dense_damped = InfluenceFunctions(model, loss, method="kfac", damping=0.1).attribute(test, train)
    assert not torch.allclose(damped, dense_damped, rtol=1e-2)


def test_low_rank_queries_of_convolutions_are_truncated_svds() -> None:
    """T > 1 positions: each preconditioned test matrix is replaced by its own best rank-r approximation."""
    torch.manual_seed(5)
    conv = nn.Conv2d(3, 16, 2, stride=2, bias=False).double()  # 4 positions on 4 x 4 inputs, in' = 12
    loss = lambda m, x: m(x).square().flatten(1).sum(1)  # noqa: E731
    x_train, x_test = torch.randn(30, 3, 4, 4, dtype=torch.float64), torch.randn(5, 3, 4, 4, dtype=torch.float64)
    inf = InfluenceFunctions(conv, loss, method="ekfac", damping=0.1, query_rank=1)  # 1·4·28 < 16·12
    got = inf.attribute(x_test, x_train)
    f = inf.fit_factors(x_train).layers[""]
    g_test = per_example_gradients(conv, loss, x_test).reshape(5, 16, 12)
    g_train = per_example_gradients(conv, loss, x_train).reshape(30, 16, 12)
    m = (f.s_vecs.T @ g_test @ f.a_vecs) / (f.corrected + 0.1)
    u, sv, vh = torch.linalg.svd(m)
    m1 = sv[:, :1, None] * u[:, :, :1] @ vh[:, :1, :]
    expected = torch.einsum("noi,moi->nm", m1, f.s_vecs.T @ g_train @ f.a_vecs)
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_scores_to_file_equal_attribute_and_resume_after_a_crash(digits_mlp, tmp_path, monkeypatch) -> None:
    model, train, test = digits_mlp
    inf = InfluenceFunctions(model, ce, method="ekfac", damping=0.01, batch_size=32)
    expected = inf.attribute(test, train)
    path = tmp_path / "scores.npy"
    spy = WriteSpy(monkeypatch, crash_at=3)  # 2 test blocks x 5 training blocks; stopped at the third
    with pytest.raises(KeyboardInterrupt):
        inf.attribute_to_file(test, train, path, train_block=64, test_block=20)
    assert not path.exists() and (tmp_path / "scores.partial.npy").exists()
    spy.resume()
    inf.attribute_to_file(test, train, path, train_block=64, test_block=20)
    assert spy.blocks == list(range(2, 10))  # blocks 0 and 1 were finished before the stop
    torch.testing.assert_close(torch.from_numpy(np.load(path)), expected, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "scores.partial.npy").exists() and not (tmp_path / "scores.progress.json").exists()


def test_a_partial_file_of_another_job_is_not_resumed(digits_mlp, tmp_path, monkeypatch) -> None:
    model, train, test = digits_mlp
    inf = InfluenceFunctions(model, ce, method="kfac", damping=0.01)
    expected = inf.attribute(test, train)
    path = tmp_path / "s.npy"
    spy = WriteSpy(monkeypatch, crash_at=2)
    with pytest.raises(KeyboardInterrupt):
        inf.attribute_to_file(test, train, path, train_block=100)
    assert BlockFile(path, (30, 300), key="another job").n_done == 0  # and it restarted the partial file
    spy.resume()
    inf.attribute_to_file(test, train, path, train_block=100)
    assert spy.blocks == [0, 1, 2]  # the other job's start wiped block 0: nothing to resume
    torch.testing.assert_close(torch.from_numpy(np.load(path)), expected, rtol=1e-5, atol=1e-6)


def test_factors_saved_and_loaded_with_weights_only(digits_mlp, tmp_path) -> None:
    model, train, test = digits_mlp
    inf = InfluenceFunctions(model, ce, method="ekfac", damping=0.01, hessian_data=train)
    expected = inf.attribute(test, train)
    path = inf.save_factors(tmp_path / "factors.pt")
    raw = torch.load(path, weights_only=True)  # plain values and tensors only
    assert raw["method"] == "ekfac" and raw["n_examples"] == 300
    again = InfluenceFunctions(model, ce, method="ekfac", damping=0.01)
    again.load_factors(path)
    torch.testing.assert_close(again.attribute(test, train), expected)
    kfac = InfluenceFunctions(model, ce, method="kfac", damping=0.01)
    kfac.load_factors(path)  # EK-FAC factors hold K-FAC's too
    torch.testing.assert_close(kfac.attribute(test, train),
                               InfluenceFunctions(model, ce, method="kfac", damping=0.01).attribute(test, train))
    other = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    with pytest.raises(UsageError, match="other weights"):
        InfluenceFunctions(other, ce, method="ekfac").load_factors(path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted"):
        inf.load_factors(tmp_path / "bad.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected a 'xairepro-kronecker-factors'"):
        KroneckerFactors.load(tmp_path / "other.pt")


def test_factors_fitted_once_and_refused_after_the_weights_change(digits_mlp) -> None:
    model, train, test = digits_mlp
    copy = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    copy.load_state_dict(model.state_dict())
    inf = InfluenceFunctions(copy, ce, method="ekfac", damping=0.01)
    inf.attribute(test, train)
    with torch.no_grad():
        copy[0].weight.mul_(1.1)
    with pytest.raises(UsageError, match="fit them again"):
        inf.attribute(test, train)
    inf.fit_factors(train)
    assert inf.attribute(test, train).shape == (30, 300)


def test_model_state_restored_and_inputs_untouched() -> None:
    torch.manual_seed(4)
    model = ConvNet().double().train()
    for p in model.c1.parameters():
        p.requires_grad_(False)  # frozen layers can still be tracked
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    data = conv_data()
    before = (data[0].clone(), data[1].clone())
    inf = InfluenceFunctions(model, ce, method="ekfac", damping=0.1)
    scores = inf.attribute(data, data)
    assert scores.shape == (12, 12)
    assert model.training and all(m.training for m in model.modules())
    assert not model.c1.weight.requires_grad and model.fc.weight.requires_grad
    assert torch.equal(model.fc.weight.grad, torch.ones_like(model.fc.weight)) and model.c2.weight.grad is None
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert torch.equal(data[0], before[0]) and torch.equal(data[1], before[1])
    assert inf.ignored_params == ["bn.weight", "bn.bias"]


def test_errors() -> None:
    model = ConvNet().double()
    with pytest.raises(UsageError, match="none of the chosen"):
        InfluenceFunctions(model, ce, ["bn.weight"], method="ekfac")
    with pytest.raises(UsageError, match="grouped"):
        InfluenceFunctions(nn.Conv2d(4, 4, 3, groups=2), ce, method="ekfac")
    with pytest.raises(UsageError, match="curvature"):
        InfluenceFunctions(model, ce, method="ekfac", curvature="hessian")
    with pytest.raises(UsageError, match="query_rank"):
        InfluenceFunctions(model, ce, method="ekfac", query_rank=0)
    with pytest.raises(UsageError, match="fit_factors is for"):
        InfluenceFunctions(model, ce, method="exact").fit_factors(conv_data())
    attention = nn.MultiheadAttention(4, 1, batch_first=True)
    with pytest.raises(UsageError, match="not called"):
        InfluenceFunctions(attention, lambda m, x: m(x, x, x)[0].square().sum((1, 2)), ["out_proj.weight"],
                           method="ekfac").attribute(torch.randn(3, 2, 4), torch.randn(3, 2, 4))


def test_ekfac_rank_correlates_with_exact_fisher_influence_on_the_mnist_autoencoders_encoder() -> None:
    """The study's MNIST autoencoder (d = 4), all 43,396 Linear/Conv2d encoder parameters, trained 15 epochs
    on 300 digits at 28 px; 300 train x 40 test, damping 1e-3 (docs/benchmarks.md reports 0.938)."""
    from xairepro.data import load
    from xairepro.explain.per_example_grads import resolve_params
    from xairepro.models import build_model
    from xairepro.train import AutoencoderObjective, Engine, OptimizerConfig, TrainConfig

    x, _ = load("digits", "train", size=28, seed=0).tensors()
    x_train, x_test = x[:300], x[-40:]
    model = build_model("mnist-ae", latent_dim=4, seed=0)
    cfg = TrainConfig(epochs=15, batch_size=32, seed=0, accelerator="cpu",
                      optimizer=OptimizerConfig(name="adam", lr=3e-3))
    Engine(cfg).fit(model, AutoencoderObjective("identity"), (x_train, torch.zeros(300)))
    model.eval()
    loss = lambda m, xb: ((m(xb) - xb) ** 2).flatten(1).mean(1)  # noqa: E731
    layers, _ = tracked_layers(model, resolve_params(model, model.encoder))
    names = [p for layer in layers for p in layer.param_names]
    exact = InfluenceFunctions(model, loss, names, method="exact", curvature="fisher", damping=1e-3)
    ekfac = InfluenceFunctions(model, loss, names, method="ekfac", damping=1e-3)
    rho = spearmanr(exact.attribute(x_test, x_train).flatten(), ekfac.attribute(x_test, x_train).flatten())[0]
    assert rho >= 0.9, rho
