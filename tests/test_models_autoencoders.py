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


# ------------------------------------------------------------------------------------ Burgess VAE

def burgess_encoder_params(channels: int, size: int, latent: int) -> int:
    convs = (channels * 32 * 16 + 32) + (2 if size == 32 else 3) * (32 * 32 * 16 + 32)
    return convs + (512 * 256 + 256) + (256 * 256 + 256) + (256 * 2 * latent + 2 * latent)


def burgess_decoder_params(channels: int, size: int, latent: int) -> int:
    lin = (latent * 256 + 256) + (256 * 256 + 256) + (256 * 512 + 512)
    return lin + (2 if size == 32 else 3) * (32 * 32 * 16 + 32) + (32 * channels * 16 + channels)


@pytest.mark.parametrize("size, channels, latent", [(32, 1, 3), (64, 1, 6), (64, 3, 10), (32, 3, 16)])
def test_burgess_parameter_counts_and_shapes(size: int, channels: int, latent: int) -> None:
    model = build_model("burgess-vae", image_size=size, in_channels=channels, latent_dim=latent, seed=0).eval()
    assert n_params(model.encoder) == burgess_encoder_params(channels, size, latent)
    assert n_params(model.decoder) == burgess_decoder_params(channels, size, latent)
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (3 if size == 32 else 4)
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.out_channels == 32 for c in convs)
    x = rand(2, channels, size, size)
    with torch.no_grad():
        recon, mu, logvar = model(x)
        assert recon.shape == x.shape and mu.shape == logvar.shape == (2, latent)
        assert ((recon >= 0) & (recon <= 1)).all()
        assert torch.equal(model.encoder(x), mu)
        assert model.encoder.forward_features(x).shape == (2, 32, 4, 4)
    assert n_params(model.encoder) == 252_052 if (size, channels, latent) == (64, 1, 10) else True


def test_burgess_matches_functional_reference_at_32px() -> None:
    torch.manual_seed(1)
    model = build_model("burgess-vae", image_size=32, in_channels=3, latent_dim=2).eval()
    e, d = model.encoder, model.decoder
    x = rand(2, 3, 32, 32)
    h = x
    for conv in (e.cnn.conv1, e.cnn.conv2, e.cnn.conv3):
        h = F.relu(F.conv2d(h, conv.weight, conv.bias, stride=2, padding=1))
    h = F.relu(F.linear(F.relu(F.linear(h.flatten(1), e.lin.fc1.weight, e.lin.fc1.bias)),
                        e.lin.fc2.weight, e.lin.fc2.bias))
    stats = F.linear(h, e.mu_logvar.weight, e.mu_logvar.bias)
    mu, logvar = stats[:, :2], stats[:, 2:]
    g = F.relu(F.linear(mu, d.lin.fc1.weight, d.lin.fc1.bias))
    g = F.relu(F.linear(g, d.lin.fc2.weight, d.lin.fc2.bias))
    g = F.relu(F.linear(g, d.lin.fc3.weight, d.lin.fc3.bias)).view(2, 32, 4, 4)
    g = F.relu(F.conv_transpose2d(g, d.cnn.deconv1.weight, d.cnn.deconv1.bias, stride=2, padding=1))
    g = F.relu(F.conv_transpose2d(g, d.cnn.deconv2.weight, d.cnn.deconv2.bias, stride=2, padding=1))
    logits = F.conv_transpose2d(g, d.cnn.deconv3.weight, d.cnn.deconv3.bias, stride=2, padding=1)
    with torch.no_grad():
        got_mu, got_logvar = model.encode(x)
        torch.testing.assert_close(got_mu, mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_logvar, logvar, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.decode_logits(mu), logits, rtol=1e-5, atol=1e-5)
        recon, _, _ = model(x)  # eval mode: z = mu
        torch.testing.assert_close(recon, torch.sigmoid(logits), rtol=1e-5, atol=1e-5)


def test_vae_reparameterize_is_the_formula_and_seeded() -> None:
    model = build_model("burgess-vae", image_size=32, latent_dim=4, seed=0)
    mu = torch.tensor([[0.0, 1.0, -2.0, 0.5]])
    logvar = torch.log(torch.tensor([[4.0, 1.0, 0.25, 9.0]]))
    eps = torch.randn(1, 4, generator=torch.Generator().manual_seed(5))
    z = model.reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, mu + torch.tensor([[2.0, 1.0, 0.5, 3.0]]) * eps)
    x = rand(3, 1, 32, 32)
    model.train()
    a = model(x, generator=torch.Generator().manual_seed(9))
    b = model(x, generator=torch.Generator().manual_seed(9))
    c = model(x, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    model.eval()
    with torch.no_grad():
        recon, mu_x, _ = model(x)
        torch.testing.assert_close(recon, model.decode(mu_x))


def test_vae_batch_equals_one_by_one_and_input_checks() -> None:
    model = build_model("beta-vae", image_size=64, seed=0).eval()
    assert model.config["name"] == "burgess-vae"
    x = rand(3, 1, 64, 64)
    with torch.no_grad():
        whole = model.encoder(x)
        single = torch.cat([model.encoder(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, single, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="burgess-vae expects 64 x 64 images, got 32 x 32"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(UsageError, match="burgess-vae expects 1-channel images, got 3 channels"):
        model.encoder(torch.rand(1, 3, 64, 64))
    with pytest.raises(UsageError, match="image_size must be 32 or 64, got 28"):
        build_model("burgess-vae", image_size=28)
    with pytest.raises(UsageError, match=r"codes shaped \(B, 10\)"):
        model.decode(torch.zeros(2, 3))


# --------------------------------------------------------------------------------------- LSTM AE

def lstm_params(n_in: int, hidden: int) -> int:
    return 4 * hidden * (n_in + hidden) + 2 * 4 * hidden


def reference_lstm(x: torch.Tensor, lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM from its gate equations: i, f, g, o = split(W_ih x_t + b_ih + W_hh h + b_hh)."""
    b, t, _ = x.shape
    h = x.new_zeros(b, lstm.hidden_size)
    c = x.new_zeros(b, lstm.hidden_size)
    outputs = []
    for step in range(t):
        gates = x[:, step] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1), h


def test_lstm_ae_parameter_count_and_ecg_shapes() -> None:
    model = build_model("lstm-ae", seed=0).eval()
    enc = lstm_params(1, 128) + lstm_params(128, 64)
    dec = lstm_params(64, 64) + lstm_params(64, 128) + 128 * 1 + 1
    assert n_params(model.encoder) == enc and n_params(model.decoder) == dec
    x = torch.randn(3, 140, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        code = model.encoder(x)
        recon = model(x)
    assert code.shape == (3, 64) and recon.shape == (3, 140, 1)
    assert model.cam_layer is None  # no convolutional stage


def test_lstm_ae_matches_gate_equations() -> None:
    model = build_model("lstm-ae", seq_len=5, n_features=2, embedding_dim=3, seed=0).eval()
    x = torch.randn(4, 5, 2, generator=torch.Generator().manual_seed(1))
    hidden, _ = reference_lstm(x, model.encoder.rnn1)
    _, code = reference_lstm(hidden, model.encoder.rnn2)
    repeated = code.unsqueeze(1).repeat(1, 5, 1)
    out, _ = reference_lstm(repeated, model.decoder.rnn1)
    out, _ = reference_lstm(out, model.decoder.rnn2)
    expected = out @ model.decoder.output.weight.T + model.decoder.output.bias
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), code, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
        # batch vs one by one
        single = torch.cat([model(x[i:i + 1]) for i in range(4)])
        torch.testing.assert_close(model(x), single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 140), r"shaped \(B, T, C\) = \(B, 140, 1\), got shape \(2, 140\) \(add the feature dimension"),
    (torch.rand(2, 140, 3), "expects 1 feature per time step, got 3"),
    (torch.rand(2, 100, 1), "expects series of 140 time steps, got 100"),
    (torch.zeros(2, 140, 1, dtype=torch.int64), "expects float series"),
])
def test_lstm_ae_bad_inputs(x: torch.Tensor, message: str) -> None:
    model = build_model("lstm-ae")
    with pytest.raises(UsageError, match=message):
        model(x)
    with pytest.raises(UsageError, match=message):
        model.encoder(x)


# ------------------------------------------------------------------------------------------ SimCLR

def test_simclr_resnet18_counts_shapes_and_cam() -> None:
    model = build_model("simclr", seed=0).eval()
    trunk = 11_689_512 - 513_000 - 3 * 64 * 40  # torchvision ResNet-18 without fc, CIFAR stem
    head = (512 * 2048 + 2048) + (2048 * 128 + 128)
    assert n_params(model.encoder) == trunk and n_params(model) == trunk + head
    x = rand(2, 3, 16, 16)
    with torch.no_grad():
        h = model.encoder(x)
        z = model(x)
        features = model.forward_features(x)
    assert h.shape == (2, 512) and z.shape == (2, 128) and features.shape == (2, 512, 2, 2)
    torch.testing.assert_close(h, features.mean((2, 3)))
    torch.testing.assert_close(z, model.projector(h))
    seen: list[torch.Tensor] = []
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    assert torch.equal(seen[0], features)


@pytest.mark.slow
def test_simclr_densenet_encoder_equals_torchvision() -> None:
    import torchvision

    model = build_model("simclr", backbone="densenet121", cifar_stem=False, projection_hidden=64, seed=0).eval()
    ref = torchvision.models.densenet121(weights=None).eval()
    ref.features.load_state_dict(model.encoder.features.state_dict(), strict=True)
    x = rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = torch.flatten(F.adaptive_avg_pool2d(F.relu(ref.features(x)), 1), 1)
        torch.testing.assert_close(model.encoder(x), expected, rtol=1e-5, atol=1e-5)
        assert model(x).shape == (1, 128)
    assert n_params(model.encoder) == 7_978_856 - (1024 * 1000 + 1000)


def test_simclr_densenet_cifar_stem_and_resnet34() -> None:
    with torch.device("meta"):
        model = build_model("simclr", backbone="densenet121", projection_hidden=32)
        r34 = build_model("simclr", backbone="resnet34")
    assert isinstance(model.encoder.features.pool0, nn.Identity)
    assert model.encoder.features.conv0.kernel_size == (3, 3) and model.encoder.features.conv0.stride == (1, 1)
    assert isinstance(model.encoder.features[-1], nn.ReLU) and model.cam_layer is model.encoder.features
    assert model.num_features == 1024 and model.encoder.min_size == 8
    assert n_params(r34.encoder) == 21_797_672 - 513_000 - 3 * 64 * 40
    with pytest.raises(UsageError, match="backbone must be one of resnet18, resnet34, densenet121"):
        build_model("simclr", backbone="vgg16")
    with pytest.raises(UsageError, match=r"simclr \(resnet18\) expects 3-channel images, got 1 channel"):
        build_model("simclr")(torch.rand(2, 1, 32, 32))


def test_simclr_head_is_linear_relu_linear() -> None:
    model = build_model("simclr", projection_hidden=16, projection_dim=8, seed=0).eval()
    g = model.projector
    x = rand(2, 3, 8, 8)
    with torch.no_grad():
        h = model.encoder(x)
        expected = F.linear(F.relu(F.linear(h, g.fc1.weight, g.fc1.bias)), g.fc2.weight, g.fc2.bias)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    assert (g.fc1.in_features, g.fc1.out_features, g.fc2.out_features) == (512, 16, 8)
