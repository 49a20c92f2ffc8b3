"""Classifiers: exact parameter counts, shapes, the CAM layer, normalisation, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.models import Normalize, build_model
from xairepro.models.wrn import WideBasicBlock


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_on_meta(name: str, **options: object) -> int:
    with torch.device("meta"):
        return n_params(build_model(name, **options))


def wrn_params(depth: int, k: int, num_classes: int = 10, in_channels: int = 3) -> int:
    """Parameter count of a CIFAR WRN from the architecture (bias-free convs, affine BN, linear head)."""
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    total = in_channels * 16 * 9
    for group in range(3):
        cin, cout = widths[group], widths[group + 1]
        for i in range(n):
            c_in = cin if i == 0 else cout
            total += 2 * c_in + c_in * cout * 9 + 2 * cout + cout * cout * 9
            if c_in != cout:
                total += c_in * cout  # 1x1 projection shortcut
    return total + 2 * widths[3] + widths[3] * num_classes + num_classes


def cam_activation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- WRN

@pytest.mark.parametrize("depth, k, expected", [(28, 2, 1_467_610), (28, 10, 36_479_194), (28, 8, 23_354_842)])
def test_wrn_parameter_counts_are_exact(depth: int, k: int, expected: int) -> None:
    assert wrn_params(depth, k) == expected
    assert count_on_meta(f"wrn-{depth}-{k}") == expected


def test_wrn_counts_match_published_figures() -> None:
    assert abs(count_on_meta("wrn-28-2") - 1.47e6) < 0.005e6  # "about 1.47 M" (FixMatch: 1.5 M)
    assert abs(count_on_meta("wrn-28-10") - 36.5e6) < 0.05e6  # Zagoruyko & Komodakis: 36.5 M
    assert count_on_meta("wrn-16-4", num_classes=100, in_channels=1) == wrn_params(16, 4, 100, 1)


def test_wrn_counts_with_conv_biases_as_in_torchssl() -> None:
    n_convs = 1 + 3 * 4 * 2 + 3  # stem, two per block, three projection shortcuts
    bias_values = 16 + (4 * 2 * 32 + 32) + (4 * 2 * 64 + 64) + (4 * 2 * 128 + 128)
    assert n_convs == 28
    assert count_on_meta("wrn-28-2", conv_bias=True) == 1_467_610 + bias_values


@pytest.mark.parametrize("depth", [27, 8, 4, 0])
def test_wrn_invalid_depth_is_a_clear_error(depth: int) -> None:
    with pytest.raises(UsageError, match=r"depth must be 6n \+ 4"):
        build_model(f"wrn-{depth}-2")


def test_wrn_forward_shapes_and_cam_layer() -> None:
    model = build_model("wrn-28-2", num_classes=7, seed=0).eval()
    x = rand(2, 3, 32, 32)
    x_before = x.clone()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert logits.shape == (2, 7)
        assert features.shape == (2, 128, 8, 8)  # LICO: 128 tokens of dimension 64
        assert torch.equal(cam_activation(model, x), features)
        assert torch.equal(model.forward_head(features), logits)
    assert torch.equal(x, x_before)
    assert model.num_classes == 7 and model.input_shape is None and model.min_size == 4
    assert (features >= 0).all()  # after the final ReLU


def test_wrn_block_matches_functional_reference() -> None:
    """Pre-activation block: BN-act-conv(stride)-BN-act-conv + 1x1 shortcut of the pre-activated input."""
    torch.manual_seed(3)
    block = WideBasicBlock(4, 6, 2, dropout=0.0, activation="leaky_relu", bn_momentum=0.1, conv_bias=False)
    for bn in (block.bn1, block.bn2):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    block.eval()
    x = torch.randn(2, 4, 9, 9)

    def bn(t: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
        scale = m.weight / torch.sqrt(m.running_var + m.eps)
        return (t - m.running_mean[:, None, None]) * scale[:, None, None] + m.bias[:, None, None]

    pre = F.leaky_relu(bn(x, block.bn1), 0.1)
    out = F.conv2d(pre, block.conv1.weight, stride=2, padding=1)
    out = F.conv2d(F.leaky_relu(bn(out, block.bn2), 0.1), block.conv2.weight, padding=1)
    expected = out + F.conv2d(pre, block.shortcut.weight, stride=2)
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)

    same = WideBasicBlock(6, 6, 1, dropout=0.0, activation="relu", bn_momentum=0.1, conv_bias=False)
    assert same.shortcut is None  # identity shortcut on the raw input


def test_wrn_options_activation_dropout_momentum() -> None:
    model = build_model("wrn-10-2", activation="leaky_relu", dropout=0.3, bn_momentum=0.001, seed=0)
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 2 * 3 + 1 and all(m.negative_slope == 0.1 for m in leaky)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert all(m.momentum == 0.001 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    x = rand(2, 3, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout active in training
    model.eval()
    assert torch.equal(model(x), model(x))
    with pytest.raises(UsageError, match="activation must be one of relu, leaky_relu"):
        build_model("wrn-10-2", activation="gelu")
    with pytest.raises(UsageError, match="dropout"):
        build_model("wrn-10-2", dropout=1.5)


# ------------------------------------------------------------------------------------ normalisation

def test_normalize_module_hand_values() -> None:
    norm = Normalize([0.5, 0.0], [0.25, 2.0], channels=2)
    x = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    assert norm(x).flatten().tolist() == [2.0, 0.5]
    assert Normalize(channels=3).identity
    with pytest.raises(UsageError, match="mean has 2 values but the model takes 3 channels"):
        Normalize([0.5, 0.5], None, channels=3)
    with pytest.raises(UsageError, match="std must be positive"):
        Normalize(None, [1.0, 0.0, 1.0], channels=3)


@pytest.mark.parametrize("name, shape", [("wrn-10-1", (2, 3, 16, 16)), ("small-cnn", (2, 3, 10, 10)),
                                         ("mnist-classifier", (2, 1, 28, 28))])
def test_normalisation_is_applied_first(name: str, shape: tuple[int, ...]) -> None:
    channels = shape[1]
    mean = [0.4, 0.5, 0.6][:channels]
    std = [0.2, 0.25, 0.3][:channels]
    normalised = build_model(name, mean=mean, std=std, seed=0).eval()
    plain = build_model(name, seed=1).eval()
    plain.load_state_dict(normalised.state_dict(), strict=True)
    x = rand(*shape)
    x_norm = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normalised(x), plain(x_norm), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(normalised(x), plain(x))


# ------------------------------------------------------------------------------------ input checks

@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 1, 32, 32), "wrn-10-1 expects 3-channel images, got 1 channel"),
    (torch.rand(2, 4, 32, 32), "wrn-10-1 expects 3-channel images, got 4 channels"),
    (torch.rand(2, 3, 3, 32), "wrn-10-1 expects images of at least 4 x 4 pixels, got 3 x 32"),
    (torch.rand(3, 32, 32), r"wrn-10-1 expects a batch of images shaped \(B, 3, H, W\), got shape \(3, 32, 32\) "
                            r"\(add a batch dimension"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "expects float images in \\[0, 1\\], got dtype torch.uint8"),
    ([[0.0]], "wrn-10-1 expects a tensor of images, got list"),
])
def test_wrn_bad_inputs_are_usage_errors(x: object, message: str) -> None:
    model = build_model("wrn-10-1")
    with pytest.raises(UsageError, match=message):
        model(x)
    with pytest.raises(UsageError, match=message):
        model.forward_features(x)


def test_fixed_size_model_names_the_expected_size() -> None:
    model = build_model("mnist-classifier")
    with pytest.raises(UsageError, match="mnist-classifier expects 28 x 28 images, got 32 x 32"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(UsageError, match="mnist-classifier expects 1-channel images, got 3 channels"):
        model(torch.rand(2, 3, 28, 28))


# ------------------------------------------------------------------------------- small-cnn / mnist

def test_small_cnn_shapes_cam_and_count() -> None:
    model = build_model("small-cnn", num_classes=3, in_channels=1, width=4, seed=0).eval()
    conv = 1 * 4 * 9 + 4 * 8 * 9
    assert n_params(model) == conv + 2 * 4 + 2 * 8 + 8 * 3 + 3
    x = rand(5, 1, 9, 12)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (5, 8, 4, 6)
        assert torch.equal(cam_activation(model, x), features)
        assert model(x).shape == (5, 3)
    with pytest.raises(UsageError, match="at least 2 x 2"):
        model(torch.rand(1, 1, 1, 5))


def test_mnist_classifier_is_encoder_plus_linear_logits() -> None:
    model = build_model("mnist-classifier", latent_dim=4, num_classes=10, seed=0).eval()
    assert n_params(model.encoder) == 43_428
    assert n_params(model) == 43_428 + 4 * 10 + 10
    x = rand(6, 1, 28, 28)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (6, 32, 3, 3)
        assert torch.equal(cam_activation(model, x), features)
        logits = model(x)
        assert logits.shape == (6, 10)
        torch.testing.assert_close(logits, model.output(model.encoder(x)))
        assert not torch.allclose(logits.sum(1), torch.ones(6))  # logits, not softmax probabilities


# ------------------------------------------------------------------------------------------ ResNet

def test_resnet_parameter_counts() -> None:
    # torchvision's published counts with the ImageNet stem and 1000 classes
    assert count_on_meta("resnet18", num_classes=1000) == 11_689_512
    assert count_on_meta("resnet50", num_classes=1000) == 25_557_032
    # CIFAR stem: the 7x7 conv (3*64*49) becomes 3x3 (3*64*9); 10 classes
    assert count_on_meta("resnet18", cifar_stem=True) == 11_689_512 - 3 * 64 * 40 - 513_000 + 5_130 == 11_173_962
    assert count_on_meta("resnet50", cifar_stem=True) == 25_557_032 - 3 * 64 * 40 - 2_049_000 + 20_490


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_resnet18_equals_torchvision_definition(cifar_stem: bool) -> None:
    import torchvision

    ours = build_model("resnet18", num_classes=6, cifar_stem=cifar_stem, seed=0).eval()
    ref = torchvision.models.resnet18(weights=None, num_classes=6)
    if cifar_stem:
        ref.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        ref.maxpool = nn.Identity()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same module names as torchvision
    ref.eval()
    x = rand(2, 3, 16, 16) if cifar_stem else rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
        features = ours.forward_features(x)
        assert features.shape == ((2, 512, 2, 2) if cifar_stem else (1, 512, 1, 1))
        assert torch.equal(cam_activation(ours, x), features)
    assert ours.cam_layer is ours.layer4
    assert ours.min_size == (8 if cifar_stem else 32)


def test_resnet50_cifar_stem_shapes_and_cam() -> None:
    model = build_model("resnet50", num_classes=4, cifar_stem=True, seed=0).eval()
    assert isinstance(model.maxpool, nn.Identity)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    x = rand(1, 3, 8, 8)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 2048, 1, 1)
        assert torch.equal(cam_activation(model, x), features)
        assert model(x).shape == (1, 4)
    with pytest.raises(UsageError, match="resnet50 expects images of at least 8 x 8 pixels, got 4 x 4"):
        model(torch.rand(1, 3, 4, 4))


def test_resnet_takes_other_channel_counts() -> None:
    model = build_model("resnet18", in_channels=1, cifar_stem=True, num_classes=3, seed=0).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(rand(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(UsageError, match="resnet18 expects 1-channel images, got 3 channels"):
        model(rand(2, 3, 8, 8))
    with pytest.raises(UsageError, match="resnet18 expects images of at least 32 x 32 pixels, got 16 x 16"):
        build_model("resnet18")(rand(1, 3, 16, 16))


@pytest.mark.parametrize("name, options, shape, message", [
    ("mnist-classifier", {}, (2, 1, 28, 27), "mnist-classifier expects 28 x 28 images, got 28 x 27"),
    ("mnist-ae", {}, (2, 1, 28, 32), "mnist-ae expects 28 x 28 images, got 28 x 32"),
    ("burgess-vae", {"image_size": 32}, (1, 1, 32, 64), "burgess-vae expects 32 x 32 images, got 32 x 64"),
])
def test_wrong_width_alone_is_a_usage_error(name: str, options: dict, shape: tuple[int, ...], message: str) -> None:
    model = build_model(name, **options)
    with pytest.raises(UsageError, match=message):
        model(torch.rand(shape))
