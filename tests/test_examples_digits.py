"""Acceptance: on the trained digits autoencoder (``mnist-ae``, d=4), Most > Least at K <= 20 % for
Influence Functions, TracIn, SimplEx and DkNN (the seed's example-consistency check, Figure 2)."""

from __future__ import annotations

import pytest
import torch

from xairepro.explain import DKNN, InfluenceFunctions, SimplEx, TracIn
from xairepro.metrics import similarity_rates
from xairepro.metrics.similarity import ks_from_fractions


pytestmark = pytest.mark.usefixtures("one_thread")


N_TRAIN, N_TEST = 200, 100
FRACTIONS = (0.05, 0.1, 0.2)


def reconstruction_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Label-free loss of an autoencoder: per-example mean squared reconstruction error."""
    return ((model(x) - x) ** 2).flatten(1).mean(1)


def test_most_beats_least_for_all_four_methods(trained_digits_autoencoder) -> None:
    ae = trained_digits_autoencoder
    model = ae.model
    x_train, y_train = ae.x_train[:N_TRAIN], ae.y_train[:N_TRAIN]
    x_test, y_test = ae.x_test[:N_TEST], ae.y_test[:N_TEST]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explainers = {
        # LiSSA with the seed's damping/scale (damping 1.0 = original damp 1e-3 x scale 1000); depth and
        # batch reduced to keep the default run short (the benchmark runs the full setting).
        "Influence Functions": InfluenceFunctions(model, reconstruction_loss, model.encoder, method="lissa",
                                                  damping=1.0, scale=1000.0, depth=5, hessian_batch_size=16,
                                                  hessian_data=ae.x_train, seed=0),
        "TracIn": TracIn(model, reconstruction_loss, model.encoder, checkpoints=ae.checkpoints),
        "SimplEx": SimplEx(model.encoder),
        "DKNN": DKNN(model.encoder),
    }
    ks = ks_from_fractions(N_TRAIN, FRACTIONS)
    for name, explainer in explainers.items():
        scores = explainer.attribute(x_test, x_train)
        assert scores.shape == (N_TEST, N_TRAIN) and torch.isfinite(scores).all(), name
        rates = similarity_rates(scores, y_train, y_test, ks)
        assert (rates["most"] > rates["least"]).all(), (name, rates)
        assert rates["most"][0] > 0.3, (name, rates)  # well above chance (~0.1 for 10 balanced classes)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.training
