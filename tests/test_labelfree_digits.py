"""Acceptance: on an autoencoder trained on digits (28 px), label-free IG masking beats Random at 5-20%."""

from __future__ import annotations

import torch

from xairepro.explain import LabelFreeAttribution
from xairepro.metrics import feature_consistency, pearson_offdiagonal

FRACTIONS = [0.05, 0.1, 0.2]


def test_label_free_ig_masking_moves_the_latent_more_than_random(trained_digits_autoencoder):
    ae = trained_digits_autoencoder
    encoder = ae.model.encoder
    x = ae.x_test[:120]
    attr = LabelFreeAttribution(encoder, "integrated_gradients").attribute(x, batch_size=40)
    assert attr.shape == x.shape and torch.isfinite(attr).all()
    ig = feature_consistency(encoder, x, attr, FRACTIONS, reduction="none")
    random = torch.stack([feature_consistency(encoder, x, "random", FRACTIONS, seed=s, reduction="none")
                          for s in range(3)]).mean(0)
    diff = ig - random                                   # (F, N), paired by example
    mean, se = diff.mean(1), diff.std(1) / diff.shape[1] ** 0.5
    assert (ig.mean(1) > random.mean(1)).all(), (ig.mean(1), random.mean(1))
    assert (mean - 2 * se > 0).all(), (mean, se)        # not a fluke of a few examples
    assert (ig.mean(1).diff() > 0).all()                 # more masked, larger shift


def test_per_unit_maps_on_the_trained_encoder(trained_digits_autoencoder):
    ae = trained_digits_autoencoder
    encoder = ae.model.encoder
    x = ae.x_test[:16]
    lf = LabelFreeAttribution(encoder, "gradient_shap")
    maps = lf.attribute_per_unit(x, seed=0)
    assert maps.shape == (16, 4, 1, 28, 28) and (maps >= 0).all()
    # the label-free map is the signed sum of the per-unit terms: |sum_j f_j a(f_j)| <= sum_j |.|
    total = lf.attribute(x, seed=0)
    assert (total.abs() <= maps.sum(1) + 1e-5).all()
    r = pearson_offdiagonal(maps)
    assert -1.0 <= r <= 1.0
