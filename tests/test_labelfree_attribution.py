"""Label-free feature importance: exact oracles on a linear encoder, invariances, state, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, Saliency
from torch import nn

from xairepro.errors import UsageError
from xairepro.explain import LabelFreeAttribution

DT = torch.float64


def linear_encoder(w: torch.Tensor) -> nn.Module:
    enc = nn.Linear(w.shape[1], w.shape[0], bias=False).to(DT)
    with torch.no_grad():
        enc.weight.copy_(w)
    return enc


@pytest.fixture
def linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(3, 6, generator=gen, dtype=DT)
    x = torch.randn(5, 6, generator=gen, dtype=DT)
    return linear_encoder(w), w, x


class ConvEncoder(nn.Module):
    """A small nonlinear image encoder with BatchNorm and dropout (eval mode matters)."""

    def __init__(self, d: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.Tanh()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 6 * 6, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.bn(self.conv(x))))
        return self.fc(h.flatten(1))


@pytest.fixture
def conv() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    enc = ConvEncoder().to(DT)
    with torch.no_grad():
        enc.bn.running_mean.uniform_(-0.2, 0.2)
        enc.bn.running_var.uniform_(0.5, 1.5)
    x = torch.rand(4, 1, 6, 6, dtype=DT)
    return enc, x


# ---------------------------------------------------------------- linear oracle f(x) = W x
@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap", IntegratedGradients, GradientShap])
def test_linear_ig_and_gradient_shap_give_x_times_wtwx_on_every_row(linear, method):
    enc, w, x = linear
    attr = LabelFreeAttribution(enc, method).attribute(x, baselines=torch.zeros(6, dtype=DT))
    expected = x * ((x @ w.T) @ w)
    torch.testing.assert_close(attr, expected, rtol=1e-6, atol=1e-7)


def test_bug_compatible_gradient_shap_pairs_rows_with_the_wrong_anchor(linear):
    enc, w, x = linear
    n_samples = 5
    fixed = LabelFreeAttribution(enc, "gradient_shap").attribute(x)
    bug = LabelFreeAttribution(enc, "gradient_shap", bug_compatible=True).attribute(x)
    # the original tiling: expanded row (b, k) = b * K + k meets anchor number (b * K + k) mod B
    anchors = x @ w.T
    expected_bug = torch.stack([
        torch.stack([x[b] * (anchors[(b * n_samples + k) % len(x)] @ w) for k in range(n_samples)]).mean(0)
        for b in range(len(x))
    ])
    torch.testing.assert_close(bug, expected_bug, rtol=1e-9, atol=1e-10)
    assert (bug - fixed).abs().max() > 1e-2
    torch.testing.assert_close(fixed, x * (anchors @ w), rtol=1e-9, atol=1e-10)


def test_completeness_sum_equals_squared_latent_norm(linear):
    enc, w, x = linear
    attr = LabelFreeAttribution(enc, "integrated_gradients").attribute(x)
    torch.testing.assert_close(attr.sum(1), ((x @ w.T) ** 2).sum(1), rtol=1e-6, atol=1e-7)


def test_invariant_under_rotation_of_the_latent_space(linear):
    enc, w, x = linear
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(7), dtype=DT))
    rotated = linear_encoder(q @ w)
    for method in ("integrated_gradients", "gradient_shap", "saliency"):
        a = LabelFreeAttribution(enc, method).attribute(x)
        b = LabelFreeAttribution(rotated, method).attribute(x)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_saliency_is_abs_wtwx(linear):
    enc, w, x = linear
    attr = LabelFreeAttribution(enc, "saliency").attribute(x)
    torch.testing.assert_close(attr, ((x @ w.T) @ w).abs(), rtol=1e-12, atol=1e-12)
    attr_class = LabelFreeAttribution(enc, Saliency).attribute(x)
    torch.testing.assert_close(attr_class, attr)


def test_per_unit_ig_maps_are_abs_latent_times_input_times_row(linear):
    enc, w, x = linear
    maps = LabelFreeAttribution(enc, "integrated_gradients").attribute_per_unit(x)
    expected = ((x @ w.T)[:, :, None] * x[:, None, :] * w[None]).abs()
    assert maps.shape == (5, 3, 6)
    torch.testing.assert_close(maps, expected, rtol=1e-6, atol=1e-7)
    sal = LabelFreeAttribution(enc, "saliency").attribute_per_unit(x)
    torch.testing.assert_close(sal, ((x @ w.T)[:, :, None] * w[None]).abs(), rtol=1e-12, atol=1e-12)


def test_ig_bug_compatible_mode_is_right_because_ig_expands_with_repeat(linear):
    enc, _, x = linear
    a = LabelFreeAttribution(enc, "integrated_gradients").attribute(x)
    b = LabelFreeAttribution(enc, "integrated_gradients", bug_compatible=True).attribute(x)
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- invariances on a nonlinear encoder
METHODS = [
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 20}),
    ("integrated_gradients", {"n_steps": 20, "internal_batch_size": 7}),
    ("gradient_shap", {}),
    ("gradient_shap", {"n_samples": 4, "stdevs": 0.1, "internal_batch_size": 5}),
    ("input_x_gradient", {}),
    ("deeplift", {}),
    ("guided_backprop", {}),
    ("feature_ablation", {"perturbations_per_eval": 3}),
    ("occlusion", {"sliding_window_shapes": (1, 3, 3), "perturbations_per_eval": 4}),
    ("shapley_value_sampling", {"n_samples": 2, "perturbations_per_eval": 6}),
    ("deconvolution", {}),
    ("lime", {"n_samples": 20, "feature_mask": torch.arange(36).view(1, 1, 6, 6) // 4}),
    ("kernel_shap", {"n_samples": 20, "feature_mask": torch.arange(36).view(1, 1, 6, 6) // 4}),
]


@pytest.mark.parametrize(("method", "kwargs"), METHODS)
def test_batch_equals_one_by_one_under_a_fixed_seed(conv, method, kwargs):
    enc, x = conv
    lf = LabelFreeAttribution(enc, method)
    batch = lf.attribute(x, seed=5, **kwargs)
    single = torch.cat([lf.attribute(x[i:i + 1], seed=5, **kwargs) for i in range(len(x))])
    torch.testing.assert_close(batch, single, rtol=1e-9, atol=1e-12)
    assert batch.shape == x.shape and batch.abs().sum() > 0


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap"])
def test_chunked_equals_whole(conv, method):
    enc, x = conv
    lf = LabelFreeAttribution(enc, method)
    mean = x.mean(0)
    whole = lf.attribute(x, baselines=lambda t: 0.5 * t, seed=1, batch_size=None)
    torch.testing.assert_close(lf.attribute(x, baselines=lambda t: 0.5 * t, seed=1, batch_size=3), whole)
    torch.testing.assert_close(lf.attribute_per_unit(x, baselines=mean, seed=1, batch_size=5),
                               lf.attribute_per_unit(x, baselines=mean, seed=1))
    with pytest.raises(UsageError, match="batch_size"):
        lf.attribute(x, batch_size=0)


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap", "saliency"])
def test_per_unit_batch_equals_one_by_one(conv, method):
    enc, x = conv
    lf = LabelFreeAttribution(enc, method)
    batch = lf.attribute_per_unit(x, seed=2)
    single = torch.cat([lf.attribute_per_unit(x[i:i + 1], seed=2) for i in range(len(x))])
    assert batch.shape == (4, 3, 1, 6, 6)
    torch.testing.assert_close(batch, single, rtol=1e-9, atol=1e-12)


def test_bug_compatible_gradient_shap_differs_at_batch_above_one_and_agrees_at_one(conv):
    enc, x = conv
    fixed = LabelFreeAttribution(enc, "gradient_shap")
    bug = LabelFreeAttribution(enc, "gradient_shap", bug_compatible=True)
    assert (fixed.attribute(x, seed=1) - bug.attribute(x, seed=1)).abs().max() > 1e-3
    for i in range(len(x)):
        torch.testing.assert_close(fixed.attribute(x[i:i + 1], seed=1), bug.attribute(x[i:i + 1], seed=1))


def test_seed_fixes_captum_stochastic_methods_and_restores_global_rng(conv):
    enc, x = conv
    lf = LabelFreeAttribution(enc, "shapley_value_sampling")  # draws permutations from torch's global RNG
    kw = {"n_samples": 1, "perturbations_per_eval": 36}
    x = x[:2]
    torch.manual_seed(11)
    np.random.seed(11)
    expected_torch, expected_np = torch.rand(1), np.random.rand()
    torch.manual_seed(11)
    np.random.seed(11)
    a = lf.attribute(x, seed=4, **kw)
    assert torch.rand(1) == expected_torch and np.random.rand() == expected_np  # caller's RNG untouched
    torch.testing.assert_close(lf.attribute(x, seed=4, **kw), a, rtol=0, atol=0)
    assert not torch.equal(lf.attribute(x, seed=5, **kw), a)


def test_seed_fixes_gradient_shap_and_different_seeds_differ(conv):
    enc, x = conv
    lf = LabelFreeAttribution(enc, "gradient_shap")
    torch.testing.assert_close(lf.attribute(x, seed=3), lf.attribute(x, seed=3), rtol=0, atol=0)
    assert (lf.attribute(x, seed=3) - lf.attribute(x, seed=4)).abs().max() > 1e-6


def test_gradient_shap_sampler_matches_captum_and_ig_in_expectation(conv):
    """Our seeded sampler and captum's GradientShap estimate the same expectation (= IG for one baseline)."""
    enc, x = conv
    enc.eval()
    x1 = x[:1]
    with torch.no_grad():
        anchor = enc(x1)

    def g(inp: torch.Tensor) -> torch.Tensor:
        return (enc(inp) * anchor).sum(-1)

    ours = LabelFreeAttribution(enc, "gradient_shap").attribute(x1, seed=0, n_samples=4000)
    torch.manual_seed(0)
    np.random.seed(0)  # captum draws alphas and baselines from NumPy's global RNG
    ref = GradientShap(g).attribute(x1, baselines=torch.zeros_like(x1), n_samples=4000)
    ig = IntegratedGradients(g).attribute(x1, n_steps=200)
    scale = ig.abs().max()
    # Monte Carlo error over seeds: at most 0.003 * scale (20 captum and 10 of our seeds)
    assert (ours - ig).abs().max() < 0.02 * scale
    assert (ref - ig).abs().max() < 0.02 * scale
    assert (ours - ref).abs().max() < 0.03 * scale


# ---------------------------------------------------------------- baselines
def test_baseline_forms(conv):
    enc, x = conv
    lf = LabelFreeAttribution(enc, "integrated_gradients")
    mean = x.mean(0)
    a_mean = lf.attribute(x, baselines=mean, n_steps=10)
    a_rows = lf.attribute(x, baselines=mean.expand_as(x).clone(), n_steps=10)
    a_call = lf.attribute(x, baselines=lambda t: mean.expand_as(t), n_steps=10)
    torch.testing.assert_close(a_mean, a_rows)
    torch.testing.assert_close(a_mean, a_call)
    a_num = lf.attribute(x, baselines=0.0, n_steps=10)
    torch.testing.assert_close(a_num, lf.attribute(x, n_steps=10))
    # completeness with a non-zero baseline: sum = g_x(x) - g_x(b)
    enc.eval()
    with torch.no_grad():
        z = enc(x)
        expected = (z * z).sum(1) - (z * enc(mean.expand_as(x))).sum(1)
    torch.testing.assert_close(lf.attribute(x, baselines=mean, n_steps=200).flatten(1).sum(1), expected,
                               rtol=1e-3, atol=1e-4)


def test_blur_baseline_is_the_callable_blur():
    from xairepro.imaging import gaussian_blur

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 24 * 24, 4), nn.Tanh())
    x = torch.rand(2, 3, 24, 24)
    lf = LabelFreeAttribution(enc, "integrated_gradients")
    torch.testing.assert_close(lf.attribute(x, baselines="blur", n_steps=8),
                               lf.attribute(x, baselines=gaussian_blur, n_steps=8))


def test_gradient_shap_baseline_distribution_and_callable_rows(conv):
    enc, x = conv
    lf = LabelFreeAttribution(enc, "gradient_shap")
    dist = torch.rand(7, 1, 6, 6, dtype=DT)
    a = lf.attribute(x, baselines=dist, seed=0)
    b = torch.cat([lf.attribute(x[i:i + 1], baselines=dist, seed=0) for i in range(4)])
    torch.testing.assert_close(a, b)
    rows = lf.attribute(x, baselines=lambda t: 0.5 * t, seed=0)
    one = torch.cat([lf.attribute(x[i:i + 1], baselines=lambda t: 0.5 * t, seed=0) for i in range(4)])
    torch.testing.assert_close(rows, one)


# ---------------------------------------------------------------- token encoders: attribution at the embedding
class TokenEncoder(nn.Module):
    def __init__(self, vocab: int = 11, dim: int = 5, d: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.fc = nn.Linear(dim, d, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(ids).mean(1))


def test_embedding_layer_ig_matches_the_linear_oracle():
    torch.manual_seed(0)
    enc = TokenEncoder().to(DT)
    ids = torch.tensor([[1, 4, 7, 2], [3, 3, 9, 10], [5, 0, 6, 8]])
    lf = LabelFreeAttribution(enc, "integrated_gradients", layer=enc.embedding)
    attr = lf.attribute(ids, baselines=torch.zeros_like(ids))
    with torch.no_grad():
        e = enc.embedding(ids)                      # (B, T, E)
        z = enc(ids)                                # (B, d)
        expected = (e * (z @ enc.fc.weight)[:, None, :]).sum(-1) / ids.shape[1]
    assert attr.shape == ids.shape
    torch.testing.assert_close(attr, expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(attr.sum(1), (z * z).sum(1), rtol=1e-6, atol=1e-8)
    full = LabelFreeAttribution(enc, "integrated_gradients", layer=enc.embedding, layer_reduce=None)
    assert full.attribute(ids, baselines=torch.zeros_like(ids)).shape == (3, 4, 5)
    batch_vs_single = torch.cat([lf.attribute(ids[i:i + 1], baselines=torch.zeros_like(ids[:1])) for i in range(3)])
    torch.testing.assert_close(attr, batch_vs_single)


def test_layer_gradient_shap_pairs_anchors_at_batch_above_one():
    """Linear layers: layer GradientShap = layer IG exactly, but only if captum's noise tunnel pairs each
    expanded row with its own anchor (it expands additional_forward_args with repeat_interleave)."""
    torch.manual_seed(2)
    enc = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)).to(DT)
    x = torch.randn(4, 5, dtype=DT)
    ig = LabelFreeAttribution(enc, "integrated_gradients", layer=enc[0]).attribute(x, baselines=0.0)
    gs = LabelFreeAttribution(enc, "gradient_shap", layer=enc[0]).attribute(x, baselines=0.0, seed=0)
    assert gs.shape == (4, 4)
    torch.testing.assert_close(gs, ig, rtol=1e-6, atol=1e-8)
    bug = LabelFreeAttribution(enc, "gradient_shap", layer=enc[0], bug_compatible=True)
    assert (bug.attribute(x, baselines=0.0, seed=0) - ig).abs().max() > 1e-3
    with pytest.raises(UsageError, match="token ids"):
        tok = TokenEncoder()
        LabelFreeAttribution(tok, "gradient_shap", layer=tok.embedding).attribute(torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize("method", ["input_x_gradient", "deeplift"])
def test_other_layer_methods_pair_anchors_correctly(method):
    """g is linear in the embeddings, so every layer method gives the IG answer, also at batch > 1
    (captum's noise tunnel expands the anchor with repeat_interleave, like the inputs)."""
    torch.manual_seed(1)
    enc = TokenEncoder().to(DT)
    ids = torch.tensor([[1, 4, 7, 2], [3, 3, 9, 10], [5, 1, 6, 8]])
    zeros = torch.zeros_like(ids)
    ig = LabelFreeAttribution(enc, "integrated_gradients", layer=enc.embedding).attribute(ids, baselines=zeros)
    lf = LabelFreeAttribution(enc, method, layer=enc.embedding)
    kwargs = {"baselines": zeros} if method == "deeplift" else {}
    torch.testing.assert_close(lf.attribute(ids, seed=0, **kwargs), ig, rtol=1e-6, atol=1e-8)
    per_unit = lf.attribute_per_unit(ids, seed=0, **kwargs)
    assert per_unit.shape == (3, 3, 4)


# ---------------------------------------------------------------- the caller's objects are left alone
def test_encoder_state_and_inputs_are_restored(conv):
    enc, x = conv
    enc.train()
    enc.fc.weight.grad = torch.ones_like(enc.fc.weight)
    enc.conv.weight.requires_grad_(False)
    stats = enc.bn.running_mean.clone()
    x_before = x.clone()
    for method in ("integrated_gradients", "gradient_shap", "saliency", "deeplift"):
        LabelFreeAttribution(enc, method).attribute(x)
        LabelFreeAttribution(enc, method).attribute_per_unit(x)
    assert enc.training and enc.bn.training and enc.drop.training
    assert torch.equal(enc.fc.weight.grad, torch.ones_like(enc.fc.weight))
    assert enc.conv.bias.grad is None and not enc.conv.weight.requires_grad and enc.fc.bias.requires_grad
    assert torch.equal(enc.bn.running_mean, stats)
    assert torch.equal(x, x_before) and not x.requires_grad
    assert not enc.conv._forward_hooks and not enc.act._forward_hooks and not enc.act._backward_hooks


def test_state_restored_after_an_error(conv):
    enc, x = conv
    enc.train()

    def bad_baseline(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        LabelFreeAttribution(enc, "integrated_gradients").attribute(x, baselines=bad_baseline)
    assert enc.training and enc.bn.training


def test_train_mode_would_change_the_answer_so_eval_mode_matters(conv):
    enc, x = conv
    enc.train()
    a = LabelFreeAttribution(enc, "saliency").attribute(x)
    enc.eval()
    b = LabelFreeAttribution(enc, "saliency").attribute(x)
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_give_clear_errors(conv):
    enc, x = conv
    lf = LabelFreeAttribution(enc, "integrated_gradients")
    with pytest.raises(UsageError, match=r"baselines have shape \(1, 5, 5\)"):
        lf.attribute(x, baselines=torch.zeros(1, 5, 5, dtype=DT))
    with pytest.raises(UsageError, match="3 rows but x has 4"):
        lf.attribute(x, baselines=torch.zeros(3, 1, 6, 6, dtype=DT))
    with pytest.raises(UsageError, match="callable returned"):
        lf.attribute(x, baselines=lambda t: t[:, :, :3])
    with pytest.raises(UsageError, match="2-D"):
        LabelFreeAttribution(nn.Conv2d(1, 2, 3), "saliency").attribute(x.float())
    with pytest.raises(UsageError, match="one \\(batch, d\\) tensor"):
        LabelFreeAttribution(_TupleEncoder(), "saliency").attribute(torch.rand(2, 4))
    with pytest.raises(UsageError, match="unknown method"):
        LabelFreeAttribution(enc, "gradcam")
    with pytest.raises(UsageError, match="not an instance"):
        LabelFreeAttribution(enc, Saliency(enc))
    with pytest.raises(UsageError, match="takes no baselines"):
        LabelFreeAttribution(enc, "saliency").attribute(x, baselines=0.0)
    with pytest.raises(UsageError, match="float inputs"):
        lf.attribute(torch.ones(2, 1, 6, 6, dtype=torch.long))
    with pytest.raises(UsageError, match="set by the label-free wrapper"):
        lf.attribute(x, target=0)
    with pytest.raises(UsageError, match="layer method"):
        LabelFreeAttribution(enc, __import__("captum").attr.LayerIntegratedGradients)


class _TupleEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), self.fc(x)


# ---------------------------------------------------------------- review additions: GradientShap draws, per-row pairing
def test_gradient_shap_noise_has_stdevs_scale_and_is_shared_by_every_row():
    """Linear g: each sample gives (x + eps) * W^T W x, so eps can be read back exactly from one sample."""
    gen = torch.Generator().manual_seed(21)
    w = torch.randn(3, 400, generator=gen, dtype=DT)
    x = torch.randn(3, 400, generator=gen, dtype=DT)
    v = (x @ w.T) @ w
    lf = LabelFreeAttribution(linear_encoder(w), "gradient_shap")
    eps = lf.attribute(x, seed=0, n_samples=1, stdevs=0.5) / v - x
    torch.testing.assert_close(eps, eps[:1].expand_as(eps), rtol=1e-6, atol=1e-6)  # shared draws
    assert abs(float(eps[0].std()) - 0.5) < 0.05 and abs(float(eps[0].mean())) < 0.1
    torch.testing.assert_close(lf.attribute(x, seed=0, n_samples=1), x * v)       # stdevs 0: no noise


def test_gradient_shap_draws_baselines_uniformly_from_the_distribution(linear):
    enc, w, x = linear
    v = (x @ w.T) @ w
    dist = torch.arange(3, dtype=DT)[:, None] * torch.ones(3, 6, dtype=DT)        # baselines 0, 1, 2
    lf = LabelFreeAttribution(enc, "gradient_shap")
    drawn = set()
    for seed in range(12):  # one sample: every row meets the same drawn baseline, one of the rows of dist
        b = x - lf.attribute(x, baselines=dist, seed=seed, n_samples=1) / v
        torch.testing.assert_close(b, b[:1].expand_as(b))
        drawn.add(round(float(b[0, 0]), 6))
    assert drawn == {0.0, 1.0, 2.0}
    mean_b = x - lf.attribute(x, baselines=dist, seed=0, n_samples=6000) / v      # E[b] = 1
    assert (mean_b - 1.0).abs().max() < 0.06


class _Cubic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x ** 3).sum(1, keepdim=True)


def test_gradient_shap_alphas_are_uniform_on_a_cubic_encoder():
    """f(x) = sum x^3, zero baseline: a GradientShap sample is f(x) * 3 alpha^2 x^3, so its mean is IG's
    f(x) x^3 only if alpha ~ U(0, 1) (E[alpha^2] = 1/3; alpha = 1/2 gives 1/4, alpha = 1 gives 1)."""
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(8), dtype=DT) + 0.5
    fx = (x ** 3).sum(1, keepdim=True)
    lf = LabelFreeAttribution(_Cubic(), "gradient_shap")
    alpha_sq = lf.attribute(x, seed=0, n_samples=1) / (3 * fx * x ** 3)
    torch.testing.assert_close(alpha_sq, alpha_sq[:1, :1].expand_as(alpha_sq))  # one draw shared by all
    assert 0.0 <= float(alpha_sq[0, 0]) <= 1.0
    torch.testing.assert_close(lf.attribute(x, seed=0, n_samples=20000), fx * x ** 3, rtol=0.03, atol=0)


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap"])
def test_per_unit_maps_pair_each_row_with_its_own_baseline(linear, method):
    """Per-row baselines b: per-unit IG / GradientShap maps of f = W x are |(W_j x) (x - b) * W_j|."""
    enc, w, x = linear
    b = 0.3 * x.flip(0)
    maps = LabelFreeAttribution(enc, method).attribute_per_unit(x, baselines=lambda t: 0.3 * t.flip(0))
    expected = ((x @ w.T)[:, :, None] * (x - b)[:, None, :] * w[None]).abs()
    torch.testing.assert_close(maps, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["feature_ablation", "lime"])
def test_per_example_feature_masks_follow_their_rows(conv, method):
    """A feature_mask with one row per example is split with the batch and repeated for the units."""
    enc, x = conv
    fm = (torch.arange(36).view(1, 1, 6, 6) // 4).repeat(4, 1, 1, 1)
    fm[1] = torch.arange(36).view(1, 6, 6) // 9
    kw = {"feature_mask": fm, "n_samples": 15} if method == "lime" else {"feature_mask": fm}
    lf = LabelFreeAttribution(enc, method)
    whole = lf.attribute(x, seed=0, **kw)
    single = torch.cat([lf.attribute(x[i:i + 1], seed=0, **{**kw, "feature_mask": fm[i:i + 1]})
                        for i in range(4)])
    torch.testing.assert_close(whole, single, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lf.attribute(x, seed=0, batch_size=3, **kw), whole, rtol=1e-9, atol=1e-12)
    units = lf.attribute_per_unit(x, seed=0, **kw)
    units_single = torch.cat([lf.attribute_per_unit(x[i:i + 1], seed=0, **{**kw, "feature_mask": fm[i:i + 1]})
                              for i in range(4)])
    torch.testing.assert_close(units, units_single, rtol=1e-9, atol=1e-12)
