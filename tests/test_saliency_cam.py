"""CAM family on top of pytorch-grad-cam: exact oracles on a GAP model, contract (state, hooks, targets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import (
    EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM, saliency_method,
)


class GapNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear; ``cam_layer`` is the ReLU."""

    def __init__(self, k: int = 4, classes: int = 3, stride: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, k, 3, padding=1, stride=stride)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(k, classes)
        self.cam_layer = self.relu
        self.fail = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("boom")
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low)).view_as(m)


def _class_activation_map(model: GapNet, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        a = model.features(x)
        w = model.fc.weight[classes]                      # (B, K)
        return torch.einsum("bk,bkhw->bhw", w, a)


def test_gradcam_equals_normalised_relu_of_class_activation_map() -> None:
    model = GapNet().eval()
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        pred = model(x).argmax(1)
    for target, classes in ((None, pred), (2, torch.full((3,), 2)), (torch.tensor([0, 2, 1]), torch.tensor([0, 2, 1]))):
        maps = GradCAM(model, model.relu)(x, target=target)
        expected = _minmax(torch.relu(_class_activation_map(model, x, classes)))
        assert maps.shape == (3, 8, 8) and maps.dtype == torch.float32
        assert bool((maps.flatten(1).amax(1) == 1).all())   # exactly [0, 1], not the library's 1 / (1 + 1e-7)
        torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)
    # HiRes-CAM and XGrad-CAM coincide with Grad-CAM when the gradients are constant per channel
    g = GradCAM(model)(x)
    torch.testing.assert_close(HiResCAM(model)(x), g, atol=1e-5, rtol=0)
    torch.testing.assert_close(XGradCAM(model, "relu")(x), g, atol=1e-5, rtol=0)


def test_layercam_and_gradcampp_match_their_formulas() -> None:
    model = GapNet(k=5, seed=1).eval()
    x = torch.rand(2, 3, 6, 6)
    t = torch.tensor([1, 0])
    a = model.features(x).detach()
    hw = 36
    grads = model.fc.weight[t][:, :, None, None].detach().expand_as(a) / hw   # d y_c / d A_k
    layer = torch.einsum("bkhw->bhw", torch.relu(grads) * a)
    torch.testing.assert_close(LayerCAM(model)(x, t), _minmax(torch.relu(layer)), atol=1e-5, rtol=0)
    # Grad-CAM++ (Chattopadhyay et al. eq. 19): alpha = g^2 / (2 g^2 + sum_ab A * g^3)
    g2, g3 = grads ** 2, grads ** 3
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(grads) * alpha).sum(dim=(2, 3))
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", weights, a))
    torch.testing.assert_close(GradCAMPlusPlus(model)(x, t), _minmax(cam), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus, ScoreCAM, LayerCAM, XGradCAM, EigenCAM, HiResCAM])
def test_every_cam_keeps_the_contract(cls: type) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    bn_mean = model[1].running_mean.clone()
    x = torch.rand(2, 3, 8, 8)
    x0 = x.clone()
    maps = cls(model, model[4], batch_size=8)(x, target=1)
    assert maps.shape == (2, 8, 8) and maps.device == x.device
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    assert torch.equal(x, x0) and not x.requires_grad
    assert all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, bn_mean)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.25)) for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_state_restored_after_exception() -> None:
    model = GapNet()
    model.train()
    model.fail = True
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="boom") as info:
        GradCAM(model)(torch.rand(1, 3, 4, 4))
    # checked while the traceback (and with it the library object) is still alive: hooks are removed by
    # the wrapper itself, not by the library's __del__ once the exception is gone
    assert info.tb is not None
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert not model.relu._forward_hooks


def test_batch_equals_one_by_one_and_frozen_model_and_no_grad() -> None:
    model = GapNet(stride=2, seed=3).eval()
    x = torch.rand(4, 3, 10, 10)
    whole = GradCAMPlusPlus(model)(x)
    single = torch.cat([GradCAMPlusPlus(model)(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(whole, single, atol=1e-5, rtol=0)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        frozen = GradCAMPlusPlus(model)(x)
    torch.testing.assert_close(frozen, whole, atol=1e-6, rtol=0)
    assert all(not p.requires_grad for p in model.parameters())


def test_bad_inputs() -> None:
    model = GapNet()
    cam = GradCAM(model)
    with pytest.raises(UsageError, match="out of range"):
        cam(torch.rand(2, 3, 4, 4), target=3)
    with pytest.raises(UsageError, match="out of range"):
        cam(torch.rand(2, 3, 4, 4), target=torch.tensor([0, -1]))
    with pytest.raises(UsageError, match="2 images"):
        cam(torch.rand(2, 3, 4, 4), target=torch.tensor([0, 1, 2]))
    with pytest.raises(UsageError, match="empty batch"):
        cam(torch.rand(0, 3, 4, 4))
    with pytest.raises(UsageError, match=r"\(B, C, H, W\)"):
        cam(torch.rand(3, 4, 4))
    with pytest.raises(UsageError, match="no layer"):
        GradCAM(model, "nope")
    with pytest.raises(UsageError, match="cam_layer"):
        GradCAM(nn.Sequential(nn.Conv2d(3, 2, 1)))
    with pytest.raises(UsageError, match="unknown saliency method"):
        saliency_method("magic", model)
    assert not model.relu._forward_hooks
    assert isinstance(saliency_method("Grad-CAM++", model), GradCAMPlusPlus)
