"""Model randomisation: Quantus' MPRT on the same model and explainer, SSIM and Spearman against skimage and scipy,
the cascade itself, the caller's model and RNG untouched, bound explainers and factories, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.metrics import model_randomisation, randomised_models
from xairepro.metrics.model_randomisation import randomisable_layers, spearman_similarity, ssim_similarity

pytestmark = pytest.mark.usefixtures("one_thread")


def _pattern(shape: torch.Size, phase: float) -> torch.Tensor:
    return torch.cos(torch.arange(int(np.prod(shape)), dtype=torch.float32) * 1.7 + phase).view(shape) * 0.3


class FixedResetConv(nn.Conv2d):
    """A conv layer whose ``reset_parameters`` writes a fixed pattern: Quantus and we then randomise alike."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(_pattern(self.weight.shape, 0.5))
            if self.bias is not None:
                self.bias.copy_(_pattern(self.bias.shape, 1.0))


class FixedResetLinear(nn.Linear):
    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(_pattern(self.weight.shape, 2.0))
            if self.bias is not None:
                self.bias.copy_(_pattern(self.bias.shape, 3.0))


def fixed_reset_model() -> nn.Module:
    model = nn.Sequential(FixedResetConv(1, 4, 3, padding=1), nn.ReLU(), FixedResetConv(4, 4, 3, padding=1), nn.Tanh(),
                          nn.Flatten(), FixedResetLinear(4 * 8 * 8, 3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():                                # trained-looking weights, unlike the reset pattern
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    bn = model[1]
    with torch.no_grad():                                # trained-looking BatchNorm (a reset changes it)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return model


def gradient_times_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(d logit_t / d x) * x summed over channels: (B, H, W)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score = model(x).gather(1, torch.as_tensor(target).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, x)
    return (grad * x).sum(dim=1).detach()


class GradientTimesInput:
    """An explainer bound to its model (like ``GradCAM(model, layer)``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return gradient_times_input(self.model, x, target)


def factory(model: nn.Module):
    return lambda x, target=None: gradient_times_input(model, x, target)


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_matches_quantus_mprt(order: str) -> None:
    import quantus

    model = fixed_reset_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 8, 8, generator=g)
    y = np.array([0, 2, 1, 1])

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        maps = gradient_times_input(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return maps[:, None].numpy()

    metric = quantus.MPRT(layer_order="top_down" if order == "cascading" else "independent", abs=False,
                          normalise=False, disable_warnings=True)
    ref = metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=None, explain_func=explain, device="cpu",
                 channel_first=True)
    ours = model_randomisation(model, factory, x, torch.as_tensor(y), order=order)
    assert list(ours.layers) == ["5", "2", "0"]          # output first, as Quantus' top_down
    if order == "cascading":
        assert [k for k in ref if k != "original"] == ["5", "2", "0"]
    else:                                                # Quantus runs independent steps input first
        assert sorted(k for k in ref if k != "original") == ["0", "2", "5"]
    for row, name in zip(ours.similarity, ours.layers):
        np.testing.assert_allclose(row.numpy(), ref[name], atol=1e-5, rtol=0)


def test_similarities_match_skimage_and_scipy() -> None:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(2)
    a = torch.rand(3, 9, 11, generator=g, dtype=torch.float64)
    b = a + 0.3 * torch.rand(3, 9, 11, generator=g, dtype=torch.float64)
    b[0] = torch.round(b[0] * 3) / 3                     # ties: average ranks
    ours = ssim_similarity(a, b)
    rho = spearman_similarity(a, b)
    for i in range(3):
        rng = float(max(a[i].max(), b[i].max()) - min(a[i].min(), b[i].min()))
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=rng)
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)
        assert rho[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-12)
    assert torch.isnan(spearman_similarity(torch.ones(1, 4, 4), a[:1, :4, :4])).all()


def test_the_cascade_randomises_layers_from_the_output_backwards() -> None:
    model = tiny_cnn()
    names = randomisable_layers(model)
    assert names == ["6", "3", "1", "0"]                 # BatchNorm has parameters of its own
    original = {k: v.clone() for k, v in model.state_dict().items()}
    for step, (name, copy) in enumerate(randomised_models(model, "cascading", seed=0)):
        assert name == names[step] and copy is not model
        changed = {k.split(".")[0] for k, v in copy.state_dict().items()
                   if v.is_floating_point() and not torch.equal(v, original[k])}
        assert changed == set(names[:step + 1])
    for step, (name, copy) in enumerate(randomised_models(model, "independent", seed=0)):
        changed = {k.split(".")[0] for k, v in copy.state_dict().items()
                   if v.is_floating_point() and not torch.equal(v, original[k])}
        assert changed == {name}
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


def test_bound_explainer_and_factory_agree_and_nothing_is_mutated() -> None:
    model = tiny_cnn().train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 8, 8, generator=g)
    x0 = x.clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    bound = model_randomisation(model, GradientTimesInput(model), x, targets=1, return_maps=True)
    made = model_randomisation(model, factory, x, targets=1)
    torch.testing.assert_close(bound.similarity, made.similarity)
    assert bound.maps is not None and bound.maps.shape == (4, 3, 8, 8)
    assert torch.equal(torch.get_rng_state(), rng)       # randomisation runs in a forked RNG
    assert model.training and torch.equal(x, x0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


def test_weight_independent_explanations_are_perfectly_similar() -> None:
    # an "explainer" that ignores the model (edge detector on the image) fails the sanity check: similarity 1
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    edges = lambda m: (lambda x, target=None: x.mean(dim=1))  # noqa: E731
    for similarity in ("spearman", "ssim"):
        r = model_randomisation(tiny_cnn(), edges, x, similarity=similarity)
        torch.testing.assert_close(r.similarity, torch.ones(4, 2), atol=1e-6, rtol=0)
        assert r.summary()["model_randomisation"] == pytest.approx(1.0, abs=1e-6)
    # gradients of a randomised network do change
    r = model_randomisation(tiny_cnn(), factory, x)
    assert float(r.similarity[-1].mean()) < 0.9


def test_seeds_saliency_argument_and_errors() -> None:
    model = tiny_cnn()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    a = model_randomisation(model, factory, x, seed=1)
    assert torch.equal(a.similarity, model_randomisation(model, factory, x, seed=1).similarity)
    assert not torch.equal(a.similarity, model_randomisation(model, factory, x, seed=2).similarity)
    given = model_randomisation(model, factory, x, targets=a.targets, seed=1, saliency=a.original)
    assert torch.equal(given.similarity, a.similarity)
    assert list(a.per_layer()) == ["6", "3", "1", "0"]
    only = model_randomisation(model, factory, x, layers=["6"])
    assert only.similarity.shape == (1, 2)
    with pytest.raises(UsageError, match="no layer 'head'"):
        model_randomisation(model, factory, x, layers=["head"])
    with pytest.raises(UsageError, match="order"):
        model_randomisation(model, factory, x, order="bottom_up")
    with pytest.raises(UsageError, match="at least 7"):
        model_randomisation(model, factory, torch.rand(1, 3, 5, 5), similarity="ssim")
