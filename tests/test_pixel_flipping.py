"""Pixel flipping and region perturbation: hand oracles, equality with deletion, Quantus' PixelFlipping and
RegionPerturbation on the same maps, whole pixels (all channels), invariances, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics import InsertionDeletionProtocol, insertion_deletion, pixel_flipping
from xairepro.metrics.pixel_flipping import region_ranks

pytestmark = pytest.mark.usefixtures("one_thread")


class ChannelSum(nn.Module):
    """One-class model: raw score = sum of the values of one channel (all channels when None)."""

    def __init__(self, channel: int | None = None) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        part = x if self.channel is None else x[:, self.channel:self.channel + 1]
        return part.flatten(1).sum(dim=1, keepdim=True)


def tiny_cnn(channels: int = 3, classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, classes)).eval()


def distinct_maps(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(h * w, generator=g).float().view(h, w) / (h * w - 1) for _ in range(b)])


def test_hand_oracle_pixels_and_regions() -> None:
    # 1 x 4 image [.1, .2, .3, .4], saliency = x: flipping 1 pixel per step removes .4, .3, .2, .1
    x = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 1, 4)
    r = pixel_flipping(ChannelSum(), x, x[:, 0], regions_per_step=1, score="raw")
    torch.testing.assert_close(r.curve, torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0]]))
    torch.testing.assert_close(r.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    # uniform trapezoid / n: (2.0 - (1 + 0) / 2) / 4 = 0.375
    assert r.auc.item() == pytest.approx(0.375)
    assert r.summary() == {"pixel_flipping": pytest.approx(0.375)}
    # 2 x 2 regions of a 2 x 4 image: left cell x sums 1.0, saliency .9; right cell x sums .9, saliency 1.0
    x2 = torch.tensor([[0.1, 0.2, 0.15, 0.2], [0.3, 0.4, 0.25, 0.3]]).view(1, 1, 2, 4)
    s2 = torch.tensor([[0.0, 0.2, 0.3, 0.2], [0.4, 0.3, 0.1, 0.4]]).view(1, 2, 4)
    morf = pixel_flipping(ChannelSum(), x2, s2, region_size=2, regions_per_step=1, score="raw")
    lerf = pixel_flipping(ChannelSum(), x2, s2, region_size=2, regions_per_step=1, score="raw", order="lerf")
    torch.testing.assert_close(morf.curve, torch.tensor([[1.9, 1.0, 0.0]]))   # right cell flipped first
    torch.testing.assert_close(lerf.curve, torch.tensor([[1.9, 0.9, 0.0]]))   # left cell flipped first
    torch.testing.assert_close(morf.fractions, torch.tensor([0.0, 0.5, 1.0]))


def test_every_channel_of_a_flipped_pixel_is_replaced() -> None:
    # a model that reads only the blue channel still sees each flip (a red-only flip would leave it at 1.0)
    x = torch.full((1, 3, 2, 2), 0.25)
    r = pixel_flipping(ChannelSum(channel=2), x, torch.rand(1, 2, 2), regions_per_step=1, score="raw")
    torch.testing.assert_close(r.curve, torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.0]]))


def test_region_grid_is_centred_with_partial_edge_cells() -> None:
    # 5 x 5 map, 4 x 4 cells: 3 pixels of padding, 1 before and 2 after (as Quantus), so the cells cover
    # rows/columns 0..2 and 3..4: cell sizes 3 x 3, 3 x 2, 2 x 3, 2 x 2
    s = torch.zeros(1, 5, 5)
    s[0, 4, 4] = 1.0                                  # bottom-right cell first
    s[0, 0, 3] = 0.5                                  # then top-right
    s[0, 3, 0] = 0.25                                 # then bottom-left; top-left last
    ranks, n = region_ranks(s, 4)
    assert n == 4
    assert ranks[0].tolist() == [[3, 3, 3, 1, 1]] * 3 + [[2, 2, 2, 0, 0]] * 2


def test_pixels_with_zeros_equal_deletion() -> None:
    model = tiny_cnn()
    g = torch.Generator().manual_seed(2)
    x, s = torch.rand(3, 3, 9, 9, generator=g), torch.rand(3, 9, 9, generator=g)
    proto = InsertionDeletionProtocol(pixels_per_step=5, deletion_end="zeros")
    deletion = insertion_deletion(model, x, s, proto)
    flip = pixel_flipping(model, x, s, regions_per_step=5)
    torch.testing.assert_close(flip.curve, deletion.deletion_curve)
    torch.testing.assert_close(flip.auc, deletion.deletion)


@pytest.mark.parametrize("step", [1, 4])
def test_matches_quantus_pixel_flipping(step: int) -> None:
    import quantus

    model = tiny_cnn()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 6, 6, generator=g)
    maps = distinct_maps(3, 6, 6)
    y = np.array([1, 0, 3])
    # Quantus flips C*H*W features of the broadcast map: C features per step flip exactly one whole pixel
    metric = quantus.PixelFlipping(features_in_step=3 * step, perturb_baseline=0.0, normalise=False, abs=False,
                                   disable_warnings=True)
    ref = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy(),
                            device="cpu", channel_first=True, softmax=True))
    ours = pixel_flipping(model, x, maps, torch.as_tensor(y), regions_per_step=step)
    np.testing.assert_allclose(ours.curve[:, 1:].numpy(), ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("size", [6, 10])
def test_matches_quantus_region_perturbation(size: int) -> None:
    import quantus

    model = tiny_cnn()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, size, size, generator=g)
    maps = torch.rand(2, size, size, generator=g)      # continuous values: no ties between region sums
    y = np.array([2, 1])
    n_regions = math.ceil(size / 4) ** 2     # 4 x 4 cells; at 10 px the edge cells are 3 px wide
    metric = quantus.RegionPerturbation(patch_size=4, regions_evaluation=n_regions, perturb_baseline=0.0,
                                        normalise=False, abs=False, disable_warnings=True)
    ref = np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=maps[:, None].numpy(),
                            device="cpu", channel_first=True, softmax=True))
    ours = pixel_flipping(model, x, maps, torch.as_tensor(y), region_size=4, regions_per_step=1)
    drop = (ours.curve[:, :1] - ours.curve[:, 1:]).numpy()           # Quantus records f(x) - f(x perturbed)
    np.testing.assert_allclose(drop, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("baseline", ["zeros", "mean", "uniform"])
def test_batch_chunks_and_seeds(baseline: str) -> None:
    model = tiny_cnn()
    g = torch.Generator().manual_seed(6)
    x, s = torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 8, 8, generator=g)
    whole = pixel_flipping(model, x, s, baseline=baseline, n_steps=7, seed=1, batch_size=64)
    chunked = pixel_flipping(model, x, s, baseline=baseline, n_steps=7, seed=1, batch_size=3)
    torch.testing.assert_close(chunked.curve, whole.curve, atol=1e-6, rtol=0)
    first = pixel_flipping(model, x[:1], s[:1], whole.targets[:1], baseline=baseline, n_steps=7, seed=1)
    torch.testing.assert_close(first.curve[0], whole.curve[0], atol=1e-6, rtol=0)
    other = pixel_flipping(model, x, s, baseline=baseline, n_steps=7, seed=2)
    assert torch.equal(other.curve, whole.curve) == (baseline != "uniform")


def test_model_and_inputs_untouched_and_errors() -> None:
    model = tiny_cnn().train()
    x, s = torch.rand(2, 3, 6, 6), torch.rand(2, 6, 6)
    x0 = x.clone()
    pixel_flipping(model, x, s)
    assert model.training and torch.equal(x, x0)
    with pytest.raises(UsageError, match="exactly one"):
        pixel_flipping(model, x, s, regions_per_step=2, n_steps=3)
    with pytest.raises(UsageError, match="baseline"):
        pixel_flipping(model, x, s, baseline="black")
    with pytest.raises(UsageError, match="region_size"):
        pixel_flipping(model, x, s, region_size=0)
