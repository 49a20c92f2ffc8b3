"""Ground truth for attribution: LDS, detection AUC, rank correlation, and the sign/scale convention
checked against actual leave-one-out retraining of tiny convex models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import InfluenceFunctions, TracIn
from xairepro.metrics import (
    datamodel_subsets, detection_auc, linear_datamodeling_score, rank_correlation, representation_shift,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_datamodel_subsets_are_seeded_alpha_fractions() -> None:
    masks = datamodel_subsets(40, 6, 0.5, seed=3)
    assert masks.shape == (6, 40) and masks.dtype == torch.bool
    assert torch.all(masks.sum(1) == 20)
    assert torch.equal(masks, datamodel_subsets(40, 6, 0.5, seed=3))
    assert not torch.equal(masks, datamodel_subsets(40, 6, 0.5, seed=4))
    assert len({tuple(m.tolist()) for m in masks}) == 6
    with pytest.raises(UsageError, match="alpha"):
        datamodel_subsets(40, 6, 1.0)


def test_lds_is_one_for_outputs_ranked_like_the_predictions_and_minus_one_reversed() -> None:
    torch.manual_seed(0)
    scores = torch.randn(5, 30)
    masks = datamodel_subsets(30, 12, 0.5, seed=0)
    predicted = masks.double() @ scores.double().T                      # (12, 5)
    assert linear_datamodeling_score(scores, masks, predicted.exp()).item() == pytest.approx(1.0)
    assert linear_datamodeling_score(scores, masks, -predicted).item() == pytest.approx(-1.0)
    outputs = predicted.clone()
    outputs[:, 2] = 1.0  # a constant output has no ranking: left out of the mean
    per_test = linear_datamodeling_score(scores, masks, -outputs, reduction="none")
    assert torch.isnan(per_test[2]) and torch.allclose(per_test[[0, 1, 3, 4]], torch.full((4,), -1.0,
                                                                                            dtype=torch.float64))
    noisy = predicted + 3 * torch.randn_like(predicted)
    expected = np.mean([spearmanr(predicted[:, i], noisy[:, i])[0] for i in range(5)])
    assert linear_datamodeling_score(scores, masks, noisy).item() == pytest.approx(expected)
    with pytest.raises(UsageError, match="outputs must be"):
        linear_datamodeling_score(scores, masks, predicted.T)


def test_rank_correlation_matches_scipy_with_ties() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (3, 40), generator=gen).double()
    b = a + torch.randint(0, 3, (3, 40), generator=gen)
    got = rank_correlation(a, b)
    expected = [spearmanr(a[i], b[i])[0] for i in range(3)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    assert torch.isnan(rank_correlation(torch.ones(4), torch.arange(4.0)))


def test_detection_auc_matches_sklearn_with_ties() -> None:
    gen = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 6, (50,), generator=gen).double()
    flags = torch.rand(50, generator=gen) < 0.3
    assert detection_auc(scores, flags) == pytest.approx(roc_auc_score(flags.numpy(), scores.numpy()))
    assert detection_auc(flags.double(), flags) == 1.0
    with pytest.raises(UsageError, match="corrupted and clean"):
        detection_auc(scores, torch.zeros(50, dtype=torch.bool))


def test_representation_shift_ignores_rotations_and_shifts_of_the_retrained_encoder() -> None:
    torch.manual_seed(3)
    ref, anchors_ref = torch.randn(6, 3), torch.randn(20, 3)
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    move = lambda h: h @ q + torch.tensor([1.0, -2.0, 0.5])  # noqa: E731
    assert torch.allclose(representation_shift(move(ref), ref, move(anchors_ref), anchors_ref),
                          torch.zeros(6, dtype=torch.float64), atol=1e-10)
    bumped = move(ref).clone()
    bumped[2, 0] += 0.3
    shift = representation_shift(bumped, ref, move(anchors_ref), anchors_ref)
    assert shift[2] == pytest.approx(0.09, rel=1e-6) and shift[[0, 1, 3, 4, 5]].abs().max() < 1e-10


# ------------------------------------------------------------------------------------------------
# Sign and scale: score / n ≈ the change of the test loss when the example's term is removed from the
# training objective (1/n) sum_i loss_i + (damping / 2) ||θ||², checked by actual retraining.

def with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)


def fit_logistic(x, y, weights, lam, theta=None, steps: int = 30) -> torch.Tensor:
    """θ = [w, b] minimising (1/n) sum_i w_i BCE_i + (lam/2)||θ||², Newton's method in closed form."""
    xt, n = with_ones(x), x.shape[0]
    theta = torch.zeros(xt.shape[1], dtype=torch.float64) if theta is None else theta
    for _ in range(steps):
        p = torch.sigmoid(xt @ theta)
        g = xt.T @ (weights * (p - y)) / n + lam * theta
        h = xt.T @ (xt * (weights * p * (1 - p))[:, None]) / n + lam * torch.eye(xt.shape[1], dtype=torch.float64)
        theta = theta - torch.linalg.solve(h, g)
    return theta


def fit_hidden(x, keep, weights, lam) -> torch.Tensor:
    """[W | b] (d, d + 1) minimising (1/n) sum_i w_i ||W (x_i * keep) + b - x_i||² + (lam/2)||[W | b]||²."""
    xt, n = with_ones(x * keep), x.shape[0]
    system = 2 * xt.T @ (xt * weights[:, None]) / n + lam * torch.eye(xt.shape[1], dtype=torch.float64)
    return torch.linalg.solve(system, 2 * xt.T @ (x * weights[:, None]) / n).T


def set_linear(model: nn.Linear, theta: torch.Tensor) -> nn.Linear:
    with torch.no_grad():
        theta = theta.reshape(model.out_features, -1)
        model.weight.copy_(theta[:, :-1])
        model.bias.copy_(theta[:, -1])
    return model


def logistic_loss(model, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y, reduction="none")


@pytest.fixture(scope="module")
def logistic():
    """Ridge logistic regression on data drawn from a logistic model (well specified: Fisher ≈ Hessian)."""
    gen = torch.Generator().manual_seed(0)
    n, lam = 80, 0.01
    x = torch.randn(n + 10, 3, generator=gen, dtype=torch.float64)
    p = torch.sigmoid(x @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.3)
    y = (torch.rand(n + 10, generator=gen, dtype=torch.float64) < p).double()
    train, test = (x[:n], y[:n]), (x[n:], y[n:])
    theta = fit_logistic(*train, torch.ones(n, dtype=torch.float64), lam)
    model = set_linear(nn.Linear(3, 1).double(), theta)
    base, rows = logistic_loss(model, test).detach(), []
    for j in range(n):  # leave example j's term out of the objective, retrain, measure the test losses
        weights = torch.ones(n, dtype=torch.float64)
        weights[j] = 0
        moved = set_linear(nn.Linear(3, 1).double(), fit_logistic(*train, weights, lam, theta, steps=6))
        rows.append(logistic_loss(moved, test).detach() - base)
    return model, train, test, lam, torch.stack(rows, dim=1)


def slope(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    return float((x * y).sum() / (x * x).sum())


def test_exact_influence_predicts_leave_one_out_with_sign_and_scale(logistic) -> None:
    model, train, test, lam, actual = logistic
    n = train[0].shape[0]
    for method, kw in (("exact", {}), ("lissa", dict(scale=2.0, depth=300, hessian_batch_size=None)),
                       ("arnoldi", dict(arnoldi_iters=4, arnoldi_rank=4))):
        inf = InfluenceFunctions(model, logistic_loss, method=method, damping=lam, **kw)
        predicted = inf.attribute(test, train) / n
        assert np.corrcoef(predicted.flatten(), actual.flatten())[0, 1] > 0.99, method
        assert 0.9 < slope(predicted, actual) < 1.2, method  # leaving out also lowers H a little: > 1


@pytest.mark.parametrize("method", ["ekfac", "kfac", "projected", "fisher"])
def test_fisher_methods_share_the_sign_and_about_the_scale(logistic, method) -> None:
    """Empirical-Fisher curvature: the same sign and form; the scale matches where F ≈ H (here, a
    well-specified logistic model)."""
    model, train, test, lam, actual = logistic
    n = train[0].shape[0]
    kw = ({"method": "exact", "curvature": "fisher"} if method == "fisher" else
          {"method": method, "projection": "gaussian", "projection_dim": 4} if method == "projected" else
          {"method": method})
    predicted = InfluenceFunctions(model, logistic_loss, damping=lam, **kw).attribute(test, train) / n
    assert np.corrcoef(predicted.flatten(), actual.flatten())[0, 1] > 0.9
    assert 0.6 < slope(predicted, actual) < 1.6


def test_tracin_and_self_influence_share_the_sign(logistic) -> None:
    model, train, test, lam, actual = logistic
    tracin = TracIn(model, logistic_loss, checkpoints=[model.state_dict()]).attribute(test, train)
    assert np.corrcoef(tracin.flatten(), actual.flatten())[0, 1] > 0.5
    # self-influence: leaving an example out raises its own loss by about its self-influence / n
    n = train[0].shape[0]
    own = InfluenceFunctions(model, logistic_loss, method="exact", damping=lam).self_influence(train) / n
    theta = torch.cat([model.weight.detach()[0], model.bias.detach()])
    rises = []
    for j in range(n):
        weights = torch.ones(n, dtype=torch.float64)
        weights[j] = 0
        one = (train[0][j:j + 1], train[1][j:j + 1])
        moved = set_linear(nn.Linear(3, 1).double(), fit_logistic(*train, weights, lam, theta, steps=6))
        rises.append(float((logistic_loss(moved, one) - logistic_loss(model, one)).detach()))
    assert torch.all(own > 0) and all(r > 0 for r in rises)
    assert np.corrcoef(own, rises)[0, 1] > 0.99


def test_label_free_convex_model_leave_one_out() -> None:
    """Label-free: a linear model reconstructs x from x with one coordinate hidden (a convex quadratic)."""
    gen = torch.Generator().manual_seed(4)
    n, lam = 40, 0.05
    x = torch.randn(n + 6, 4, generator=gen, dtype=torch.float64) @ torch.randn(4, 4, generator=gen,
                                                                                 dtype=torch.float64)
    keep = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)

    def hidden_loss(model, xb: torch.Tensor) -> torch.Tensor:
        return ((model(xb * keep) - xb) ** 2).sum(1)

    train, test = x[:n], x[n:]
    model = set_linear(nn.Linear(4, 4).double(), fit_hidden(train, keep, torch.ones(n, dtype=torch.float64), lam))
    base, rows = hidden_loss(model, test).detach(), []
    for j in range(n):
        weights = torch.ones(n, dtype=torch.float64)
        weights[j] = 0
        moved = set_linear(nn.Linear(4, 4).double(), fit_hidden(train, keep, weights, lam))
        rows.append(hidden_loss(moved, test).detach() - base)
    actual = torch.stack(rows, dim=1)
    predicted = InfluenceFunctions(model, hidden_loss, method="exact", damping=lam).attribute(test, train) / n
    assert np.corrcoef(predicted.flatten(), actual.flatten())[0, 1] > 0.99
    assert 0.9 < slope(predicted, actual) < 1.1
