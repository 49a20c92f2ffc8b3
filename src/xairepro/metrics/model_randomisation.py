"""Model-parameter randomisation test (Adebayo et al. 2018): does the explanation depend on the weights?

Layers (modules with parameters of their own) are randomised from the output backwards, in reverse
registration order.  ``order="cascading"``: step l has layers 1..l randomised; ``"independent"``: step
l has only layer l randomised.  At every step the explanation of the randomised model is compared with
the original one, per image, by

    "spearman": Spearman's rank correlation of the flattened maps (ties get their average rank)
    "ssim":     SSIM with skimage's defaults (7 x 7 uniform window, K1 = .01, K2 = .03, sample
                covariance, mean over the interior), data range = max - min of the two maps together

A faithful explanation changes when the weights do: low similarity is better.  The caller's model is
never touched: a deep copy is randomised.  A layer is randomised by its own ``reset_parameters()``
(PyTorch's initialisation) under a seed derived from (seed, layer name), inside a forked RNG so the
global generator is left as it was; a layer without ``reset_parameters`` gets N(mean, std) of each of
its parameters.  A constant map has no rank correlation: NaN.

The explainer is either a factory ``explainer(model) -> callable(x, target) -> maps (B, H, W)`` (e.g.
``lambda m: GradCAM(m, "layer3")``) or an explainer already built on ``model`` (any object holding
``model`` as an attribute, e.g. ``GradCAM(model, "layer3")``): it is deep-copied onto each randomised
copy, its references to the model's modules, parameters and buffers replaced by the copy's.
Explanations are computed with the models in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import check_images, check_maps, resolve_targets
from xairepro.metrics._perturbation import Settings, check_choice
from xairepro.metrics.correlation import average_ranks
from xairepro.metrics.faithfulness_correlation import pearson_rows
from xairepro.utils import derive_seed, preserved_state, progress

__all__ = ["ModelRandomisationResult", "ModelRandomisationSettings", "model_randomisation", "randomisable_layers",
           "randomised_models", "spearman_similarity", "ssim_similarity"]

ORDERS = ("cascading", "independent")
SIMILARITIES = ("spearman", "ssim")
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03


@dataclass(frozen=True)
class ModelRandomisationSettings(Settings):
    """Every choice of a randomisation run; ``layers`` lists the layers in the order randomised."""

    order: str = "cascading"
    similarity: str = "spearman"
    absolute: bool = False
    seed: int = 0
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("order", self.order, ORDERS)
        check_choice("similarity", self.similarity, SIMILARITIES)


@dataclass(frozen=True)
class ModelRandomisationResult:
    """``similarity`` (L, B): row l compares the maps after randomisation step l with ``original``."""

    similarity: torch.Tensor
    original: torch.Tensor
    targets: torch.Tensor
    settings: ModelRandomisationSettings
    maps: torch.Tensor | None = None

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, row by row of ``similarity``."""
        return self.settings.layers

    def per_layer(self) -> dict[str, float]:
        """Mean similarity over images at every step (NaN images left out)."""
        return {name: float(torch.nanmean(row)) for name, row in zip(self.layers, self.similarity)}

    def summary(self) -> dict[str, float]:
        """``model_randomisation``: mean similarity over steps and images (Quantus' average correlation)."""
        return {"model_randomisation": float(torch.nanmean(self.similarity))}


def spearman_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rho between the flattened maps of a and b (B, ...) -> (B,) float64 (as scipy.stats.spearmanr)."""
    return pearson_rows(average_ranks(a.reshape(a.shape[0], -1).double()),
                        average_ranks(b.reshape(b.shape[0], -1).double()))


def ssim_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of maps a, b (B, H, W) -> (B,) float64, as ``skimage.metrics.structural_similarity`` with its
    defaults and data_range = max - min over both maps (Quantus' convention); H, W >= 7."""
    if a.dim() != 3 or a.shape != b.shape:
        raise UsageError(f"ssim compares maps (B, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise UsageError(f"ssim needs maps of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {tuple(a.shape[1:])}")
    x, y = a.double()[:, None], b.double()[:, None]
    both = torch.cat([x, y], dim=1).flatten(1)
    data_range = (both.max(dim=1).values - both.min(dim=1).values).view(-1, 1, 1, 1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mean = lambda t: F.avg_pool2d(t, SSIM_WINDOW, stride=1)  # noqa: E731  (interior windows only)
    n = SSIM_WINDOW ** 2
    cov_norm = n / (n - 1)
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the modules with parameters of their own, output first (reverse registration order)."""
    names = [name for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    return names[::-1]


def _randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters in place under ``seed``; the global RNG is left as it was."""
    devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
            return
        for p in module.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.normal_(float(p.mean()), std if std > 0 else 1.0)


def randomised_models(model: nn.Module, order: str = "cascading", seed: int = 0,
                      layers: Sequence[str] | None = None) -> Iterator[tuple[str, nn.Module]]:
    """Yield (layer name, randomised deep copy of ``model``) for every randomisation step.

    Cascading steps share one copy, randomised further at each step (use it before advancing);
    independent steps reload the original weights into it first.  ``model`` is never modified.
    """
    check_choice("order", order, ORDERS)
    names = list(randomisable_layers(model) if layers is None else layers)
    work = copy.deepcopy(model)
    original = copy.deepcopy(work.state_dict()) if order == "independent" else None
    for name in names:
        if original is not None:
            work.load_state_dict(original)
        _randomise(work.get_submodule(name), derive_seed(seed, "model-randomisation", name))
        yield name, work


def _bind(explainer: object, model: nn.Module, target: nn.Module) -> Callable[..., torch.Tensor]:
    """The explainer for ``target``: a copy of a bound explainer rewired to it, or the factory's product."""
    attributes = getattr(explainer, "__dict__", {})
    if any(value is model for value in attributes.values()):
        if target is model:
            return explainer  # type: ignore[return-value]
        memo: dict[int, object] = {}
        for ours, theirs in ((model.modules(), target.modules()), (model.parameters(), target.parameters()),
                             (model.buffers(), target.buffers())):
            memo.update({id(a): b for a, b in zip(ours, theirs)})
        return copy.deepcopy(explainer, memo)  # type: ignore[return-value]
    if not callable(explainer):
        raise UsageError(f"explainer must be a factory model -> explainer or an explainer built on the model, "
                         f"got {type(explainer).__name__}")
    return explainer(target)  # type: ignore[no-any-return]


def _explain(explain: Callable[..., torch.Tensor], x: torch.Tensor, targets: torch.Tensor, batch_size: int,
             absolute: bool) -> torch.Tensor:
    maps = torch.cat([check_maps(explain(x[i:i + batch_size], target=targets[i:i + batch_size]),
                                 x[i:i + batch_size], name="explanation").detach().float()
                      for i in range(0, x.shape[0], batch_size)])
    return maps.abs() if absolute else maps


def model_randomisation(model: nn.Module, explainer: object, images: torch.Tensor, targets: object = None,
                        order: str = "cascading", similarity: str = "spearman", seed: int = 0, *,
                        layers: Sequence[str] | None = None, saliency: torch.Tensor | None = None,
                        absolute: bool = False, batch_size: int | None = None, return_maps: bool = False,
                        show_progress: bool = False) -> ModelRandomisationResult:
    """Similarity of explanations under cascading or independent layer randomisation.

    ``targets``: None (the class the unmodified model predicts), an int or a LongTensor (B,); the same
    classes are explained at every step.  ``saliency`` (B, H, W): the original maps when already
    computed.  ``layers``: names to randomise, in order (default: ``randomisable_layers(model)``).
    ``batch_size``: images per explainer call (default: all).  ``return_maps`` keeps the maps (L, B, H, W).
    """
    check_images(images)
    names = tuple(randomisable_layers(model) if layers is None else layers)
    known = dict(model.named_modules())
    for name in names:
        if name not in known:
            raise UsageError(f"model has no layer {name!r}; randomisable layers: "
                             f"{', '.join(randomisable_layers(model)[:20])}")
    if not names:
        raise UsageError("the model has no layer with parameters to randomise")
    settings = ModelRandomisationSettings(order, similarity, bool(absolute), int(seed), names)
    if similarity == "ssim" and min(images.shape[2:]) < SSIM_WINDOW:
        raise UsageError(f"ssim needs maps of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, "
                         f"got {tuple(images.shape[2:])}")
    b = images.shape[0]
    batch_size = b if batch_size is None else batch_size
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    x = images.detach()
    with preserved_state(model), torch.inference_mode():
        logits = model(x) if targets is None else None
    classes = resolve_targets(targets, logits, b, x.device)  # type: ignore[arg-type]
    if saliency is None:
        with preserved_state(model):          # eval mode; a careless explainer cannot update BatchNorm stats
            original = _explain(_bind(explainer, model, model), x, classes, batch_size, absolute)
    else:
        original = check_maps(saliency, x).detach().float().to(x.device)
        original = original.abs() if absolute else original
    compare = spearman_similarity if similarity == "spearman" else ssim_similarity
    rows, kept = [], []
    steps = randomised_models(model, order, seed, names)
    for _, randomised in progress(steps, enabled=show_progress, total=len(names), desc="model randomisation"):
        with preserved_state(randomised):
            maps = _explain(_bind(explainer, model, randomised), x, classes, batch_size, absolute)
        rows.append(compare(original, maps).float())
        if return_maps:
            kept.append(maps)
    return ModelRandomisationResult(torch.stack(rows), original, classes, settings,
                                    torch.stack(kept) if return_maps else None)
