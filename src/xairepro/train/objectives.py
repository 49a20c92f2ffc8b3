"""Training objectives: what the engine minimises, one class per method, one loop for all.

Protocol (docs/design.md): ``loss(model, batch) -> (loss, {metric: value})`` with ``batch`` the tuple
``(x, y, ...)`` of one mini-batch on the model's device; optional ``evaluate(model, batch)`` with the
same return (default: ``loss`` under ``no_grad``); ``modules()`` extra trainable modules owned by the
objective; ``state_dict()``/``load_state_dict()`` for resume.  Metric values are 0-dim tensors
(averaged over the batch); the engine averages them over an epoch without a host sync per step.
Randomness (noise, masks, views) uses the global torch RNG, which the engine seeds per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Objective", "ObjectiveBase", "ClassifierObjective", "AutoencoderObjective", "PERTURBATIONS",
    "AUTOENCODER_NOISE_STD", "AUTOENCODER_MASK_PROB",
]

#: Denoising pretext task: x + 0.3 N(0, 1) (Crabbe & van der Schaar 2022, seed 003 eq. 4).
AUTOENCODER_NOISE_STD = 0.3
#: Inpainting pretext task: drop 20% of the pixels (seed 003 eq. 6).
AUTOENCODER_MASK_PROB = 0.2
PERTURBATIONS = ("identity", "noise", "mask")


@runtime_checkable
class Objective(Protocol):
    """What the engine needs of an objective."""

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]: ...


class ObjectiveBase:
    """Defaults for the optional parts of the protocol: no extra modules, no state, eval = loss."""

    #: Model methods besides ``forward`` that ``loss`` calls (routed through DDP/precision by the engine).
    forward_methods: tuple[str, ...] = ()

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        """Metrics of one evaluation batch (called under ``no_grad`` in eval mode)."""
        loss, metrics = self.loss(model, batch)
        return {"loss": loss.detach(), **metrics}

    def modules(self) -> list[nn.Module]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _labels(batch: Sequence[Tensor], who: str) -> Tensor:
    if len(batch) < 2:
        raise ValueError(f"{who} needs labelled batches (x, y); this data set gives inputs only")
    return batch[1]


class ClassifierObjective(ObjectiveBase):
    """Cross-entropy of ``model(x)`` logits (B, K) against labels y (B,); reports accuracy.

    loss = mean_i -log softmax(z_i)[y_i]  (with optional label smoothing).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch[0], _labels(batch, "the classifier objective")
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
        return loss, {"accuracy": accuracy}


class AutoencoderObjective(ObjectiveBase):
    """Reconstruct the clean input from a perturbed one: L = mean (x - f_d(f_e(P(x))))^2.

    ``perturbation``: ``identity`` P(x) = x (reconstruction), ``noise`` P(x) = x + noise_std N(0, 1)
    (denoising), ``mask`` P(x) = M * x with M ~ Bernoulli(1 - mask_prob) per pixel, shared across
    channels (inpainting).  ``error``: ``mse`` (squared error) or ``l1`` (absolute error);
    ``reduction``: ``mean`` over all elements, or ``sum`` over an example's elements then mean over the
    batch.  ``model(x)`` must return the reconstruction, shaped like ``x``.
    """

    def __init__(self, perturbation: str = "identity", noise_std: float = AUTOENCODER_NOISE_STD,
                 mask_prob: float = AUTOENCODER_MASK_PROB, error: str = "mse", reduction: str = "mean") -> None:
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}; got {perturbation!r}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        if not 0 <= mask_prob < 1:
            raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob!r}")
        if error not in ("mse", "l1"):
            raise ValueError(f"error must be 'mse' or 'l1', got {error!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.perturbation = perturbation
        self.noise_std = float(noise_std)
        self.mask_prob = float(mask_prob)
        self.error = error
        self.reduction = reduction

    def perturb(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """P(x) as above; a new tensor (``x`` is not modified)."""
        if self.perturbation == "noise":
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            return x + self.noise_std * noise
        if self.perturbation == "mask":
            shape = (x.shape[0], 1, *x.shape[2:]) if x.ndim == 4 else x.shape
            keep = torch.rand(shape, generator=generator, device=x.device) >= self.mask_prob
            return x * keep.to(x.dtype)
        return x

    def per_example_loss(self, model: nn.Module, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reconstruction error of each example, (B,): mean (or sum) over its elements."""
        recon = model(self.perturb(x, generator))
        if recon.shape != x.shape:
            raise ValueError(f"the autoencoder returned shape {tuple(recon.shape)} for inputs {tuple(x.shape)}")
        err = (recon.float() - x.float())
        err = err.square() if self.error == "mse" else err.abs()
        err = err.flatten(1)
        return err.mean(dim=1) if self.reduction == "mean" else err.sum(dim=1)

    def loss(self, model: nn.Module, batch: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.per_example_loss(model, batch[0]).mean()
        return loss, {self.error: loss.detach()}
