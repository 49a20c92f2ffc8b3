"""Seeded projections, the projected-gradient store, blockwise scores, projected influence and TracIn to file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import GradientStore, InfluenceFunctions, Projector, TracIn, per_example_gradients
from xairepro.explain import gradient_store as store_module
from xairepro.explain.gradient_store import score_against_stores
from xairepro.explain.per_example_grads import random_projection
from tda_helpers import WriteSpy

pytestmark = pytest.mark.usefixtures("one_thread")


class SmallAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
        self.decoder = nn.Linear(2, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def rec_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - x) ** 2).mean(1)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    return SmallAE().double(), torch.randn(50, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projection_is_seeded_blockwise_and_preserves_dot_products_in_expectation(kind) -> None:
    p, k = 5000, 32  # two blocks of rows
    a = Projector(p, k, kind, seed=5)
    r = a.matrix()
    assert r.shape == (p, k)
    assert torch.equal(r, Projector(p, k, kind, seed=5).matrix())
    assert not torch.equal(r, Projector(p, k, kind, seed=6).matrix())
    g = torch.randn(4, p)
    torch.testing.assert_close(a.project(g), g @ r, rtol=1e-4, atol=1e-4)
    # E[R Rᵀ] = I: averaged over seeds, (gR)·(g'R) estimates g·g'
    g1, g2 = torch.randn(p), torch.randn(p)
    g2 = g2 + g1
    est = torch.stack([(Projector(p, k, kind, seed=s).project(torch.stack([g1, g2])).prod(0)).sum()
                       for s in range(200)])
    exact = g1 @ g2
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(200)
    if kind == "rademacher":
        nonzero = (r != 0).sum(1)
        assert torch.all(nonzero == 4)  # s = 4 nonzeros per row, one in each quarter of the columns
        assert torch.allclose(r[r != 0].abs(), torch.tensor(0.5))  # 1 / sqrt(4)
        assert torch.all((r[:, :8] != 0).sum(1) == 1)


def test_gaussian_blocks_regenerated_when_too_large_to_keep_give_the_same_matrix() -> None:
    g = torch.randn(3, 9000, dtype=torch.float64)
    kept = Projector(9000, 32, "gaussian", seed=1).project(g)
    regenerated = Projector(9000, 32, "gaussian", seed=1, max_bytes=1000)
    torch.testing.assert_close(regenerated.project(g), kept)
    assert not regenerated._cache  # never held whole
    torch.testing.assert_close(random_projection(9000, 32, seed=1), Projector(9000, 32, "gaussian", 1).matrix())


def test_store_holds_the_projected_gradients_and_is_reused(setup, tmp_path, monkeypatch) -> None:
    model, x, _ = setup
    store = GradientStore.build(tmp_path / "s", model, rec_loss, x, dim=16, seed=3, block_size=16)
    expected = per_example_gradients(model, rec_loss, x, projection_dim=16, projection="rademacher", seed=3)
    torch.testing.assert_close(store.rows(0, 50).double(), expected, rtol=1e-6, atol=1e-7)
    phi = store.rows(0, 50).double()
    torch.testing.assert_close(store.gram(block_size=7), phi.T @ phi)
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["n"] == 50 and meta["dim"] == 16 and meta["projection"]["kind"] == "rademacher"
    calls = []
    real = store_module.compute_gradients
    monkeypatch.setattr(store_module, "compute_gradients", lambda *a, **k: calls.append(1) or real(*a, **k))
    GradientStore.build(tmp_path / "s", model, rec_loss, x, dim=16, seed=3, block_size=16)
    assert calls == []  # same model, examples and projection: nothing recomputed
    with torch.no_grad():
        model.encoder[0].weight.add_(0.1)
    changed = GradientStore.build(tmp_path / "s", model, rec_loss, x, dim=16, seed=3, block_size=16)
    assert len(calls) == 4 and not torch.allclose(changed.rows(0, 50).double(), phi)


def test_store_build_resumes_after_a_crash(setup, tmp_path, monkeypatch) -> None:
    model, x, _ = setup
    reference = GradientStore.build(tmp_path / "ref", model, rec_loss, x, dim=8, block_size=10).rows(0, 50)
    spy = WriteSpy(monkeypatch, crash_at=3)
    with pytest.raises(KeyboardInterrupt):
        GradientStore.build(tmp_path / "s", model, rec_loss, x, dim=8, block_size=10)
    with pytest.raises(UsageError, match="no finished gradient store"):
        GradientStore(tmp_path / "s")
    spy.resume()
    calls = []
    real = store_module.compute_gradients
    monkeypatch.setattr(store_module, "compute_gradients", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = GradientStore.build(tmp_path / "s", model, rec_loss, x, dim=8, block_size=10)
    assert len(calls) == 3 and spy.blocks == [2, 3, 4]  # blocks 0 and 1 were on disk
    torch.testing.assert_close(resumed.rows(0, 50), reference)


def test_blockwise_scores_equal_the_product(setup, tmp_path) -> None:
    model, x, x_test = setup
    stores = [GradientStore.build(tmp_path / f"s{i}", model, rec_loss, x, dim=8, seed=i) for i in range(2)]
    queries = torch.randn(7, 16)
    path = score_against_stores(tmp_path / "scores.npy", queries, stores, key="k", train_block=12)
    feats = torch.cat([s.rows(0, 50) for s in stores], 1)
    torch.testing.assert_close(torch.from_numpy(np.load(path)), queries @ feats.T)
    with pytest.raises(UsageError, match="queries must be"):
        score_against_stores(tmp_path / "x.npy", torch.randn(7, 3), stores, key="k")


def test_projected_influence_with_a_square_projection_is_exact_fisher_influence(setup) -> None:
    """k = P and an invertible R: φ (RᵀFR)^-1 φ'ᵀ = g F^-1 g'ᵀ (damping 0, F invertible with n > P)."""
    model, x, x_test = setup
    p = sum(q.numel() for q in model.encoder.parameters())  # 47 < 50 examples
    exact = InfluenceFunctions(model, rec_loss, method="exact", curvature="fisher", damping=0.0).attribute(x_test, x)
    proj = InfluenceFunctions(model, rec_loss, method="projected", projection="gaussian", projection_dim=p,
                              damping=0.0).attribute(x_test, x)
    torch.testing.assert_close(proj, exact, rtol=1e-6, atol=1e-8 * exact.abs().max().item())
    small = InfluenceFunctions(model, rec_loss, method="projected", projection_dim=10, damping=0.0).attribute(x_test, x)
    assert not torch.allclose(small, exact, rtol=0.05)


def test_projected_influence_to_file_and_self_influence(setup, tmp_path) -> None:
    model, x, x_test = setup
    inf = InfluenceFunctions(model, rec_loss, method="projected", projection_dim=16, damping=1e-3)
    scores = inf.attribute(x_test, x)
    path = inf.attribute_to_file(x_test, x, tmp_path / "p.npy", store_dir=tmp_path / "stores", train_block=20)
    torch.testing.assert_close(torch.from_numpy(np.load(path)).double(), scores, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "stores" / "train" / "store.json").is_file()
    temp = inf.attribute_to_file(x_test, x, tmp_path / "q.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "q.npy", "stores"]  # temporary stores gone
    torch.testing.assert_close(torch.from_numpy(np.load(temp)), torch.from_numpy(np.load(path)))
    torch.testing.assert_close(inf.self_influence(x), torch.diagonal(inf.attribute(x, x)))


def test_tracin_to_file_concatenates_checkpoints(setup, tmp_path) -> None:
    model, x, x_test = setup
    states = []
    for scale in (1.0, 0.9, 1.2):
        states.append({k: v * scale for k, v in model.state_dict().items()})
    tracin = TracIn(model, rec_loss, checkpoints=states, learning_rates=[0.1, 0.2, 0.05], projection_dim=12,
                    projection="rademacher", seed=2)
    expected = tracin.attribute(x_test, x)
    path = tracin.attribute_to_file(x_test, x, tmp_path / "t.npy", store_dir=tmp_path / "stores", train_block=16)
    torch.testing.assert_close(torch.from_numpy(np.load(path)).double(), expected, rtol=1e-4, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "stores").iterdir()) == ["checkpoint_0", "checkpoint_1", "checkpoint_2"]
    full = TracIn(model, rec_loss, checkpoints=states, learning_rates=[0.1, 0.2, 0.05])
    torch.testing.assert_close(full.self_influence(x), torch.diagonal(full.attribute(x, x)))
    with pytest.raises(UsageError, match="projection_dim"):
        full.attribute_to_file(x_test, x, tmp_path / "u.npy")


def test_projector_errors() -> None:
    with pytest.raises(UsageError, match="projection must be"):
        Projector(10, 4, "uniform")
    with pytest.raises(UsageError, match="projection_dim"):
        Projector(10, 0)
    with pytest.raises(UsageError, match="shape"):
        Projector(10, 4).project(torch.randn(2, 9))
