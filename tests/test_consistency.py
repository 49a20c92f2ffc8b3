"""Feature consistency: top-M masks against a slow reference, latent shifts against hand-computed ones."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import gaussian_blur
from xairepro.metrics import feature_consistency, topk_masks
from xairepro.metrics.consistency import (
    mask_inputs,
    n_masked,
    random_attributions,
)


def slow_masks(attributions: torch.Tensor, fraction: float, channel_dim: int | None) -> torch.Tensor:
    """Reference: per-example Python sort of (−score, index) pairs; the first M positions are masked."""
    scores = attributions.abs()
    if channel_dim is not None:
        scores = scores.sum(channel_dim)
    flat = scores.reshape(scores.shape[0], -1).tolist()
    out = torch.zeros(len(flat), len(flat[0]), dtype=torch.bool)
    for n, row in enumerate(flat):
        m = int(fraction * len(row) + 1e-9)
        for _, i in sorted((-v, i) for i, v in enumerate(row))[:m]:
            out[n, i] = True
    return out.reshape(scores.shape)


FRACS = [0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0]


@pytest.mark.parametrize("shape,channel_dim", [((3, 2, 7, 5), 1), ((4, 20, 3), 2), ((3, 17), None)])
def test_masks_equal_slow_reference_with_ties(shape, channel_dim):
    gen = torch.Generator().manual_seed(0)
    attr = torch.randint(-3, 4, shape, generator=gen).double()  # many ties on purpose
    masks = topk_masks(attr, FRACS)
    for f, m in zip(FRACS, masks):
        assert torch.equal(m, slow_masks(attr, f, channel_dim))


def test_masks_hold_exactly_the_top_m_positions():
    attr = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    scores = attr.abs().sum(1).flatten(1)
    masks = topk_masks(attr, [0.05, 0.2, 0.5]).flatten(2)
    for f, m in zip([0.05, 0.2, 0.5], masks):
        k = int(f * 64)
        assert (m.sum(1) == k).all()
        for row, s in zip(m, scores):
            assert s[row].min() >= s[~row].max()


def test_ties_go_to_the_lowest_index_first():
    masks = topk_masks(torch.ones(2, 1, 4, 4), [0.25, 0.5])
    assert masks[0].flatten(1)[0].tolist() == [True] * 4 + [False] * 12
    assert masks[1].flatten(1)[1].tolist() == [True] * 8 + [False] * 8


def test_n_masked_is_floor_of_fraction_times_positions():
    assert [n_masked(p, 784) for p in (0.05, 0.1, 0.2, 0.5, 0.8, 1.0)] == [39, 78, 156, 392, 627, 784]
    assert n_masked(0.29, 100) == 29  # no float drop to 28


def latent_shift_reference(w: torch.Tensor, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """f = W x on flattened images with zeros replacement: ||W (m * x)||^2 per example."""
    removed = (x.unsqueeze(0) * masks.unsqueeze(2)).flatten(2)  # (F, N, C*H*W)
    return ((removed @ w.T) ** 2).sum(-1)


def test_latent_shift_matches_hand_computation_for_a_linear_encoder():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(5, 2, 4, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 32, generator=gen, dtype=torch.float64)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(32, 3, bias=False)).double()
    with torch.no_grad():
        enc[1].weight.copy_(w)
    attr = torch.randn(5, 2, 4, 4, generator=gen, dtype=torch.float64)
    shifts = feature_consistency(enc, x, attr, FRACS, reduction="none", batch_size=2)
    expected = latent_shift_reference(w, x, topk_masks(attr, FRACS))
    torch.testing.assert_close(shifts, expected)
    torch.testing.assert_close(feature_consistency(enc, x, attr, FRACS), expected.mean(1))
    assert shifts[0].abs().max() == 0  # nothing masked, nothing moves


def test_series_layout_masks_time_steps_over_all_channels():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 30, 2, generator=gen, dtype=torch.float64)
    attr = torch.randn(4, 30, 2, generator=gen, dtype=torch.float64)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(60, 3)).double()
    shifts = feature_consistency(enc, x, attr, [0.1, 0.5], reduction="none")
    masks = topk_masks(attr, [0.1, 0.5])  # (F, N, T)
    assert masks.shape == (2, 4, 30)
    with torch.no_grad():
        for f in range(2):
            xp = x.clone()
            xp[masks[f]] = 0.0  # whole time step, both channels
            torch.testing.assert_close(shifts[f], ((enc(x) - enc(xp)) ** 2).sum(-1))


def test_replacements_blur_baseline_and_number():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 24, 24, generator=gen)
    attr = torch.rand(3, 3, 24, 24, generator=gen)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 24 * 24, 4))
    masks = topk_masks(attr, [0.2])[0]
    with torch.no_grad():
        for repl, target in [("blur", gaussian_blur(x)), (0.5, torch.full_like(x, 0.5)),
                             (x.mean(0), x.mean(0).expand_as(x)), (x.flip(0), x.flip(0))]:
            got = feature_consistency(enc, x, attr, [0.2], replacement=repl, reduction="none")[0]
            xp = torch.where(masks.unsqueeze(1), target, x)
            torch.testing.assert_close(got, ((enc(x) - enc(xp)) ** 2).sum(-1).double())


def test_position_shaped_attributions_are_accepted():
    x = torch.rand(2, 3, 8, 8)
    attr = torch.rand(2, 3, 8, 8)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    a = feature_consistency(enc, x, attr, [0.3])
    b = feature_consistency(enc, x, attr.abs().sum(1), [0.3])
    torch.testing.assert_close(a, b)


def test_gaussian_blur_matches_torchvision():
    from torchvision.transforms.functional import gaussian_blur as tv_blur

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(gaussian_blur(x), tv_blur(x, [21, 21], [5.0, 5.0]), rtol=1e-5, atol=1e-6)
    series = torch.rand(2, 40, 3)
    as_image = gaussian_blur(series.permute(0, 2, 1).unsqueeze(2).expand(2, 3, 11, 40).contiguous())
    torch.testing.assert_close(gaussian_blur(series), as_image[:, :, 5, :].permute(0, 2, 1), rtol=1e-5, atol=1e-6)


def test_random_control_is_one_call_and_seeded():
    x = torch.rand(8, 1, 10, 10)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(100, 3), nn.Tanh())
    a = feature_consistency(enc, x, "random", [0.1, 0.5], seed=1)
    b = feature_consistency(enc, x, random_attributions(x, seed=1), [0.1, 0.5])
    c = feature_consistency(enc, x, "random", [0.1, 0.5], seed=2)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_encoder_state_restored_and_input_untouched():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    enc.train()
    x = torch.rand(6, 1, 4, 4)
    before, stats = x.clone(), enc[2].running_mean.clone()
    a = feature_consistency(enc, x, torch.rand_like(x), [0.5])
    b = feature_consistency(enc, x, torch.rand_like(x) * 0 + a.new_tensor(1.0), [0.5])
    assert enc.training and torch.equal(x, before) and torch.equal(enc[2].running_mean, stats)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_masks_are_fast_and_loop_free_for_many_images():
    attr = torch.rand(2000, 1, 28, 28)
    masks = topk_masks(attr, [0.05, 0.1, 0.2, 0.5, 0.8, 1.0])
    assert masks.shape == (6, 2000, 28, 28)
    assert masks.flatten(2).sum(-1)[:, 0].tolist() == [39, 78, 156, 392, 627, 784]


def test_mask_inputs_broadcasts_fraction_axis():
    x = torch.rand(2, 3, 4, 4)
    masks = torch.zeros(5, 2, 4, 4, dtype=torch.bool)
    masks[3, 1, 2, 2] = True
    out = mask_inputs(x, masks, torch.zeros(1, 3, 4, 4))
    assert out.shape == (5, 2, 3, 4, 4)
    assert (out[3, 1, :, 2, 2] == 0).all() and torch.equal(out[0], x)


@pytest.mark.parametrize("fractions", [[-0.1], [1.5], [0.1, float("nan")], []])
def test_fractions_outside_unit_interval_are_rejected(fractions):
    with pytest.raises(UsageError, match="fractions"):
        topk_masks(torch.rand(2, 1, 4, 4), fractions)
    with pytest.raises(UsageError, match="fractions"):
        feature_consistency(nn.Flatten(), torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), fractions)


def test_bad_shapes_and_encoders_are_rejected():
    x = torch.rand(2, 1, 4, 4)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(UsageError, match="attributions have shape"):
        feature_consistency(enc, x, torch.rand(2, 1, 4, 5), [0.1])
    with pytest.raises(UsageError, match="replacement has shape"):
        feature_consistency(enc, x, torch.rand_like(x), [0.1], replacement=torch.zeros(3, 3))
    with pytest.raises(UsageError, match="2-D"):
        feature_consistency(nn.Identity(), x, torch.rand_like(x), [0.1])
    with pytest.raises(UsageError, match="NaN"):
        feature_consistency(enc, x, torch.full_like(x, float("nan")), [0.1])
    with pytest.raises(UsageError, match="larger than 10 px"):
        feature_consistency(enc, x, torch.rand_like(x), [0.1], replacement="blur")
    with pytest.raises(UsageError, match="unknown replacement"):
        feature_consistency(enc, x, torch.rand_like(x), [0.1], replacement="mean")


def test_all_fraction_and_chunk_combinations_agree():
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(7, 1, 5, 5, generator=gen)
    attr = torch.rand(7, 1, 5, 5, generator=gen)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(25, 3), nn.Tanh())
    whole = feature_consistency(enc, x, attr, FRACS, reduction="none", batch_size=100)
    for bs, (i, f) in itertools.product([1, 3], enumerate(FRACS)):
        chunked = feature_consistency(enc, x, attr, [f], reduction="none", batch_size=bs)[0]
        torch.testing.assert_close(chunked, whole[i])


def test_chunks_keep_each_row_with_its_own_replacement():
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(7, 2, 24, 24, generator=gen, dtype=torch.float64)
    attr = torch.rand(7, 2, 24, 24, generator=gen, dtype=torch.float64)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(2 * 24 * 24, 3), nn.Tanh()).double()
    for repl in ("blur", x.flip(0)):
        whole = feature_consistency(enc, x, attr, [0.1, 0.5], replacement=repl, reduction="none", batch_size=100)
        chunked = feature_consistency(enc, x, attr, [0.1, 0.5], replacement=repl, reduction="none", batch_size=3)
        torch.testing.assert_close(chunked, whole)
