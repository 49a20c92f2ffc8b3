"""Confidence change of the saliency-masked image: Average Drop, Increase in Confidence, Average Gain.

The explanation map of Grad-CAM++ (Chattopadhyay et al. 2018) is the image multiplied pixel-wise by
its saliency map, E = x * s (s in [0, 1], all channels; in pixel space, so unexplained regions go
black).  With Y = p_t(x) and O = p_t(E) the softmax probabilities of the target class:

    Average Drop           AD = mean_i  max(0, Y_i - O_i) / Y_i          (lower is better)
    Increase in Confidence IC = mean_i  [O_i > Y_i]                      (higher is better)
    Average Gain           AG = mean_i  max(0, O_i - Y_i) / (1 - Y_i)    (higher is better; Zhang et al. 2023)

The papers report them in percent; ``summary()`` does too.  AD's ratio is 0 where Y = 0 and AG's
where Y = 1 (nothing can be lost or gained).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xairepro.metrics._perturbation import Settings, check_saliency_range, checked_inputs, score_images
from xairepro.utils import preserved_state

__all__ = ["ConfidenceChangeResult", "ConfidenceChangeSettings", "confidence_change"]


@dataclass(frozen=True)
class ConfidenceChangeSettings(Settings):
    """Recorded choices: the masked image is ``x * s`` in pixel space, scores are softmax probabilities."""

    masked_image: str = "x * saliency (pixel space)"
    score: str = "softmax"


@dataclass(frozen=True)
class ConfidenceChangeResult:
    """Per image: ``original`` Y and ``masked`` O probabilities of the target class (B,)."""

    original: torch.Tensor
    masked: torch.Tensor
    targets: torch.Tensor
    settings: ConfidenceChangeSettings

    @property
    def drop(self) -> torch.Tensor:
        """max(0, Y - O) / Y per image (0 where Y = 0), (B,)."""
        y, o = self.original, self.masked
        return torch.where(y > 0, (y - o).clamp_min(0) / y.clamp_min(torch.finfo(y.dtype).tiny), 0.0)

    @property
    def increase(self) -> torch.Tensor:
        """O > Y per image, bool (B,)."""
        return self.masked > self.original

    @property
    def gain(self) -> torch.Tensor:
        """max(0, O - Y) / (1 - Y) per image (0 where Y = 1), (B,)."""
        y, o = self.original, self.masked
        room = 1 - y
        return torch.where(room > 0, (o - y).clamp_min(0) / room.clamp_min(torch.finfo(y.dtype).tiny), 0.0)

    def summary(self) -> dict[str, float]:
        """Average Drop, Increase in Confidence and Average Gain over the images, in percent."""
        return {"average_drop": 100 * float(self.drop.mean()),
                "increase_in_confidence": 100 * float(self.increase.float().mean()),
                "average_gain": 100 * float(self.gain.mean())}


def confidence_change(model: nn.Module, images: torch.Tensor, saliency: torch.Tensor, targets: object = None, *,
                      batch_size: int | None = None) -> ConfidenceChangeResult:
    """Y = p_t(x) and O = p_t(x * s) for images (B, C, H, W) and saliency (B, H, W) in [0, 1].

    ``targets``: None (the class predicted on x), an int or a LongTensor (B,).  Two batched forwards
    per image; the model is left as it was.
    """
    saliency, batch_size = checked_inputs(images, saliency, batch_size)
    check_saliency_range(saliency, "the masked image x * s")
    xs = images.detach()
    masked_images = xs * saliency.detach().to(device=xs.device, dtype=xs.dtype)[:, None]
    with preserved_state(model), torch.inference_mode():
        _, classes, original = score_images(model, xs, targets, "softmax", batch_size)
        _, _, masked = score_images(model, masked_images, classes, "softmax", batch_size)
    return ConfidenceChangeResult(original.clone(), masked.clone(), classes.clone(), ConfidenceChangeSettings())
