"""LICO losses: batched Sinkhorn, OT loss, manifold matching, against independent references."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xairepro.lico import manifold_matching_loss, ot_loss, sinkhorn
from xairepro.lico.manifold import pairwise_distances, unit_aggregate
from xairepro.lico.sinkhorn import squared_distances


pytestmark = pytest.mark.usefixtures("one_thread_module")


def reference_sinkhorn(cost: np.ndarray, eps: float, n_iters: int) -> np.ndarray:
    """Float64 log-domain Sinkhorn written independently: dual potentials f, g in cost units."""
    n, m = cost.shape
    f = np.zeros(n)
    g = np.zeros(m)

    def lse(x: np.ndarray, axis: int) -> np.ndarray:
        mx = x.max(axis=axis, keepdims=True)
        return (mx + np.log(np.exp(x - mx).sum(axis=axis, keepdims=True))).squeeze(axis)

    for _ in range(n_iters):
        g = -eps * math.log(m) - eps * lse((f[:, None] - cost) / eps, 0)
        f = -eps * math.log(n) - eps * lse((g[None, :] - cost) / eps, 1)
    return np.exp((f[:, None] + g[None, :] - cost) / eps)


def random_costs(batch: int, n: int, m: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, m, generator=gen, dtype=dtype) * 2.0


@pytest.mark.parametrize("eps,iters", [(0.1, 100), (0.05, 300), (1.0, 20)])
def test_sinkhorn_matches_reference_and_pot(eps: float, iters: int) -> None:
    cost = random_costs(5, 17, 6, seed=1)
    plan = sinkhorn(cost, epsilon=eps, n_iters=iters)
    assert plan.shape == cost.shape and plan.dtype == torch.float64
    for b in range(cost.shape[0]):
        c = cost[b].numpy()
        ref = reference_sinkhorn(c, eps, iters)
        a = np.full(c.shape[0], 1.0 / c.shape[0])
        bb = np.full(c.shape[1], 1.0 / c.shape[1])
        pot = ot.sinkhorn(a, bb, c, eps, method="sinkhorn_log", numItermax=iters, stopThr=0.0, warn=False)
        np.testing.assert_allclose(plan[b].numpy(), ref, atol=1e-6, rtol=0)
        np.testing.assert_allclose(plan[b].numpy(), pot, atol=1e-6, rtol=0)


@pytest.mark.parametrize("eps,iters", [(0.01, 1), (0.01, 2), (0.01, 5), (1e-3, 3), (1e-3, 100), (1e-4, 100)])
def test_sinkhorn_matches_pot_before_convergence(eps: float, iters: int) -> None:
    """Far from convergence the plan still equals POT's after exactly ``iters`` iterations: same epsilon
    convention (reg), same update order (column potentials first), same iteration count."""
    cost = random_costs(3, 13, 5, seed=24) * 2.0      # squared distances of unit tokens lie in [0, 4]
    plan = sinkhorn(cost, epsilon=eps, n_iters=iters)
    assert torch.isfinite(plan).all()
    a, b = np.full(13, 1.0 / 13), np.full(5, 1.0 / 5)
    for k in range(cost.shape[0]):
        c = cost[k].numpy()
        pot = ot.sinkhorn(a, b, c, eps, method="sinkhorn_log", numItermax=iters, stopThr=0.0, warn=False)
        np.testing.assert_allclose(plan[k].numpy(), pot, atol=1e-6, rtol=0)
        np.testing.assert_allclose(plan[k].numpy(), reference_sinkhorn(c, eps, iters), atol=1e-6, rtol=0)
    # the last update is the row potentials: the row sums hold after any number of iterations
    torch.testing.assert_close(plan.sum(2), torch.full((3, 13), 1 / 13, dtype=torch.float64), atol=1e-12, rtol=0)


def test_lico_losses_never_sync_with_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tensor -> Python conversion (item, bool, float, ...) in the Sinkhorn loop or the losses: on an
    accelerator each would be a host synchronisation."""
    x = _tokens(4, 10, 6, seed=25, dtype=torch.float32).requires_grad_(True)
    y = _tokens(4, 3, 6, seed=26, dtype=torch.float32).requires_grad_(True)
    tau = torch.tensor(2.0, requires_grad=True)
    cost = random_costs(4, 10, 3, seed=27, dtype=torch.float32)

    def sync(*_args, **_kwargs):
        raise AssertionError("host synchronisation")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    sinkhorn(cost, epsilon=1e-3, n_iters=20)
    loss = ot_loss(x, y) + manifold_matching_loss(x, y, tau)
    loss.backward()
    monkeypatch.undo()
    assert torch.isfinite(loss).item() and x.grad is not None and tau.grad is not None


def test_sinkhorn_float32_matches_float64_reference() -> None:
    cost = random_costs(3, 32, 8, seed=2)
    plan = sinkhorn(cost.float(), epsilon=0.1, n_iters=200)
    assert plan.dtype == torch.float32
    for b in range(3):
        np.testing.assert_allclose(plan[b].double().numpy(), reference_sinkhorn(cost[b].numpy(), 0.1, 200),
                                   atol=1e-6, rtol=0)


def test_sinkhorn_marginals() -> None:
    cost = random_costs(4, 20, 7, seed=3)
    plan = sinkhorn(cost, epsilon=0.1, n_iters=500)
    torch.testing.assert_close(plan.sum(2), torch.full((4, 20), 1 / 20, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((4, 7), 1 / 7, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("eps", [1e-3, 1e-4])
def test_sinkhorn_finite_for_small_epsilon(eps: float) -> None:
    cost = random_costs(3, 16, 5, seed=4, dtype=torch.float32) * 2  # costs up to 4, as for unit tokens
    plan = sinkhorn(cost, epsilon=eps, n_iters=100)
    assert torch.isfinite(plan).all()
    # the last update fixes the row sums; float32 at cost/eps ~ 4e4 keeps ~1e-3 relative precision
    torch.testing.assert_close(plan.sum(2), torch.full((3, 16), 1 / 16), atol=0, rtol=2e-3)
    assert (plan >= 0).all()


def test_sinkhorn_batch_equals_one_by_one_and_input_untouched() -> None:
    cost = random_costs(6, 9, 4, seed=5, dtype=torch.float32)
    before = cost.clone()
    whole = sinkhorn(cost, 0.1, 50)
    single = torch.cat([sinkhorn(cost[i:i + 1], 0.1, 50) for i in range(6)])
    torch.testing.assert_close(whole, single, atol=1e-7, rtol=0)
    assert torch.equal(cost, before)
    assert not sinkhorn(cost.clone().requires_grad_(True)).requires_grad  # the plan is a constant


def test_sinkhorn_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, N, M\)"):
        sinkhorn(torch.rand(4, 4))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(torch.rand(1, 4, 4), epsilon=0.0)
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn(torch.rand(1, 4, 4), n_iters=0)
    with pytest.raises(TypeError, match="floating"):
        sinkhorn(torch.ones(1, 4, 4, dtype=torch.long))


def _tokens(batch: int, n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(batch, n, d, generator=gen, dtype=dtype), dim=-1)


def test_ot_loss_value_and_gradient_by_hand() -> None:
    img = _tokens(4, 10, 6, seed=6).requires_grad_(True)
    txt = _tokens(4, 3, 6, seed=7).requires_grad_(True)
    loss = ot_loss(img, txt, epsilon=0.1, n_iters=100)
    loss.backward()
    # by hand: C_bnm = ||x_bn - y_bm||^2, P = plan of C (constant), L = mean_b sum P C
    diff = img.detach()[:, :, None, :] - txt.detach()[:, None, :, :]
    cost = (diff ** 2).sum(-1)
    plan = torch.stack([torch.from_numpy(reference_sinkhorn(c.numpy(), 0.1, 100)) for c in cost])
    assert loss.item() == pytest.approx((plan * cost).sum((1, 2)).mean().item(), abs=1e-9)
    batch = img.shape[0]
    grad_img = (2.0 / batch) * (plan[..., None] * diff).sum(2)     # dL/dx_bn = 2/B sum_m P_bnm (x - y)
    grad_txt = -(2.0 / batch) * (plan[..., None] * diff).sum(1)
    torch.testing.assert_close(img.grad, grad_img, atol=1e-8, rtol=0)
    torch.testing.assert_close(txt.grad, grad_txt, atol=1e-8, rtol=0)


def test_ot_loss_no_grad_variant() -> None:
    img = _tokens(3, 8, 5, seed=8).requires_grad_(True)
    txt = _tokens(3, 2, 5, seed=9).requires_grad_(True)
    with_grad = ot_loss(img, txt)
    without = ot_loss(img, txt, grad="none")
    assert not without.requires_grad and without.grad_fn is None
    assert without.item() == pytest.approx(with_grad.item(), abs=1e-12)


def test_ot_loss_float32_and_bad_input() -> None:
    img = _tokens(2, 8, 5, seed=10, dtype=torch.float32)
    txt = _tokens(2, 4, 5, seed=11, dtype=torch.float32)
    value = ot_loss(img, txt)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert value.item() == pytest.approx(ot_loss(img.double(), txt.double()).item(), abs=1e-5)
    with pytest.raises(ValueError, match="share the batch size"):
        ot_loss(img, txt[:1])
    with pytest.raises(ValueError, match="grad"):
        ot_loss(img, txt, grad="full")
    with pytest.raises(ValueError, match="tokens, dim"):
        ot_loss(img.flatten(1), txt)


def test_squared_distances_match_direct() -> None:
    x, y = _tokens(2, 5, 4, seed=12), _tokens(2, 3, 4, seed=13)
    direct = ((x[:, :, None] - y[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(x, y), direct, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_distances_match_differences(dtype: torch.dtype) -> None:
    x = _tokens(9, 16, 8, seed=23, dtype=dtype).flatten(1)
    x = torch.cat([x, x[:2]])                                  # two duplicated rows
    d = pairwise_distances(x)
    assert d.dtype == dtype
    direct = (x.double()[:, None] - x.double()[None]).square().sum(-1).sqrt()
    torch.testing.assert_close(d.double(), direct, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)
    assert torch.equal(d.diagonal(), torch.zeros(11, dtype=dtype))
    xg = x.clone().requires_grad_(True)
    pairwise_distances(xg).sum().backward()
    assert torch.isfinite(xg.grad).all()


def reference_mm(f: np.ndarray, g: np.ndarray, tau: float, sign: float = -1.0) -> float:
    """Float64 loops on unit-norm aggregates (rows flattened, divided by their norm):
    A_ij = exp(s D_ij / tau) / sum_k exp(s D_ik / tau); mean_i KL(A^G_i || A^F_i)."""
    batch = f.shape[0]
    f, g = f.reshape(batch, -1), g.reshape(batch, -1)
    f = f / np.sqrt((f ** 2).sum(axis=1, keepdims=True))
    g = g / np.sqrt((g ** 2).sum(axis=1, keepdims=True))
    total = 0.0
    for i in range(batch):
        df = np.array([np.sqrt(((f[i] - f[j]) ** 2).sum()) for j in range(batch)])
        dg = np.array([np.sqrt(((g[i] - g[j]) ** 2).sum()) for j in range(batch)])
        af = np.exp(sign * df / tau) / np.exp(sign * df / tau).sum()
        ag = np.exp(sign * dg / tau) / np.exp(sign * dg / tau).sum()
        total += float((ag * np.log(ag / af)).sum())
    return total / batch


@pytest.mark.parametrize("tau", [0.5, 1.0, math.log(1 / 0.07)])
@pytest.mark.parametrize("sign", ["paper", "official"])
def test_manifold_loss_matches_formula(tau: float, sign: str) -> None:
    img, txt = _tokens(7, 4, 3, seed=14), _tokens(7, 2, 3, seed=15)
    got = manifold_matching_loss(img, txt, tau, sign=sign)
    assert got.dtype == torch.float64
    expected = reference_mm(img.numpy(), txt.numpy(), tau, -1.0 if sign == "paper" else 1.0)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_manifold_loss_zero_for_identical_and_vanishes_with_tau() -> None:
    img = _tokens(6, 4, 3, seed=16)
    assert manifold_matching_loss(img, img.clone(), 1.0).item() == 0.0
    txt = _tokens(6, 2, 3, seed=17)
    values = [manifold_matching_loss(img, txt, tau).item() for tau in (0.5, 5.0, 50.0, 5000.0)]
    assert values[0] > 0.01
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] < 1e-7


def test_manifold_loss_learnable_tau_gets_gradient_and_float32() -> None:
    img = _tokens(5, 4, 3, seed=18, dtype=torch.float32).requires_grad_(True)
    txt = _tokens(5, 2, 3, seed=19, dtype=torch.float32).requires_grad_(True)
    tau = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    loss = manifold_matching_loss(img, txt, tau)
    assert loss.dtype == torch.float32
    loss.backward()
    for t in (img, txt, tau):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_manifold_loss_equal_rows_give_finite_gradient() -> None:
    # samples of one class share their text tokens: D^G has zero off-diagonal entries
    img = _tokens(4, 3, 2, seed=20).requires_grad_(True)
    txt = _tokens(2, 2, 2, seed=21)[[0, 0, 1, 1]].requires_grad_(True)
    manifold_matching_loss(img, txt, 1.0).backward()
    assert torch.isfinite(img.grad).all() and torch.isfinite(txt.grad).all()


def test_manifold_loss_bad_input() -> None:
    img = _tokens(4, 3, 2, seed=22)
    with pytest.raises(ValueError, match="batch size"):
        manifold_matching_loss(img, img[:3], 1.0)
    with pytest.raises(ValueError, match="tau"):
        manifold_matching_loss(img, img, 0.0)
    with pytest.raises(ValueError, match="sign"):
        manifold_matching_loss(img, img, 1.0, sign="minus")


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(2, 6), tau=st.floats(0.05, 20.0), seed=st.integers(0, 10_000))
def test_manifold_loss_nonnegative(batch: int, tau: float, seed: int) -> None:
    img, txt = _tokens(batch, 3, 4, seed=seed), _tokens(batch, 2, 4, seed=seed + 1)
    assert manifold_matching_loss(img, txt, tau).item() >= -1e-12


def test_manifold_distances_are_between_unit_aggregates() -> None:
    """D compares each sample's token set as one unit vector: D in [0, 2], independent of the token count
    and of a positive factor per sample (the flattened sets of N unit tokens would give D ~ sqrt(2 N))."""
    img, txt = _tokens(8, 16, 4, seed=30), _tokens(8, 3, 4, seed=31)
    d = pairwise_distances(unit_aggregate(img))
    assert d.min() >= 0 and d.max() <= 2 + 1e-12
    assert 0.5 < d[~torch.eye(8, dtype=torch.bool)].mean() < 1.6   # random unit vectors: ~ sqrt(2)
    base = manifold_matching_loss(img, txt, 1.0)
    doubled = manifold_matching_loss(torch.cat([img, img], dim=1), txt, 1.0)   # N -> 2 N, same aggregate
    scale = torch.arange(1.0, 9.0, dtype=torch.float64).view(8, 1, 1)
    scaled = manifold_matching_loss(img * scale, txt / scale, 1.0)
    torch.testing.assert_close(doubled, base, atol=1e-12, rtol=0)
    torch.testing.assert_close(scaled, base, atol=1e-12, rtol=0)
    # an all-zero sample stays finite: at distance 1 from every unit aggregate
    zero = img.clone()
    zero[0] = 0
    dz = pairwise_distances(unit_aggregate(zero))
    torch.testing.assert_close(dz[0, 1:], torch.ones(7, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.isfinite(manifold_matching_loss(zero, txt, 1.0))
