"""ROAD: the imputation against pytorch-grad-cam's and Quantus' code and by hand, the metric against both
references on the same maps, invariances (batch, chunks, seeds), no mutation, errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics import noisy_linear_imputation, road
from xairepro.metrics._perturbation import seeded_generator

pytestmark = [pytest.mark.usefixtures("one_thread"),
              # pytorch-grad-cam's imputer hands torch tensors to numpy functions (its own code, not ours)
              pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")]


class PixelSum(nn.Module):
    """One-class model: raw score = sum of all pixel values (linear, so imputations can be checked by hand)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(dim=1, keepdim=True)


def tiny_cnn(channels: int = 3, classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes)).eval()


def distinct_maps(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Maps with all values distinct (a random permutation of 0..HW-1 scaled to [0, 1]): no ties anywhere."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(h * w, generator=g).float().view(h, w) / (h * w - 1) for _ in range(b)])


# --- the imputation ------------------------------------------------------------------------------------------

def test_single_removed_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3) / 10
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    out = noisy_linear_imputation(x, removed, noise=0.0)
    direct = (x[0, 0, 0, 1] + x[0, 0, 1, 0] + x[0, 0, 1, 2] + x[0, 0, 2, 1]) / 6
    diagonal = (x[0, 0, 0, 0] + x[0, 0, 0, 2] + x[0, 0, 2, 0] + x[0, 0, 2, 2]) / 12
    assert out[0, 0, 1, 1].item() == pytest.approx((direct + diagonal).item(), abs=1e-7)
    keep = ~removed[0]
    assert torch.equal(out[0, 0][keep], x[0, 0][keep])


def test_corner_pixel_uses_only_its_in_image_neighbours() -> None:
    # corner (0, 0): neighbours (0, 1) and (1, 0) at 1/6, (1, 1) at 1/12 -> weights renormalised by 5/12
    x = torch.tensor([[0.0, 0.6], [0.3, 0.9]]).view(1, 1, 2, 2)
    removed = torch.tensor([[[True, False], [False, False]]])
    out = noisy_linear_imputation(x, removed, noise=0.0)
    assert out[0, 0, 0, 0].item() == pytest.approx((0.6 / 6 + 0.3 / 6 + 0.9 / 12) / (5 / 12), abs=1e-7)


def test_two_adjacent_removed_pixels_solve_a_coupled_system() -> None:
    # 1 x 4 row [a, ?, ?, d]: each unknown is the mean of its two row neighbours (weights 1/6 each):
    # u = (a + v) / 2, v = (u + d) / 2  ->  u = (2a + d) / 3, v = (a + 2d) / 3
    a, d = 0.9, 0.3
    x = torch.tensor([a, 0.0, 0.0, d]).view(1, 1, 1, 4)
    removed = torch.tensor([[[False, True, True, False]]])
    out = noisy_linear_imputation(x, removed, noise=0.0)
    assert out[0, 0, 0, 1].item() == pytest.approx((2 * a + d) / 3, abs=1e-7)
    assert out[0, 0, 0, 2].item() == pytest.approx((a + 2 * d) / 3, abs=1e-7)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_imputation_matches_pytorch_grad_cam_and_quantus(fraction: float) -> None:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 9, 11, generator=g, dtype=torch.float64)
    removed = torch.rand(3, 9, 11, generator=g) < fraction
    removed[:, 0, 0] = True        # a corner and a whole border row removed: the edge cases
    removed[0, -1, :] = True
    ours = noisy_linear_imputation(x, removed, noise=0.0)
    for i in range(3):
        cam = NoisyLinearImputer(noise=0.0)(x[i].float().clone(), (~removed[i]).float())
        torch.testing.assert_close(ours[i].float(), cam, atol=2e-6, rtol=0)
        idx = np.flatnonzero(removed[i].numpy().ravel())
        quantus = quantus_imputation(x[i].numpy(), idx, noise=0.0)
        np.testing.assert_allclose(ours[i].numpy(), quantus, atol=1e-12, rtol=0)


def test_noise_is_seeded_per_image_and_only_on_removed_pixels() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64)
    removed = torch.rand(2, 8, 8, generator=g) < 0.4
    plain = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.01, seed=5)
    for i in range(2):
        draw = torch.randn((3, 8, 8), generator=seeded_generator(5, "road", i), dtype=torch.float64)
        expected = torch.where(removed[i], plain[i] + 0.01 * draw, plain[i])
        torch.testing.assert_close(noisy[i], expected, atol=1e-12, rtol=0)
    assert torch.equal(noisy, noisy_linear_imputation(x, removed, noise=0.01, seed=5))
    assert not torch.equal(noisy, noisy_linear_imputation(x, removed, noise=0.01, seed=6))


def test_imputation_errors() -> None:
    x = torch.rand(1, 1, 3, 3)
    with pytest.raises(UsageError, match="every pixel removed"):
        noisy_linear_imputation(x, torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(UsageError, match="bool mask"):
        noisy_linear_imputation(x, torch.zeros(1, 3, 3))


# --- the metric ----------------------------------------------------------------------------------------------

def test_fixed_imputation_on_a_pixel_sum_model_by_hand() -> None:
    # 1 x 4 image [.1, .2, .3, .6] (mean .3), saliency ranks pixel 3 first: removing 50% (2 pixels,
    # MoRF: pixels 3, 2) gives [.1, .2, .3, .3] -> sum .9; LeRF removes pixels 0, 1 -> [.3, .3, .3, .6] = 1.5
    x = torch.tensor([0.1, 0.2, 0.3, 0.6]).view(1, 1, 1, 4)
    s = torch.tensor([0.1, 0.2, 0.3, 0.9]).view(1, 1, 4)
    morf = road(PixelSum(), x, s, percentages=[0, 50], imputation="fixed", score="raw")
    torch.testing.assert_close(morf.scores, torch.tensor([[1.2, 0.9]]))
    assert morf.original.item() == pytest.approx(1.2)
    assert morf.removed_counts.tolist() == [0, 2]
    lerf = road(PixelSum(), x, s, percentages=[50], order="lerf", imputation="fixed", score="raw")
    assert lerf.scores.item() == pytest.approx(1.5)
    assert morf.summary() == {"road_morf": pytest.approx((1.2 + 0.9) / 2)}
    assert lerf.summary() == {"road_lerf": pytest.approx(1.5)}


def _grad_cam_removed_count(cam: np.ndarray, percentile: float, morf: bool) -> int:
    """How many pixels pytorch-grad-cam's Remove{Most,Least}RelevantFirst(percentile) removes."""
    values = cam if morf else 1 - cam
    return int((values >= np.percentile(values, percentile)).sum())


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_metric_matches_pytorch_grad_cam_road(order: str) -> None:
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = tiny_cnn()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, 3, 10, 10, generator=g)
    cams = distinct_maps(3, 10, 10)
    targets = [2, 0, 3]
    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    for q in (20, 50, 80):
        metric = PerturbationConfidenceMetric(remover(q, NoisyLinearImputer(noise=0.0)))
        ref = metric(x, cams.numpy(), [ClassifierOutputSoftmaxTarget(t) for t in targets], model, return_diff=False)
        counts = {_grad_cam_removed_count(c, q, order == "morf") for c in cams.numpy()}
        assert len(counts) == 1                      # distinct maps: the same count for every image
        pct = 100 * counts.pop() / (10 * 10)
        ours = road(model, x, cams, torch.tensor(targets), percentages=[pct], order=order, imputation="linear")
        np.testing.assert_allclose(ours.scores[:, 0].numpy(), ref, atol=2e-6, rtol=0)


def test_metric_matches_quantus_road_on_greyscale_images() -> None:
    import quantus

    model = tiny_cnn(channels=1)
    g = torch.Generator().manual_seed(8)
    x = torch.rand(6, 1, 8, 8, generator=g)
    maps = distinct_maps(6, 8, 8, seed=2)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 4                            # one image whose target is not the prediction
    pcts = [10, 30, 50, 70, 90]
    metric = quantus.ROAD(percentages=pcts, noise=0.0, normalise=False, abs=False, disable_warnings=True)
    ref = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu",
                 channel_first=True)
    ours = road(model, x, maps, y, percentages=pcts, imputation="linear")
    np.testing.assert_allclose(ours.accuracy.numpy(), [ref[p] for p in pcts], atol=1e-7)
    assert ours.removed_counts.tolist() == [int(64 * p / 100) for p in pcts]


def test_quantus_road_0_6_cannot_score_rgb_images_with_one_map_per_image() -> None:
    # Documented difference (docs/decisions.md): Quantus ranks the C*H*W broadcast features but removes
    # them as pixel indices, so an RGB image with a (B, 1, H, W) map indexes outside the image.
    import quantus

    x = torch.rand(2, 3, 8, 8)
    maps = distinct_maps(2, 8, 8)[:, None]
    metric = quantus.ROAD(percentages=[50], noise=0.0, normalise=False, disable_warnings=True)
    with pytest.raises(IndexError):
        metric(model=tiny_cnn(), x_batch=x.numpy(), y_batch=np.array([0, 1]), a_batch=maps.numpy(), device="cpu",
               channel_first=True)
    assert road(tiny_cnn(), x, maps[:, 0], percentages=[50]).scores.shape == (2, 1)


@pytest.mark.parametrize("imputation", ["linear", "fixed"])
def test_batch_equals_one_by_one(imputation: str) -> None:
    model = tiny_cnn()
    g = torch.Generator().manual_seed(9)
    x = torch.rand(4, 3, 12, 12, generator=g)
    s = torch.rand(4, 12, 12, generator=g)
    whole = road(model, x, s, percentages=[25, 75], imputation=imputation, batch_size=3)
    for i in range(4):
        one = road(model, x[i:i + 1], s[i:i + 1], whole.targets[i:i + 1], percentages=[25, 75], imputation=imputation)
        torch.testing.assert_close(one.scores[0], whole.scores[i], atol=1e-6, rtol=0)


def test_chunks_and_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    road_module = importlib.import_module("xairepro.metrics.road")   # the module (the package attribute is the function)

    model = tiny_cnn()
    g = torch.Generator().manual_seed(10)
    x = torch.rand(5, 3, 10, 10, generator=g)
    s = torch.rand(5, 10, 10, generator=g)
    whole = road(model, x, s, seed=3)
    monkeypatch.setattr(road_module, "MAX_UNKNOWNS", 60)      # one image per solve, several solves per image
    chunked = road(model, x, s, seed=3, batch_size=2)
    torch.testing.assert_close(chunked.scores, whole.scores, atol=1e-6, rtol=0)
    assert torch.equal(chunked.correct, whole.correct)
    monkeypatch.undo()
    again = road(model, x, s, seed=3)
    assert torch.equal(again.scores, whole.scores)
    other = road(model, x, s, seed=4)
    assert not torch.equal(other.scores, whole.scores)
    assert whole.settings.to_dict()["seed"] == 3 and whole.settings.digest != other.settings.digest


def test_model_and_inputs_untouched() -> None:
    model = tiny_cnn().train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    x = torch.rand(2, 3, 8, 8)
    s = torch.rand(2, 8, 8)
    x0, s0 = x.clone(), s.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    road(model, x, s, percentages=[50])
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(x, x0) and torch.equal(s, s0)


def test_errors_in_the_users_terms() -> None:
    model, x, s = tiny_cnn(), torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8)
    with pytest.raises(UsageError, match=r"\[0, 100\)"):
        road(model, x, s, percentages=[100])
    with pytest.raises(UsageError, match="order"):
        road(model, x, s, order="random")
    with pytest.raises(UsageError, match="imputation"):
        road(model, x, s, imputation="gain")
    with pytest.raises(UsageError, match="saliency has shape"):
        road(model, x, torch.rand(1, 7, 8))
    with pytest.raises(UsageError, match="out of range"):
        road(model, x, s, targets=9)


# --- ROAD imputation for the label-free latent shift ---------------------------------------------------------

def test_series_imputation_solves_the_one_dimensional_system() -> None:
    # each removed step = the mean of its in-series neighbours (1/2 each; one neighbour at the ends)
    from xairepro.metrics.road import road_imputation

    g = torch.Generator().manual_seed(11)
    x = torch.rand(3, 12, 2, generator=g, dtype=torch.float64)
    removed = torch.rand(1, 3, 12, generator=g) < 0.5
    removed[0, :, 0] = True                            # an open end on both sides
    removed[0, :, -1] = True
    removed[0, :, 5] = False
    ours = road_imputation(x, removed, noise=0.0)[0]
    for i in range(3):
        idx = torch.nonzero(removed[0, i]).flatten().tolist()
        a = torch.zeros(len(idx), len(idx), dtype=torch.float64)
        b = torch.zeros(len(idx), 2, dtype=torch.float64)
        for r, t in enumerate(idx):
            nbs = [u for u in (t - 1, t + 1) if 0 <= u < 12]
            a[r, r] = len(nbs)
            for u in nbs:
                if u in idx:
                    a[r, idx.index(u)] -= 1
                else:
                    b[r] += x[i, u]
        torch.testing.assert_close(ours[i, idx], torch.linalg.solve(a, b))
        keep = ~removed[0, i]
        assert torch.equal(ours[i, keep], x[i, keep])


def test_image_imputation_for_several_masks_and_chunked_noise() -> None:
    from xairepro.metrics.road import road_imputation

    g = torch.Generator().manual_seed(12)
    x = torch.rand(4, 3, 7, 7, generator=g, dtype=torch.float64)
    masks = torch.rand(2, 4, 7, 7, generator=g) < torch.tensor([0.2, 0.7]).view(2, 1, 1, 1)
    plain = road_imputation(x, masks, noise=0.0)
    for f in range(2):
        torch.testing.assert_close(plain[f], noisy_linear_imputation(x, masks[f], noise=0.0))
    noisy = road_imputation(x, masks, noise=0.01, seed=3)
    tail = road_imputation(x[2:], masks[:, 2:], noise=0.01, seed=3, first=2)
    assert torch.equal(noisy[:, 2:], tail)
    with pytest.raises(UsageError, match="100%"):
        road_imputation(x, torch.ones(1, 4, 7, 7, dtype=torch.bool))


def test_latent_shift_with_road_removal() -> None:
    from xairepro.metrics import feature_consistency
    from xairepro.metrics.road import road_imputation
    from xairepro.utils import derive_seed

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(5, 3, 6, 6)
    attr = torch.rand(5, 6, 6)
    whole = feature_consistency(encoder, x, attr, [0.1, 0.5], replacement="road", seed=2, reduction="none")
    chunked = feature_consistency(encoder, x, attr, [0.1, 0.5], replacement="road", seed=2, batch_size=2,
                                  reduction="none")
    torch.testing.assert_close(chunked, whole)
    ranks = torch.argsort(torch.argsort(attr.flatten(1), dim=1, descending=True, stable=True), dim=1)
    masks = torch.stack([(ranks < int(f * 36)).view(5, 6, 6) for f in (0.1, 0.5)])
    x_p = road_imputation(x, masks, noise=0.01, seed=derive_seed(2, "road"))
    with torch.no_grad():
        expected = ((encoder(x)[None] - encoder(x_p.flatten(0, 1)).view(2, 5, 4)) ** 2).sum(-1).double()
    torch.testing.assert_close(whole, expected)
    with pytest.raises(UsageError, match="100%"):
        feature_consistency(encoder, x, attr, [1.0], replacement="road")
