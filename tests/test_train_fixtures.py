"""The shared session fixtures: the data they hold and the autoencoder they train."""

from __future__ import annotations

import torch

from xairepro.train import checkpoint_weights


def test_digits28_shapes_and_range(digits28):
    assert digits28.x_train.shape[1:] == (1, 28, 28) and digits28.x_test.shape[1:] == (1, 28, 28)
    assert len(digits28.x_train) == len(digits28.y_train) > 1000
    assert len(digits28.x_test) == len(digits28.y_test) > 300
    assert 0.0 <= float(digits28.x_train.min()) and float(digits28.x_train.max()) <= 1.0
    assert set(digits28.y_test.tolist()) == set(range(10))


def test_trained_autoencoder_reconstructs_and_keeps_its_checkpoints(trained_digits_autoencoder):
    ae = trained_digits_autoencoder
    assert not ae.model.training
    assert [p.name for p in ae.checkpoints] == [f"epoch_{k:04d}.pt" for k in range(1, 9)]
    last = checkpoint_weights(ae.checkpoints[-1])
    assert all(torch.equal(v, last[k]) for k, v in ae.model.state_dict().items())
    losses = [h["train/loss"] for h in ae.result.history]
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():
        recon = ae.model(ae.x_test)
        mse = (recon - ae.x_test).square().mean().item()
        baseline = (ae.x_test - ae.x_train.mean(0)).square().mean().item()  # predicting the mean image
    assert mse < 0.5 * baseline
    assert ae.model.encoder(ae.x_test[:5]).shape == (5, 4)
