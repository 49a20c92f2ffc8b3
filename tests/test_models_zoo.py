"""Every registered model: forward on a batch of its default input shape, output shapes by kind,
the CAM layer's output equals the conv features, ``.encoder`` where the model has one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.models import ModelInfo, build_model, list_models

HEAVY = {"resnet50"}  # 224 px ResNet-50 forward: slow on a shared 2-core CPU


def _params() -> list:
    out = []
    for info in list_models():
        marks = [pytest.mark.slow] if info.name in HEAVY else []
        out.append(pytest.param(info, id=info.name, marks=marks))
    return out


def _hooked(layer: nn.Module, run) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("info", _params())
def test_forward_on_default_input_shape(info: ModelInfo) -> None:
    model = build_model(info.example, seed=0).eval()
    assert info.input_shape is not None
    b = 1 if torch.Size(info.input_shape).numel() > 100_000 else 2  # one 224 px image is enough
    x = torch.rand((b, *info.input_shape), generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    if info.kind == "classifier":
        outputs: list[torch.Tensor] = []
        activation = _hooked(model.cam_layer, lambda: outputs.append(model(x)))
        out = outputs[0]
        assert out.shape == (b, model.num_classes)
        with torch.no_grad():
            features = model.forward_features(x)
            assert torch.equal(model.forward_head(features), out)
        assert features.ndim == 4 and features.shape[0] == b
        assert torch.equal(activation, features)
        assert torch.equal(x, x_before)  # input not mutated
        return
    with torch.no_grad():
        out = model(x)
    assert torch.equal(x, x_before)  # input not mutated
    if info.kind == "autoencoder":
        assert out.shape == x.shape
        with torch.no_grad():
            code = model.encoder(x)
            assert torch.equal(model.decoder(code), out)
        assert code.ndim == 2 and code.shape[0] == 2
    elif info.kind == "vae":
        recon, mu, logvar = out
        assert recon.shape == x.shape and mu.shape == logvar.shape == (2, model.latent_dim)
        with torch.no_grad():
            assert torch.equal(model.encoder(x), mu)
    else:  # contrastive
        assert out.shape == (2, model.projection_dim)
        with torch.no_grad():
            assert model.encoder(x).shape == (2, model.num_features)
    if model.cam_layer is not None:
        conv = getattr(model, "forward_features", None) or model.encoder.forward_features
        with torch.no_grad():
            expected = conv(x)
        assert torch.equal(_hooked(model.cam_layer, lambda: model.encoder(x)), expected)


def test_every_model_but_the_recurrent_one_has_a_cam_layer() -> None:
    for info in list_models():
        with torch.device("meta"):
            model = build_model(info.example)
        assert (model.cam_layer is None) == (info.name == "lstm-ae"), info.name
        assert hasattr(model, "encoder") == (info.kind != "classifier" or info.name == "mnist-classifier")


@pytest.mark.slow
def test_wrn_28_10_forward_one_image() -> None:
    model = build_model("wrn-28-10", seed=0).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (1, 10)
        assert model.forward_features(x).shape == (1, 640, 8, 8)


@pytest.mark.slow
def test_simclr_densenet_cifar_stem_at_32px() -> None:
    model = build_model("simclr", backbone="densenet121", seed=0).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 1024, 4, 4) and (features >= 0).all()
        assert torch.equal(_hooked(model.cam_layer, lambda: model(x)), features)
        assert model.encoder(x).shape == (2, 1024) and model(x).shape == (2, 128)
