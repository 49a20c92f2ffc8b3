"""Group-CAM against a one-image, one-group-at-a-time reference; the pixel-space blur; the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import GroupCAM
from xairepro.imaging import gaussian_blur, normalize_maps


def _net(k: int = 10, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, k, 3, padding=1), nn.BatchNorm2d(k), nn.ReLU(),
                         nn.Conv2d(k, k, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(k, 4))


def _reference(model: nn.Sequential, x: torch.Tensor, groups: int, kernel: int, sigma: float,
               percentile: float | None) -> torch.Tensor:
    """Group-CAM written from the paper, one image and one group per forward."""
    model.eval()
    out = []
    for i in range(x.shape[0]):
        img = x[i:i + 1].clone().requires_grad_(True)
        feats = model[:5](img)
        logits = model[5:](feats)
        c = int(logits.argmax())
        (grad,) = torch.autograd.grad(logits[0, c], feats)
        a, g = feats.detach()[0], grad[0]
        w = g.mean(dim=(1, 2))
        blur = TF.gaussian_blur(x[i:i + 1], [kernel, kernel], [sigma, sigma])
        with torch.no_grad():
            base = torch.softmax(model(blur), 1)[0, c]
            total = torch.zeros(x.shape[2:], dtype=x.dtype)
            for idx in np.array_split(np.arange(a.shape[0]), groups):
                m = torch.relu((w[idx, None, None] * a[idx]).sum(0))
                if percentile is not None:
                    theta = np.percentile(m.numpy(), percentile)
                    m = torch.where(m > float(theta), m, torch.zeros_like(m))
                m = F.interpolate(m[None, None], size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
                if float(m.max()) == float(m.min()):
                    continue
                m = (m - m.min()) / (m.max() - m.min())
                score = torch.softmax(model(x[i:i + 1] * m + blur * (1 - m)), 1)[0, c] - base
                total += score * m
        out.append(torch.relu(total))
    return normalize_maps(torch.stack(out)).float()


@pytest.mark.parametrize("groups,percentile", [(4, 70.0), (3, None), (32, 70.0)])
def test_matches_reference(groups: int, percentile: float | None) -> None:
    model = _net().double()      # float64: tiny softmax differences are amplified by the final min-max
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    ours = GroupCAM(model, model[4], groups=groups, blur_kernel=5, blur_sigma=2.0,
                    denoise_percentile=percentile, batch_size=5)(x)
    ref = _reference(model, x, min(groups, 10), 5, 2.0, percentile)
    assert ours.shape == (3, 8, 8) and float(ours.min()) >= 0 and float(ours.max()) <= 1
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_blur_matches_torchvision_and_small_images() -> None:
    x = torch.rand(2, 3, 9, 12)
    for k, s in ((3, 1.0), (11, 5.0), (9, 5.0)):
        torch.testing.assert_close(gaussian_blur(x, k, s), TF.gaussian_blur(x, [k, k], [s, s]), atol=1e-5, rtol=0)
    big = gaussian_blur(torch.rand(1, 1, 4, 4), 51, 50.0)       # kernel larger than the image: replicate borders
    assert big.shape == (1, 1, 4, 4) and bool(torch.isfinite(big).all())
    const = torch.full((1, 2, 5, 5), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 51, 50.0), const)


def test_contract_batching_and_errors() -> None:
    model = _net(seed=2)
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    bn = model[1].running_mean.clone()
    x = torch.rand(4, 3, 8, 8)
    x0 = x.clone()
    cam = GroupCAM(model, "4", groups=5, blur_kernel=5, blur_sigma=2.0, batch_size=3)
    whole = cam(x, target=torch.tensor([0, 1, 2, 3]))
    one = torch.cat([cam(x[i:i + 1], target=i) for i in range(4)])
    torch.testing.assert_close(whole, one, atol=1e-5, rtol=0)
    assert torch.equal(x, x0)
    assert all(m.training for m in model.modules()) and torch.equal(model[1].running_mean, bn)
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(UsageError, match="out of range"):
        cam(x, target=4)
    assert all(not m._forward_hooks for m in model.modules()) and model.training
    with pytest.raises(UsageError, match="groups"):
        GroupCAM(model, "4", groups=0)
