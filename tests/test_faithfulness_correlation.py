"""Faithfulness correlation and confidence change: hand oracles on linear models, Quantus' FaithfulnessCorrelation
and pytorch-grad-cam's confidence metrics on the same maps, invariances, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics import confidence_change, faithfulness_correlation
from xairepro.metrics.faithfulness_correlation import default_subset_size

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear1(nn.Module):
    """One-class linear model f(x) = sum(w * x) over all channels."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1, keepdim=True)


def tiny_cnn(channels: int = 3, classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, classes)).eval()


# --- faithfulness correlation --------------------------------------------------------------------------------

def test_input_times_weight_on_a_linear_model_correlates_perfectly() -> None:
    # zeros baseline: the drop of f when S is removed is sum_{i in S} sum_c w_ci x_ci = the attribution sum
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 6, 6, generator=g)
    model = Linear1(w)
    x = torch.rand(2, 3, 6, 6, generator=g)
    attribution = (w * x).sum(dim=1)
    r = faithfulness_correlation(model, x, attribution, n_subsets=20, subset_size=7)
    torch.testing.assert_close(r.correlation, torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(r.score_drops, r.attribution_sums, atol=1e-5, rtol=0)
    anti = faithfulness_correlation(model, x, -attribution, n_subsets=20, subset_size=7)
    torch.testing.assert_close(anti.correlation, -torch.ones(2), atol=1e-5, rtol=0)
    assert r.summary()["faithfulness_correlation"] == pytest.approx(1.0, abs=1e-5)


def test_matches_quantus_with_the_same_subsets() -> None:
    import quantus

    model = tiny_cnn(channels=1)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 8, 8, generator=g)
    maps = torch.rand(4, 8, 8, generator=g)
    y = np.array([0, 3, 1, 2])
    runs, size = 12, 9
    # Quantus draws, run by run, one np.random.choice per image: replay its draws as our explicit subsets
    np.random.seed(123)
    draws = [[np.random.choice(64, size, replace=False) for _ in range(4)] for _ in range(runs)]
    subsets = torch.as_tensor(np.array(draws)).permute(1, 0, 2)             # (B, R, |S|)
    np.random.seed(123)
    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0, normalise=False,
                                             abs=False, return_aggregate=False, disable_warnings=True)
    ref = metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy(), device="cpu",
                 channel_first=True)
    ours = faithfulness_correlation(model, x, maps, torch.as_tensor(y), subsets=subsets)
    np.testing.assert_allclose(ours.correlation.numpy(), ref, atol=1e-5, rtol=0)
    assert ours.settings.given_subsets and ours.settings.n_subsets == runs and ours.settings.subset_size == size


def test_seeds_chunks_and_batch() -> None:
    model = tiny_cnn()
    g = torch.Generator().manual_seed(2)
    x, s = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    whole = faithfulness_correlation(model, x, s, n_subsets=10, seed=4, batch_size=64)
    chunked = faithfulness_correlation(model, x, s, n_subsets=10, seed=4, batch_size=7)
    torch.testing.assert_close(chunked.score_drops, whole.score_drops, atol=1e-6, rtol=0)
    assert torch.equal(chunked.attribution_sums, whole.attribution_sums)
    first = faithfulness_correlation(model, x[:1], s[:1], whole.targets[:1], n_subsets=10, seed=4)
    torch.testing.assert_close(first.correlation, whole.correlation[:1], atol=1e-5, rtol=0)
    other = faithfulness_correlation(model, x, s, n_subsets=10, seed=5)
    assert not torch.equal(other.attribution_sums, whole.attribution_sums)
    assert whole.settings.subset_size == default_subset_size(64) == 16


def test_constant_attribution_sums_give_nan_and_errors() -> None:
    model, x = tiny_cnn(), torch.rand(1, 3, 6, 6)
    r = faithfulness_correlation(model, x, torch.ones(1, 6, 6), n_subsets=5, subset_size=4)
    assert torch.isnan(r.correlation).all()
    with pytest.raises(UsageError, match="smaller than"):
        faithfulness_correlation(model, x, torch.rand(1, 6, 6), subset_size=36)
    with pytest.raises(UsageError, match="pixel indices outside"):
        faithfulness_correlation(model, x, torch.rand(1, 6, 6), subsets=torch.full((1, 3, 2), 40))
    with pytest.raises(UsageError, match="n_subsets"):
        faithfulness_correlation(model, x, torch.rand(1, 6, 6), n_subsets=1)


# --- confidence change ---------------------------------------------------------------------------------------

class TwoClass(nn.Module):
    """Logits (sum(x), 0): p_0 = sigmoid(sum(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(dim=1, keepdim=True)
        return torch.cat([total, torch.zeros_like(total)], dim=1)


def test_confidence_change_by_hand() -> None:
    # image 0: sum 2, s = .5 everywhere -> masked sum 1; image 1: sum -1 (class 1 predicted), masked sum 0
    x = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), -0.25)])
    s = torch.full((2, 2, 2), 0.5)
    s[1] = 0.0
    r = confidence_change(TwoClass(), x, s)
    sig = torch.sigmoid
    y = torch.stack([sig(torch.tensor(2.0)), 1 - sig(torch.tensor(-1.0))])
    o = torch.stack([sig(torch.tensor(1.0)), 1 - sig(torch.tensor(0.0))])
    torch.testing.assert_close(r.original, y)
    torch.testing.assert_close(r.masked, o)
    assert r.targets.tolist() == [0, 1]
    torch.testing.assert_close(r.drop, (y - o).clamp_min(0) / y)
    assert r.increase.tolist() == [False, False]
    torch.testing.assert_close(r.gain, torch.zeros(2))
    summary = r.summary()
    assert summary["average_drop"] == pytest.approx(100 * float(((y - o) / y).mean()), rel=1e-6)
    assert summary["increase_in_confidence"] == 0.0
    # a map that raises the confidence: target class 1 on image 0 -> O > Y, gain (O - Y) / (1 - Y)
    up = confidence_change(TwoClass(), x[:1], s[:1], targets=1)
    y1, o1 = 1 - sig(torch.tensor(2.0)), 1 - sig(torch.tensor(1.0))
    assert up.increase.tolist() == [True]
    assert up.gain.item() == pytest.approx(float((o1 - y1) / (1 - y1)), rel=1e-6)
    assert up.drop.item() == 0.0


def test_confidence_change_matches_pytorch_grad_cam() -> None:
    from pytorch_grad_cam.metrics.cam_mult_image import (CamMultImageConfidenceChange, DropInConfidence,
                                                         IncreaseInConfidence)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = tiny_cnn()
    g = torch.Generator().manual_seed(3)
    x, s = torch.rand(5, 3, 8, 8, generator=g), torch.rand(5, 8, 8, generator=g)
    ours = confidence_change(model, x, s)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in ours.targets]
    # pytorch-grad-cam multiplies the input tensor by the map: on pixel-space inputs, our masked image
    change = CamMultImageConfidenceChange()(x, s.numpy(), targets, model)
    np.testing.assert_allclose((ours.masked - ours.original).numpy(), change, atol=1e-6)
    drop = DropInConfidence()(x, s.numpy(), targets, model)                 # max(0, Y - O), not divided by Y
    np.testing.assert_allclose((ours.drop * ours.original).numpy(), drop, atol=1e-6)
    increase = IncreaseInConfidence()(x, s.numpy(), targets, model)
    np.testing.assert_array_equal(ours.increase.float().numpy(), increase)


def test_confidence_change_errors_and_no_mutation() -> None:
    model = tiny_cnn().train()
    x = torch.rand(1, 3, 6, 6)
    with pytest.raises(UsageError, match=r"in \[0, 1\]"):
        confidence_change(model, x, torch.full((1, 6, 6), 2.0))
    confidence_change(model, x, torch.rand(1, 6, 6))
    assert model.training


# --- the metrics by name -------------------------------------------------------------------------------------

def test_retrain_free_scores_by_name_equal_the_metrics() -> None:
    from xairepro.metrics import HIGHER_IS_BETTER, FaithfulnessSuite, pixel_flipping, retrain_free_scores, road

    model = tiny_cnn()
    g = torch.Generator().manual_seed(5)
    x, s = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    suite = FaithfulnessSuite(road_percentages=(20.0, 60.0), pixel_flipping_steps=5, faithfulness_subsets=6, seed=2)
    scores = retrain_free_scores(model, x, s, targets=1, suite=suite)
    assert set(scores) <= set(HIGHER_IS_BETTER) and len(scores) == 7
    lerf = road(model, x, s, 1, [20, 60], "lerf", seed=2)
    torch.testing.assert_close(scores["road_lerf"], lerf.score)
    torch.testing.assert_close(scores["pixel_flipping"], pixel_flipping(model, x, s, 1, n_steps=5, seed=2).auc)
    fc = faithfulness_correlation(model, x, s, 1, n_subsets=6, seed=2)
    torch.testing.assert_close(scores["faithfulness_correlation"], fc.correlation)
    torch.testing.assert_close(scores["average_drop"], 100 * confidence_change(model, x, s, 1).drop)
    only = retrain_free_scores(model, x, s, names=["confidence-change"])
    assert set(only) == {"average_drop", "increase_in_confidence", "average_gain"}
    with pytest.raises(UsageError, match="choose from road"):
        retrain_free_scores(model, x, s, names=["roar"])
