"""Autoencoders, VAEs and contrastive models: exact architectures, shapes, encoders, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.models import build_model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def bn_eval(t: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
    scale = m.weight / torch.sqrt(m.running_var + m.eps)
    return (t - m.running_mean[:, None, None]) * scale[:, None, None] + m.bias[:, None, None]


def randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


# ------------------------------------------------------------------------------------------- MNIST

def test_mnist_encoder_has_43428_parameters_at_d4() -> None:
    model = build_model("mnist-ae", latent_dim=4)
    conv = (1 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + 2 * 16 + (16 * 32 * 9 + 32)
    lin = (288 * 128 + 128) + (128 * 4 + 4)
    assert conv + lin == 43_428
    assert n_params(model.encoder) == 43_428
    # decoder: Linear(4,128) Linear(128,288) ConvT(32,16) BN ConvT(16,8) BN ConvT(8,1)
    dec = (4 * 128 + 128) + (128 * 288 + 288) + (32 * 16 * 9 + 16) + 32 + (16 * 8 * 9 + 8) + 16 + (8 * 9 + 1)
    assert n_params(model.decoder) == dec


def test_mnist_autoencoder_matches_functional_reference() -> None:
    torch.manual_seed(0)
    model = build_model("mnist-ae", latent_dim=4)
    randomise_bn(model)
    model.eval()
    e, d = model.encoder, model.decoder
    x = rand(3, 1, 28, 28)
    h = F.relu(F.conv2d(x, e.cnn.conv1.weight, e.cnn.conv1.bias, stride=2, padding=1))
    h = F.relu(bn_eval(F.conv2d(h, e.cnn.conv2.weight, e.cnn.conv2.bias, stride=2, padding=1), e.cnn.bn2))
    h = F.relu(F.conv2d(h, e.cnn.conv3.weight, e.cnn.conv3.bias, stride=2))
    assert h.shape == (3, 32, 3, 3)
    z = F.linear(F.relu(F.linear(h.flatten(1), e.lin.fc1.weight, e.lin.fc1.bias)), e.lin.fc2.weight, e.lin.fc2.bias)
    g = F.relu(F.linear(F.relu(F.linear(z, d.lin.fc1.weight, d.lin.fc1.bias)), d.lin.fc2.weight, d.lin.fc2.bias))
    g = g.view(3, 32, 3, 3)
    g = F.relu(bn_eval(F.conv_transpose2d(g, d.cnn.deconv1.weight, d.cnn.deconv1.bias, stride=2), d.cnn.bn1))
    g = F.relu(bn_eval(F.conv_transpose2d(g, d.cnn.deconv2.weight, d.cnn.deconv2.bias, stride=2, padding=1,
                                          output_padding=1), d.cnn.bn2))
    g = torch.sigmoid(F.conv_transpose2d(g, d.cnn.deconv3.weight, d.cnn.deconv3.bias, stride=2, padding=1,
                                         output_padding=1))
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), z, rtol=1e-5, atol=1e-5)
        recon = model(x)
        torch.testing.assert_close(recon, g, rtol=1e-5, atol=1e-5)
    assert recon.shape == (3, 1, 28, 28)
    assert ((recon > 0) & (recon < 1)).all()


def test_mnist_ae_cam_layer_and_input_checks() -> None:
    model = build_model("mnist-ae", seed=0).eval()
    x = rand(2, 1, 28, 28)
    seen: list[torch.Tensor] = []
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.no_grad():
            model.encoder(x)
    finally:
        handle.remove()
    assert torch.equal(seen[0], model.encoder.forward_features(x))
    with pytest.raises(UsageError, match="mnist-ae expects 28 x 28 images, got 32 x 32"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(UsageError, match="mnist-ae expects 28 x 28 images"):
        model.encoder(torch.rand(2, 1, 27, 28))
