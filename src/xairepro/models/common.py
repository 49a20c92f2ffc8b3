"""Pieces every model shares: pixel normalisation, input checks in the user's terms, classifier base.

Inputs are images in pixel space, float in [0, 1], shaped (B, C, H, W) (docs/design.md "Pixel space").
A classifier's first module is :class:`Normalize`, so explanations and metrics never un-normalise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xairepro.errors import UsageError
from xairepro.imaging import check_images

__all__ = ["Normalize", "ImageModule", "ImageClassifier", "plural"]


def plural(n: int, word: str) -> str:
    """``plural(1, "channel") == "1 channel"``, ``plural(3, "channel") == "3 channels"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _per_channel(value: float | Sequence[float] | None, channels: int, default: float, what: str) -> list[float]:
    if value is None:
        return [float(default)] * channels
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    if isinstance(value, (int, float)):
        return [float(value)] * channels
    values = [float(v) for v in value]
    if len(values) != channels:
        raise UsageError(f"{what} has {plural(len(values), 'value')} but the model takes "
                         f"{plural(channels, 'channel')}")
    return values


class Normalize(nn.Module):
    """Per-channel normalisation ``(x - mean) / std`` as a model's first layer.

    ``mean``/``std``: one value per channel (or one value for all); ``None`` gives the identity
    (mean 0, std 1).  Shapes: (B, C, H, W) -> (B, C, H, W).  The statistics are non-persistent
    buffers: they move with ``.to(device)`` but are not in ``state_dict``; ``model.config`` holds them.
    """

    def __init__(self, mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
                 channels: int = 3) -> None:
        super().__init__()
        mean_values = _per_channel(mean, channels, 0.0, "mean")
        std_values = _per_channel(std, channels, 1.0, "std")
        if any(not s > 0 for s in std_values):
            raise UsageError(f"std must be positive in every channel, got {std_values}")
        self.channels = channels
        self.identity = all(m == 0.0 for m in mean_values) and all(s == 1.0 for s in std_values)
        self.register_buffer("mean", torch.tensor(mean_values).view(channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std_values).view(channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageModule(nn.Module):
    """Base of modules that take images (B, C, H, W): records what they accept and checks it.

    ``input_shape`` is the exact (C, H, W) when only one size works, else ``None`` and any
    H, W >= ``min_size`` works.
    """

    model_name: str = "model"
    in_channels: int = 3
    input_shape: tuple[int, int, int] | None = None
    min_size: int = 1

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`UsageError` in the user's terms when ``x`` does not fit this model."""
        size = None if self.input_shape is None else (self.input_shape[1], self.input_shape[2])
        check_images(x, self.model_name, channels=self.in_channels, size=size, min_size=self.min_size,
                     strict=False)


class ImageClassifier(ImageModule):
    """Classifier contract: ``forward(x) = forward_head(forward_features(x))``.

    ``forward_features(x)`` -> (B, C', H', W'): the last conv stage after its final BN + activation,
    computed from pixel-space ``x`` (normalisation included); ``forward_head`` -> logits (B, num_classes);
    ``cam_layer`` is the module whose forward output equals ``forward_features(x)``.
    """

    num_classes: int = 10

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def cam_layer(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def positive_int(value: object, what: str, model: str) -> int:
    """``value`` as an int >= 1, else a :class:`UsageError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{model}: {what} must be a positive integer, got {value!r}")
    return int(value)


def flag(value: object, what: str, model: str) -> bool:
    """``value`` as a bool (True/False only, not "false" or 0), else a :class:`UsageError`."""
    if not isinstance(value, bool):
        raise UsageError(f"{model}: {what} must be true or false, got {value!r}")
    return value


def probability(value: object, what: str, model: str) -> float:
    """``value`` as a float in [0, 1), else a :class:`UsageError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UsageError(f"{model}: {what} must be a number in [0, 1), got {value!r}")
    return float(value)
