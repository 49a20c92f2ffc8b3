"""A tiny CNN classifier for tests and quick runs.

conv3x3(w)-BN-ReLU-maxpool2 -> conv3x3(2w)-BN-ReLU [features, (B, 2w, H/2, W/2)] -> global average pool -> linear.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from xairepro.models.common import ImageClassifier, Normalize, positive_int
from xairepro.models.registry import register_model

__all__ = ["SmallCNN"]


class SmallCNN(ImageClassifier):
    """Two conv layers, ``width`` and ``2 * width`` channels; any image of at least 2 x 2 pixels."""

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, width: int = 16,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.model_name = "small-cnn"
        self.num_classes = positive_int(num_classes, "num_classes", self.model_name)
        self.in_channels = positive_int(in_channels, "in_channels", self.model_name)
        width = positive_int(width, "width", self.model_name)
        self.input_shape = None
        self.min_size = 2
        self.normalize = Normalize(mean, std, channels=self.in_channels)
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(self.in_channels, width, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(width),
            act1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            bn2=nn.BatchNorm2d(2 * width),
            act2=nn.ReLU(),
        ))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, self.num_classes)
        self.num_features = 2 * width

    @property
    def cam_layer(self) -> nn.Module:
        return self.features.act2

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, 2w, H // 2, W // 2)."""
        self.check_input(x)
        return self.features(self.normalize(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 2w, H', W') -> logits (B, num_classes)."""
        return self.fc(torch.flatten(self.pool(features), 1))


@register_model("small-cnn", kind="classifier", input_shape=(3, 32, 32),
                description="tiny 2-layer CNN classifier for tests and quick runs")
def _build_small_cnn(num_classes: int = 10, in_channels: int = 3, width: int = 16,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> SmallCNN:
    return SmallCNN(num_classes, in_channels=in_channels, width=width, mean=mean, std=std)
