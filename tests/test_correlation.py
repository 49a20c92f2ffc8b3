"""Saliency-map statistics against numpy/scipy references computed pair by pair."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from xairepro.errors import UsageError
from xairepro.metrics import (
    active_units,
    attribution_entropy,
    cosine_offdiagonal,
    pearson_matrix,
    pearson_offdiagonal,
    spearman_offdiagonal,
)
from xairepro.metrics.correlation import average_ranks


@pytest.fixture
def maps() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.random((6, 1, 5, 5))
    return np.abs(base + 0.7 * rng.standard_normal((6, 4, 5, 5)))  # correlated unit maps


def offdiag_reference(per_example_matrices: list[np.ndarray]) -> float:
    means = []
    for m in per_example_matrices:
        k = m.shape[0]
        vals = [m[i, j] for i, j in itertools.product(range(k), range(k)) if i != j and np.isfinite(m[i, j])]
        if vals:
            means.append(np.mean(vals))
    return float(np.mean(means))


def test_pearson_matrix_and_offdiagonal_match_numpy(maps):
    per_example = [np.corrcoef(m.reshape(4, -1)) for m in maps]
    torch.testing.assert_close(pearson_matrix(torch.from_numpy(maps), reduction="none"),
                               torch.from_numpy(np.stack(per_example)))
    torch.testing.assert_close(pearson_matrix(maps), torch.from_numpy(np.mean(per_example, axis=0)))
    assert pearson_offdiagonal(maps) == pytest.approx(offdiag_reference(per_example), rel=1e-12)
    assert 0.0 < pearson_offdiagonal(maps) < 1.0


def test_pooled_pearson_is_the_original_whole_set_matrix(maps):
    pooled = np.corrcoef(maps.swapaxes(0, 1).reshape(4, -1))
    assert pearson_offdiagonal(maps, pooled=True) == pytest.approx((pooled.sum() - np.trace(pooled)) / 12)
    torch.testing.assert_close(pearson_matrix(maps, pooled=True), torch.from_numpy(pooled))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    maps = rng.integers(0, 4, size=(5, 3, 12)).astype(float)  # many ties
    per_example = [stats.spearmanr(m, axis=1)[0] for m in maps]
    assert spearman_offdiagonal(maps) == pytest.approx(offdiag_reference(per_example), rel=1e-12)
    pooled = stats.spearmanr(maps.swapaxes(0, 1).reshape(3, -1), axis=1)[0]
    assert spearman_offdiagonal(maps, pooled=True) == pytest.approx((pooled.sum() - np.trace(pooled)) / 6)


def test_average_ranks_match_scipy_rankdata():
    x = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0, 5.0, -1.0]])
    np.testing.assert_allclose(average_ranks(x).numpy(), stats.rankdata(x.numpy(), axis=1))


def test_cosine_matches_pairwise_numpy(maps):
    per_example = []
    for m in maps:
        flat = m.reshape(4, -1)
        per_example.append(np.array([[np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) for b in flat]
                                     for a in flat]))
    assert cosine_offdiagonal(maps) == pytest.approx(offdiag_reference(per_example), rel=1e-12)


def test_entropy_matches_scipy_and_skips_empty_features():
    rng = np.random.default_rng(2)
    maps = rng.random((3, 4, 6, 6))
    maps[:, :, 0, :] = 0.0  # features with no saliency at all are left out
    per_feature = maps.swapaxes(1, -1).reshape(-1, 4)
    salient = per_feature[per_feature.sum(1) > 0]
    assert attribution_entropy(maps) == pytest.approx(float(np.mean(stats.entropy(salient, axis=1))), rel=1e-12)


def test_entropy_and_active_units_extremes():
    one_hot = torch.zeros(2, 3, 4)
    one_hot[:, 1] = 1.0  # every feature belongs to unit 1
    assert attribution_entropy(one_hot) == pytest.approx(0.0)
    assert active_units(one_hot) == pytest.approx(1.0)
    even = torch.ones(2, 3, 4)
    assert attribution_entropy(even) == pytest.approx(np.log(3))
    assert active_units(even) == pytest.approx(0.0)  # no share exceeds 1/d when all are equal


def test_active_units_matches_reference():
    rng = np.random.default_rng(3)
    maps = rng.random((4, 5, 3, 3)) ** 3
    per_feature = maps.swapaxes(1, -1).reshape(-1, 5)
    shares = per_feature / per_feature.sum(1, keepdims=True)
    assert active_units(maps) == pytest.approx(float(np.mean((shares > 1 / 5).sum(1))))


def test_constant_maps_are_left_out_not_crashing():
    maps = torch.rand(3, 3, 10, dtype=torch.float64)
    maps[0, 2] = 0.0  # a dead unit in example 0
    per_example = [np.corrcoef(m) if i else np.corrcoef(m[:2]) for i, m in enumerate(maps.numpy())]
    assert pearson_offdiagonal(maps) == pytest.approx(offdiag_reference(per_example), rel=1e-12)
    assert np.isnan(pearson_offdiagonal(torch.zeros(2, 3, 5)))
    assert np.isnan(cosine_offdiagonal(torch.zeros(2, 3, 5)))


def test_identical_maps_correlate_perfectly():
    m = torch.rand(4, 1, 7).expand(4, 3, 7)
    assert pearson_offdiagonal(m) == pytest.approx(1.0)
    assert spearman_offdiagonal(m) == pytest.approx(1.0)
    assert cosine_offdiagonal(m) == pytest.approx(1.0)


def test_bad_shapes_are_rejected():
    with pytest.raises(UsageError, match=r"\(B, K, \.\.\.\)"):
        pearson_offdiagonal(torch.rand(4, 5))
    with pytest.raises(UsageError, match="at least 2 maps"):
        pearson_offdiagonal(torch.rand(4, 1, 5))
    with pytest.raises(UsageError, match="reduction"):
        pearson_matrix(torch.rand(2, 2, 3), reduction="sum")
